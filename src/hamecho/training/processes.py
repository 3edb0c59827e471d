"""One run on several devices and several processes, on JAX's own runtime (``jax.distributed``, ``jax.sharding``).

    hamecho train cfg.toml --devices 2                                        # 2 devices of this machine
    hamecho train cfg.toml --coordinator 10.0.0.1:4455 --num-processes 2 --process-id 0   # machine A
    hamecho train cfg.toml --coordinator 10.0.0.1:4455 --num-processes 2 --process-id 1   # machine B

A run is data-parallel (``hamecho.data_parallel``): the devices of every process form one mesh axis,
each step's batch is split along it and the model is replicated. Every process computes the same
batch indices from (seed, step) and feeds only its own rows (``jax.make_array_from_process_local_data``);
XLA all-reduces the gradient (and the batch norm's statistics), so the run is the 1-device run up to
the order of floating-point sums (tests/test_parallel.py: the same result file to 1e-6).

Process 0 alone touches the run's files: it takes the run's lock, reads the checkpoint and writes
checkpoints, results and logs. What it finds (the run is finished, is held elsewhere, the checkpoint's
arrays) reaches the other processes through :meth:`Processes.decide`, a broadcast over JAX's own
collectives, so the run's folder need not be shared between machines. Decisions that depend on a
process's own clock or signals (the time limit, Ctrl-C) are agreed every step (:meth:`Processes.any`).

Starting the processes (:func:`start`): ``--coordinator/--num-processes/--process-id``, or the
environment a launcher sets: ``JAX_COORDINATOR_ADDRESS`` with ``HAMECHO_NUM_PROCESSES`` and
``HAMECHO_PROCESS_ID``, or a cluster ``jax.distributed`` detects by itself (Slurm's ``srun``, Open MPI's
``mpirun``, Kubernetes, Cloud TPU) when it reports more than one process. A process that dies makes the
others fail at their next collective; :func:`exit_on_failure` turns that into one line and an exit
code (no hang at JAX's shutdown barrier), and ``--resume`` continues the run from its last checkpoint.
"""
from __future__ import annotations

import os
import pickle
import re
import signal
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

import jax
import numpy as np

from ..nn.parallel import DataParallel, data_parallel

__all__ = ["Processes", "data_layout", "die_if_asked", "exit_on_failure", "launched_by_cluster", "request_cpu_devices",
           "start"]

# Environment variables of launchers that jax.distributed.initialize() understands by itself, and the number of
# processes each announces (more than one: hamecho starts the distributed runtime without being told).
CLUSTER_SIZES = ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE")
NUM_PROCESSES_ENV, PROCESS_ID_ENV = "HAMECHO_NUM_PROCESSES", "HAMECHO_PROCESS_ID"
# Fault injection for tests: "PROCESS:STEP" kills that process (SIGKILL, as a lost machine) once STEP steps are done.
KILL_ENV = "HAMECHO_KILL_PROCESS_AT_STEP"


# --- starting the processes ------------------------------------------------------------------------------

def launched_by_cluster() -> bool:
    """Whether the environment asks for a multi-process run: ``JAX_COORDINATOR_ADDRESS``, or a launcher
    (Slurm, Open MPI) that started more than one process."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return any(int(os.environ.get(name, "1") or 1) > 1 for name in CLUSTER_SIZES)


def start(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None, *,
          heartbeat_timeout_s: int = 100) -> bool:
    """Join a multi-process run (``jax.distributed.initialize``) when the arguments or the environment ask
    for one; return whether this process is part of one. Must run before anything uses a JAX device.

    ``heartbeat_timeout_s``: after how long without news from a process JAX declares it dead (a
    process that exits or is killed is noticed at once by the others' next collective)."""
    given = (coordinator, num_processes, process_id)
    if all(v is None for v in given) and not launched_by_cluster():
        return False
    if num_processes is None and os.environ.get(NUM_PROCESSES_ENV):
        num_processes = int(os.environ[NUM_PROCESSES_ENV])
    if process_id is None and os.environ.get(PROCESS_ID_ENV):
        process_id = int(os.environ[PROCESS_ID_ENV])
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"the number of processes must be at least 1; got {num_processes}")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"the process id must be in 0..{num_processes - 1}; got {process_id}")
    if num_processes == 1:
        return False
    if coordinator is not None and not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", coordinator):
        raise ValueError(f"the coordinator must be HOST:PORT (process 0's address); got {coordinator!r}")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   heartbeat_timeout_seconds=heartbeat_timeout_s)
    except (ValueError, TypeError) as error:
        raise ValueError(f"cannot start the multi-process run: {error} (give --coordinator HOST:PORT, "
                         "--num-processes N and --process-id I, or run under a launcher jax.distributed knows)") \
            from None
    return jax.process_count() > 1


def request_cpu_devices(count: int) -> None:
    """Ask for ``count`` CPU devices (``jax_num_cpu_devices``) so that ``--devices N`` works on a machine
    without accelerators; nothing when JAX's backends already started, or on an accelerator (whose own
    devices are used)."""
    if count > 1:
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:
            pass   # backends started: the devices are what they are, data_layout says so when too few


def data_layout(devices: int | str | None = None) -> DataParallel | None:
    """The data-parallel layout of a run: ``devices`` per process (an int, "all", or None: 1), on every
    process. None when that is one device in all (the single-device path, unchanged)."""
    local = jax.local_devices()
    if devices is None:
        count = 1
    elif devices == "all":
        count = len(local)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        count = devices
    else:
        raise ValueError(f"devices must be a positive integer or 'all'; got {devices!r}")
    if count > len(local):
        raise ValueError(f"{count} devices were asked for but this process has {len(local)} "
                         f"({local[0].platform}); use --devices {len(local)} or all")
    if count * jax.process_count() == 1:
        return None
    chosen = [d for p in range(jax.process_count())
              for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:count]]
    return data_parallel(devices=chosen)


# --- agreeing across processes ---------------------------------------------------------------------------

def _broadcast_bytes(payload: bytes) -> bytes:
    """Process 0's ``payload`` on every process (JAX's ``broadcast_one_to_all``; sizes padded to a power of
    two so that few shapes compile)."""
    from jax.experimental import multihost_utils

    size = int(multihost_utils.broadcast_one_to_all(np.array(len(payload), np.int32)))
    buffer = np.zeros(1 << max(size - 1, 1).bit_length(), np.uint8)
    buffer[:len(payload)] = np.frombuffer(payload, np.uint8)
    return multihost_utils.broadcast_one_to_all(buffer)[:size].tobytes()


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: ``index`` of ``count``; process 0 is the ``writer``."""

    index: int = 0
    count: int = 1

    @classmethod
    def current(cls) -> Processes:
        return cls(jax.process_index(), jax.process_count())

    @property
    def writer(self) -> bool:
        return self.index == 0

    def decide(self, decide):
        """``decide()`` computed by process 0 and returned on every process (an exception it raises is
        raised on every process). One process: just ``decide()``. Every process must call this at the
        same point, as with any collective."""
        if self.count == 1:
            return decide()
        outcome, error = None, None
        if self.writer:
            try:
                outcome = pickle.dumps(("value", decide()))
            except Exception as caught:  # noqa: BLE001 - sent to the other processes, raised here below
                error = caught
                try:
                    outcome = pickle.dumps(("error", caught))
                except Exception:  # noqa: BLE001 - an exception that does not pickle travels as its message
                    outcome = pickle.dumps(("error", RuntimeError(f"{type(caught).__name__}: {caught}")))
        kind, value = pickle.loads(_broadcast_bytes(outcome or b""))
        if error is not None:
            raise error
        if kind == "error":
            raise value
        return value

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on some process, on every process (every process calls this at the same step)."""
        if self.count == 1:
            return tuple(bool(f) for f in flags)
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(np.array([bool(f) for f in flags], np.int32))
        return tuple(bool(v) for v in np.asarray(gathered).reshape(self.count, len(flags)).any(axis=0))


# --- failing cleanly ----------------------------------------------------------------------------------

def die_if_asked(processes: Processes, step: int) -> None:
    """Test hook (``HAMECHO_KILL_PROCESS_AT_STEP=PROCESS:STEP``): this process kills itself with SIGKILL when it
    is that process and ``step`` steps are done, as a machine lost mid-run would."""
    asked = os.environ.get(KILL_ENV)
    if asked and asked == f"{processes.index}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


LOST_PEER = re.compile(r"gloo|connection reset|coordination|heartbeat|unavailable|deadline_exceeded|broken pipe|"
                       r"socket closed|peer", re.IGNORECASE)


def describe_failure(error: BaseException) -> tuple[str, int]:
    """(one line, exit code) for an exception that ends a process of a multi-process run."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, jax.errors.JaxRuntimeError) or LOST_PEER.search(text):
        first = text.split(". ")[0][:300]
        return (f"lost contact with another process of this run ({first}); its last checkpoint is kept: when every "
                "process is running again, run the same command with --resume", 1)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(error, ValueError):
        return text, 2
    return f"{type(error).__name__}: {text}", 1


@contextmanager
def exit_on_failure(command: str):
    """In a multi-process run, any exception ends this process at once with one line on stderr and an exit
    code (``os._exit``): waiting at JAX's shutdown barrier for a process that died would hang, and the
    others are stopped by their own next collective. A single process: exceptions pass through."""
    if jax.process_count() == 1:
        yield
        return
    try:
        yield
    except BaseException as error:  # noqa: BLE001 - every exit of a multi-process run goes through here
        line, code = describe_failure(error)
        if code == 1 and not isinstance(error, jax.errors.JaxRuntimeError) and not LOST_PEER.search(str(error)):
            traceback.print_exc(file=sys.stderr)
        print(f"{command}: error: process {jax.process_index()} of {jax.process_count()}: {line}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)
