"""Data parallelism on JAX's own runtime: the batch split over a mesh axis, the model replicated.

    mesh = Mesh(np.array(jax.devices()), ("batch",))
    dp = hamecho.data_parallel(mesh)                 # or hamecho.data_parallel() over every device
    model, opt_state = dp.replicate((model, opt_state))
    x, y = dp.shard(x, y)                            # the global batch, split along its first axis
    model, opt_state, loss = hamecho.train_step(model, opt_state, x, y, optimizer, key=key)

The same in plain JAX, without this module:

    batch, replicated = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    x, y = jax.device_put((x, y), batch)
    model, opt_state = jax.device_put((model, opt_state), replicated)

Nothing else changes: ``train_step``, ``value_and_grad`` and ``predict`` are jitted functions of their
inputs, and XLA's partitioner places the computation where the data is. Every sample's recurrence runs
on the device that holds it; what crosses devices is a handful of all-reduces (the loss, the gradient
summed over the global batch, and with ``norm="batch"`` the norm's mean and variance over the global
batch), so the gradient, the norm statistics and the dropout masks (drawn for the global batch's shape)
are those of the unsharded step (tests/test_parallel.py compares them, and reads the compiled program
to check that no batch-sized array is gathered).

Several processes (``jax.distributed.initialize``): every process holds only its own rows of each
batch; :meth:`DataParallel.local_rows` says which, and :meth:`DataParallel.from_local` makes the global
arrays from them (``jax.make_array_from_process_local_data``). ``hamecho train`` does this for you
(``hamecho.training.processes``, docs/scaling.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = ["DataParallel", "data_parallel"]


@dataclass(frozen=True)
class DataParallel:
    """Batches split along ``axis`` of ``mesh``, everything else replicated on every device of it.

    ``batch``/``replicated``: the ``NamedSharding``s to put a batch and a model on; ``size``: devices
    along the batch axis (a batch size must be a multiple of it).
    """

    mesh: Mesh
    axis: str = "batch"

    def __post_init__(self):
        if self.axis not in self.mesh.axis_names:
            raise ValueError(f"the mesh has axes {tuple(self.mesh.axis_names)}, not the batch axis {self.axis!r}")
        if any(kind != AxisType.Auto for kind in self.mesh.axis_types):
            # jax.make_mesh's default axes are Explicit: sharding becomes part of every array's type, and the
            # model's vmap over a batch-split x beside unsplit per-sample keys is refused. The same devices
            # with Auto axes leave the placement to XLA's partitioner, which is what this class is written for.
            names = self.mesh.axis_names
            auto = Mesh(self.mesh.devices, names, axis_types=(AxisType.Auto,) * len(names))
            object.__setattr__(self, "mesh", auto)

    @property
    def batch(self) -> NamedSharding:
        """Leading (batch) axis split over the mesh's batch axis, other axes whole."""
        return NamedSharding(self.mesh, PartitionSpec(self.axis))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def size(self) -> int:
        return int(self.mesh.shape[self.axis])

    def check_batch(self, batch: int, what: str = "the batch size") -> None:
        """``ValueError`` in one sentence when ``batch`` samples cannot be split evenly over the devices."""
        if batch % self.size:
            raise ValueError(f"{what} {batch} is not a multiple of the {self.size} devices it is split over; "
                             f"use a multiple of {self.size} or fewer devices")

    def replicate(self, tree):
        """Every array of ``tree`` (a model, an optimiser state, or a tuple of them) on every device.

        With several processes each must pass the same values (a model built from the same seed, a
        checkpoint every process read or was sent)."""
        put = lambda a: jax.device_put(a, self.replicated) if eqx.is_array(a) else a
        return jax.tree_util.tree_map(put, tree)

    def local_rows(self, batch: int) -> slice:
        """The rows of a global batch of ``batch`` samples that this process's devices hold (all of them
        with one process)."""
        self.check_batch(batch)
        starts = {index[0].start or 0 for index in self.batch.addressable_devices_indices_map((batch,)).values()}
        width = batch // self.size
        rows = slice(min(starts), max(starts) + width)
        if len(starts) * width != rows.stop - rows.start:
            raise ValueError("this process's devices are not adjacent along the mesh's batch axis; build the mesh "
                             "from jax.devices() in their order (grouped by process)")
        return rows

    def from_local(self, *arrays, batch: int):
        """Global batch-sharded arrays of ``batch`` samples from this process's rows of each
        (``local_rows(batch)``; all rows with one process). One array in, one out; several, a tuple."""
        out = tuple(jax.make_array_from_process_local_data(self.batch, np.asarray(a), (batch,) + np.shape(a)[1:])
                    for a in arrays)
        return out[0] if len(out) == 1 else out

    def shard(self, *arrays):
        """Global batch-sharded arrays from the whole batch, held by every process (a process uses its own
        rows only). One array in, one out; several, a tuple."""
        batch = len(arrays[0])
        if any(len(a) != batch for a in arrays):
            raise ValueError(f"the arrays to shard have different batch sizes {[len(a) for a in arrays]}")
        rows = self.local_rows(batch)
        return self.from_local(*(np.asarray(a)[rows] for a in arrays), batch=batch)


def data_parallel(mesh: Mesh | None = None, *, axis: str = "batch", devices=None) -> DataParallel:
    """Data parallelism over ``axis`` of ``mesh``; with no mesh, a one-axis mesh over ``devices``
    (default: every device of every process, ``jax.devices()``). A mesh with Explicit axes (what
    ``jax.make_mesh`` gives by default) is used with the same devices and Auto axes."""
    if mesh is None:
        devices = jax.devices() if devices is None else list(devices)
        if not devices:
            raise ValueError("data_parallel: no devices given")
        mesh = Mesh(np.array(devices), (axis,))
    return DataParallel(mesh, axis)
