"""Devices that run outside JAX: a simulator or an instrument driven from Python, reached by a callback.

Subclass :class:`HostDevice` and implement :meth:`HostDevice.run_on_host` with NumPy arrays in and out;
the class turns it into :meth:`~hamecho.physical.device.Device.run` with ``jax.pure_callback``, so the
device works under ``jax.jit``, ``jax.vmap`` (one sample batch after another) and inside the RHEL core.
Nothing is differentiated through it: the core's custom VJP calls it for the echo and applies the local
rule to what it measured.

Randomness under jit. A pure callback must be a function of its inputs: JAX may skip a call whose
outputs are unused, or call again with the same inputs, and expects the same answer. A noisy device is
therefore given a generator seeded by the device's ``seed``, the pass (forward or echo), the repetition
index and a digest of every input array (the parameters, drives, start state and nudges). Every
training step changes the parameters or the batch, so each step draws fresh, independent noise; the
same call repeated gives the same realisation (reproducible runs, and a recomputed forward pass — e.g.
under ``RecomputeBlocks`` — agrees with the one it replaces); the two echoes of a pair differ in their
nudges, hence in their noise. An explicit key argument is not possible here (the device travels as a
static choice through ``value_and_grad``), and ``io_callback`` would make the noise depend on the order
in which XLA happens to run the calls, with no reproducibility to gain. Digesting the inputs costs one
pass over them per call, small beside the simulation.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .device import Device, Measurement


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0; got {seed!r}")
    return seed


def input_digest(*arrays) -> int:
    """A 128-bit integer digest of the arrays' shapes, dtypes and bytes (the callback's seed material)."""
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return int.from_bytes(digest.digest(), "little")


@dataclass(frozen=True, kw_only=True)
class HostDevice(Device):
    """A device whose dynamics run on the host (NumPy, a simulator, an instrument): implement
    :meth:`run_on_host`. ``seed``: the root of its random draws (module docstring)."""

    seed: int = 0

    def __post_init__(self):
        check_seed(self.seed)

    def run_on_host(self, ham, theta: dict, drives: np.ndarray, state: tuple, nudges: np.ndarray | None, *,
                    echo: bool, run: int, rng: np.random.Generator) -> Measurement:
        """:meth:`Device.run` in NumPy: every array float64; return a :class:`Measurement` of NumPy arrays.

        ``ham``: the model's Hamiltonian (``ham.name`` says which physics to build); ``theta``: its
        parameters as NumPy arrays (the same pytree); ``rng``: this call's generator (module docstring).
        """
        raise NotImplementedError

    def rng_for(self, arrays, *, echo: bool, run: int) -> np.random.Generator:
        """The generator of one call: seeded by (seed, pass, run, digest of the inputs)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, int(echo), run, input_digest(*arrays)]))

    def run(self, ham, theta, drives, state, nudges, *, echo, run):
        length, batch = drives.shape[:2]
        size = state[1].shape[-1]
        dtype = drives.dtype
        trajectory = jax.ShapeDtypeStruct((length, batch, size), dtype)
        final = jax.ShapeDtypeStruct((batch, size), dtype)
        shapes = Measurement(trajectory, trajectory, trajectory, trajectory, (final, final))
        treedef = jax.tree_util.tree_structure(theta)

        def on_host(theta_leaves, drives, state, nudges, run):
            arrays = [np.asarray(a, np.float64) for a in (*theta_leaves, drives, *state)]
            nudges = None if nudges is None else np.asarray(nudges, np.float64)
            run = int(run)
            rng = self.rng_for(arrays if nudges is None else arrays + [nudges], echo=echo, run=run)
            host_theta = jax.tree_util.tree_unflatten(treedef, arrays[:len(theta_leaves)])
            measured = self.run_on_host(ham, host_theta, arrays[-3], tuple(arrays[-2:]), nudges, echo=echo, run=run,
                                        rng=rng)
            return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), measured)

        return jax.pure_callback(on_host, shapes, jax.tree_util.tree_leaves(theta), drives, tuple(state), nudges,
                                 jnp.asarray(run, jnp.int32), vmap_method="sequential")
