"""The training loop: one run (configuration, algorithm, seed) from set up to its result file.

:func:`run_one` sets a run up (:class:`Run`: data, model, optimiser, loop state, or all of them from
the run's checkpoint), takes optimiser steps, evaluates every ``eval_every`` steps and at the last
step, checkpoints after every evaluation, and writes the result JSON (:mod:`hamecho.training.results`).

Protocol (spec §5, rhel-paper-notes §6.3): Adam with a constant learning rate; mini-batches from a
fresh permutation of the training set every epoch (last incomplete batch dropped); dropout 0.05 and
batch-norm running statistics; evaluation, the test metric at the best validation and early stopping
as :mod:`hamecho.training.evaluation` describes. A run stops at ``train.steps``, by early stopping, on a
loss or validation metric that is not finite (``"diverged"``) or past ``train.time_limit_s``; on
Ctrl-C or at ``stop_at_step`` it checkpoints and raises :class:`Interrupted`.

Determinism. The seed fixes the data split (``hamecho.data.load(seed=...)``), the model
initialisation (the same for BPTT and RHEL), the batch order (the permutation of epoch e is
``numpy.random.Generator(PCG64([seed, e]))``) and the dropout keys (``fold_in(key, step)``), so
everything the loop needs at step k is a function of (seed, k) and the stored arrays. A checkpoint
holds the model, the optimiser state and the loop state; a resumed run ends bit-identical to an
uninterrupted one (tested in float64 on CPU).

One process trains a run at a time (:mod:`hamecho.training.locks`: another gets :class:`RunBusy`). A run
may be data-parallel over several devices and processes (``devices=``, :mod:`hamecho.training.processes`):
every process takes its rows of each batch, and process 0 alone reads and writes the run's files.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from ..core.choices import Choices
from ..nn.api import init_optimizer, train_step
from ..nn.hssm import HSSM, count_parameters
from ..nn.keywords import ALGOS
from ..nn.parallel import DataParallel
from .checkpoints import atomic_write_json, checkpoint_exists, resume_checkpoint, save_checkpoint
from .config import Config, train_choices
from .evaluation import INFERENCE, EarlyStopping, Evaluator, split_reader
from .locks import RunBusy, RunLock, lock_path
from .processes import Processes, data_layout, die_if_asked
from .results import build_result, read_result, run_paths
from .state import LoopState

__all__ = ["Interrupted", "Run", "RunBusy", "TrainingBatches", "batch_indices", "build_model", "choices_for",
           "load_data", "optimizer_for", "run_one", "set_precision", "train_config"]


class Interrupted(Exception):
    """Training stopped early on request (SIGINT or ``stop_at_step``); the checkpoint is written."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint written to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


# --- the parts of a run ---------------------------------------------------------------------------------

def set_precision(dtype: str, core_dtype: str = "float64") -> None:
    """float64 training or float64 cores need JAX's x64 mode (switched on, never off: other code may rely
    on it). The model's own dtype is explicit, so x64 mode does not widen a float32 model."""
    if "float64" in (dtype, core_dtype) and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def load_data(config: Config, seed: int):
    """The ``hamecho.data.DatasetSplits`` for ``seed`` as the configuration describes it: a dataset by
    name, or a data file of your own (``data.path``, relative to ``config.base_dir``)."""
    from ..data import load, load_file

    d = config.data
    if d.path is not None:
        return load_file(data_file(config), seed=seed, split_dir=d.split_dir, length=d.length,
                         time_channel=d.time_channel, num_samples=d.num_samples)
    return load(d.name, d.data_dir, seed=seed, time_channel=d.time_channel, length=d.length,
                num_samples=d.num_samples, split_dir=d.split_dir, ppg_window=d.ppg_window, ppg_stride=d.ppg_stride)


def data_file(config: Config) -> Path:
    """The configuration's ``data.path``, a relative one taken from ``config.base_dir``."""
    path = Path(config.data.path).expanduser()
    if not path.is_absolute() and config.base_dir is not None:
        path = Path(config.base_dir) / path
    return path


def locate_data(config: Config) -> str:
    """Where the configuration's data is, found as :func:`load_data` finds it but without reading the files
    (``hamecho train --check``); the same ``DataNotFoundError`` (with close names) or ``ValueError``."""
    from ..data import locate

    if config.data.path is not None:
        return locate(data_file(config))
    return locate(config.data.name, config.data.data_dir)


def build_model(config: Config, data, seed: int) -> HSSM:
    """The HSSM for this configuration and dataset; initialised from ``seed`` only (same for every algo)."""
    m = config.model
    return HSSM(in_dim=data.channels, out_dim=data.out_dim, hidden=m.hidden, state=m.state, blocks=m.blocks,
                hru=m.hru, task=data.task, output_step=data.output_step, step=m.step,
                dtype=config.train.dtype, norm=m.norm, key=jax.random.PRNGKey(seed))


_OPTIMIZERS: dict = {}


def optimizer_for(lr: float):
    """Adam with a constant learning rate; one object per rate, so runs (seeds) share one compilation."""
    if lr not in _OPTIMIZERS:
        import optax

        _OPTIMIZERS[lr] = optax.adam(lr)
    return _OPTIMIZERS[lr]


def choices_for(config: Config, algo: str) -> Choices:
    """The strategy objects a run of ``config`` with ``algo`` trains with (the [train] keys translated by
    ``config.train_choices``), with the [device] table's device in the integrator's place when there is one."""
    return train_choices(config.train, algo, config.physical_device())


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """Training-set indices of the batch taken at ``step`` (0-based): epoch e = step // (n // batch) uses
    the permutation ``Generator(PCG64([seed, e])).permutation(n)``; the last incomplete batch is dropped."""
    per_epoch = n // batch
    epoch, position = divmod(step, per_epoch)
    permutation = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)
    return permutation[position * batch:(position + 1) * batch]


@dataclass(frozen=True)
class TrainingBatches:
    """The batch of every step (:func:`batch_indices`) of the training set, read from arrays or made on demand.

    count: samples in the training set; read(indices) -> (x (n, L, C) in the run's dtype, y int32 labels (n,) or
    targets (n, L // k, out)); size: samples per batch (at most count). layout: data-parallel runs only: each
    batch is split over its devices, this process reading (or making) its rows only.
    """

    count: int
    read: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    seed: int
    size: int
    layout: DataParallel | None = None

    @classmethod
    def from_data(cls, data, dtype, batch_size: int, seed: int, layout: DataParallel | None = None) -> TrainingBatches:
        count, read = split_reader(data, "train", dtype)
        if count == 0:
            raise ValueError(f"{data.name}: the training set is empty")
        size = min(batch_size, count)
        if layout is not None:
            layout.check_batch(size, "the batch size (train.batch_size)")
        return cls(count, read, seed, size, layout)

    @property
    def per_epoch(self) -> int:
        return max(1, self.count // self.size)

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the batch taken at ``step`` (data-parallel: global arrays, this process's rows read)."""
        indices = batch_indices(self.seed, step, self.count, self.size)
        if self.layout is None:
            return self.read(indices)
        rows = indices[self.layout.local_rows(self.size)]
        return self.layout.from_local(*self.read(rows), batch=self.size)


# --- one run in training ---------------------------------------------------------------------------------

@dataclass
class Run:
    """One run in training: its model and optimiser state, its loop state, and the parts that change them.

    ``elapsed()`` counts the wall-clock time of every session, this one from its set up on. ``layout``:
    the data-parallel layout (None: one device); ``processes``: this process's place (process 0 writes).
    """

    config: Config
    algo: str
    seed: int
    fingerprint: str
    checkpoint_path: Path
    data: object                 # hamecho.data.DatasetSplits
    batches: TrainingBatches
    evaluator: Evaluator
    stopping: EarlyStopping
    optimizer: object            # optax.GradientTransformation
    choices: object              # hamecho.core.choices.Choices
    dropout_key: jax.Array
    model: HSSM
    opt_state: object
    state: LoopState
    session_start: float
    wall_before: float           # wall-clock seconds of the earlier sessions
    layout: DataParallel | None = None
    processes: Processes = Processes()

    @classmethod
    def start(cls, config: Config, algo: str, seed: int, checkpoint_path: Path, fingerprint: str, *,
              resume: bool, devices: int | str | None = None) -> Run:
        """Set the run up from scratch, or from its checkpoint when there is one and ``resume``; data-parallel
        over ``devices`` per process (:func:`hamecho.training.processes.data_layout`)."""
        t = config.train
        set_precision(t.dtype, t.core_dtype)
        session_start = time.perf_counter()
        data = load_data(config, seed)
        if data.task == "regression" and data.output_step > data.length:
            raise ValueError(f"{config.name}: output_step {data.output_step} exceeds the length {data.length}")
        dtype = np.dtype(t.dtype)
        model = build_model(config, data, seed)
        optimizer = optimizer_for(t.lr)
        opt_state = init_optimizer(optimizer, model)
        dropout_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
        choices = choices_for(config, algo)
        # a run on a physical device is evaluated on it, too (inference is a forward pass: RHEL's choice)
        eval_choices = Choices(integrator=choices.integrator) if config.device is not None else INFERENCE
        state = LoopState(seed=seed)
        layout, processes = data_layout(devices), Processes.current()
        batches = TrainingBatches.from_data(data, dtype, t.batch_size, seed, layout)
        if processes.decide(lambda: checkpoint_exists(checkpoint_path)):
            if not resume:
                raise ValueError(f"a checkpoint of an interrupted run exists at {checkpoint_path}; resume it "
                                 "(--resume) or remove it (--restart)")
            state, model, opt_state = processes.decide(lambda: resume_checkpoint(
                checkpoint_path, model, opt_state, fingerprint=fingerprint, dropout_key=dropout_key, seed=seed))
        if layout is not None:
            model, opt_state = layout.replicate((model, opt_state))
        state.sessions += 1
        return cls(config=config, algo=algo, seed=seed, fingerprint=fingerprint, checkpoint_path=checkpoint_path,
                   data=data, batches=batches,
                   evaluator=Evaluator.for_data(data, dtype, t.eval_batch_size, t.eval_train, eval_choices, layout),
                   stopping=EarlyStopping(t.early_stopping, t.patience), optimizer=optimizer,
                   choices=choices, dropout_key=dropout_key, model=model,
                   opt_state=opt_state, state=state, session_start=session_start, wall_before=state.wall_s,
                   layout=layout, processes=processes)

    def elapsed(self) -> float:
        return self.wall_before + (time.perf_counter() - self.session_start)

    def step(self) -> float:
        """One optimiser step on the batch of ``state.step``; returns its loss (not finite: diverged)."""
        step = self.state.step
        x, y = self.batches.at(step)
        key = jax.random.fold_in(self.dropout_key, step)
        if self.layout is not None:
            key = self.layout.replicate(key)
        c = self.choices
        self.model, self.opt_state, loss = train_step(self.model, self.opt_state, x, y, self.optimizer,
                                                      gradient=c.gradient, integrator=c.integrator, memory=c.memory,
                                                      key=key)
        loss = float(loss)
        self.state.record_step(loss)
        die_if_asked(self.processes, self.state.step)
        if not math.isfinite(loss):
            self.state.stopped = "diverged"
        return loss

    def evaluate(self, step_ms: float | None) -> dict:
        """Evaluate at the current step (history entry returned), then apply early stopping."""
        entry = self.evaluator.evaluate(self.model, self.state, elapsed=self.elapsed, step_ms=step_ms)
        self.stopping.check(self.state)
        return entry

    def checkpoint(self) -> None:
        """Write the checkpoint (process 0 only)."""
        self.state.wall_s = self.elapsed()
        if not self.processes.writer:
            return
        save_checkpoint(self.checkpoint_path, self.model, self.opt_state, {
            "fingerprint": self.fingerprint, "algo": self.algo, "config": self.config.to_dict(),
            "dropout_key": np.asarray(jax.random.key_data(self.dropout_key)).tolist(),
            "epoch": self.state.step // self.batches.per_epoch, "loop": self.state.to_json()})

    def result(self, first_step_s: float | None) -> dict:
        return build_result(self.config, self.algo, self.seed, self.state, data=self.data, batch=self.batches.size,
                            parameters=count_parameters(self.model), first_step_s=first_step_s,
                            fingerprint=self.fingerprint)


class StepTimer:
    """Milliseconds per step over each interval between evaluations; the first step of a session
    (which compiles) is timed on its own (``first_step_s``) and left out."""

    def __init__(self, step: int):
        self.first_step_s: float | None = None
        self.restart(step)

    def restart(self, step: int) -> None:
        """A new interval starting at ``step``."""
        self.start, self.first = time.perf_counter(), step

    def stepped(self, tick: float, step: int) -> None:
        """A step that began at ``tick`` (``time.perf_counter()``) ended; ``step`` steps are done."""
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - tick
            self.restart(step)

    def ms_per_step(self, step: int) -> float | None:
        done = step - self.first
        return 1000 * (time.perf_counter() - self.start) / done if done > 0 else None


class _Progress:
    """The progress bar (loss, last validation metric) and the optional log line per evaluation."""

    def __init__(self, description: str, state: LoopState, steps: int, metric: str, *, show: bool | None, log):
        self.description, self.metric, self.log = description, metric, log
        self.bar = tqdm(total=steps, initial=state.step, desc=description, disable=None if show is None else
                        not show, mininterval=1.0, dynamic_ncols=True, leave=False, file=sys.stderr)
        self.last_val = state.history[-1][f"val_{metric}"] if state.history else None

    def advance(self) -> None:
        self.bar.update(1)

    def evaluated(self, entry: dict) -> None:
        self.last_val = entry[f"val_{self.metric}"]
        if self.log is not None:
            m = self.metric
            test_text = f", test {entry[f'test_{m}']:.4f}" if f"test_{m}" in entry else ""
            with tqdm.external_write_mode(file=sys.stderr):
                self.log(f"{self.description}: step {entry['step']}, loss {entry['train_loss']:.4f}, "
                         f"val {m} {self.last_val:.4f}{test_text}")

    def show_loss(self, step: int, loss: float) -> None:
        if step % 10 == 0 or step == 1:
            self.bar.set_postfix_str(f"loss {loss:.4f}" + ("" if self.last_val is None else
                                                            f", val {self.last_val:.4f}"), refresh=False)

    def close(self) -> None:
        self.bar.close()


class _InterruptFlag:
    """While active, the first Ctrl-C sets a flag (the loop checkpoints and stops); a second one
    interrupts at once. Only installed in the main thread."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.set = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# --- run_one, train_config -------------------------------------------------------------------------------

def _finished(result_path: Path, fingerprint: str) -> bool:
    """Whether the run's result exists; ``ValueError`` if it comes from another configuration."""
    if not result_path.exists():
        return False
    previous = read_result(result_path)
    if previous.get("fingerprint") != fingerprint:
        raise ValueError(f"{result_path} exists from a different configuration (fingerprint "
                         f"{previous.get('fingerprint')} vs {fingerprint}); use another --out or remove it")
    return True


def run_one(config: Config, algo: str, seed: int, out: str | Path | None = None, *, resume: bool = True,
            progress: bool | None = None, log=None, stop_at_step: int | None = None,
            devices: int | str | None = None) -> Path:
    """Train one (configuration, algorithm, seed) and return the path of its result JSON.

    Idempotent: when the result exists (with the same run fingerprint) it is returned without training.
    ``resume``: continue from the checkpoint if there is one; otherwise an existing checkpoint raises
    ``ValueError`` (it would be overwritten). ``progress``: tqdm bar (None: only on a terminal).
    ``log``: called with one line per evaluation (default: none). ``stop_at_step``: behave as if
    interrupted after that step (checkpoint, raise :class:`Interrupted`); also raised on Ctrl-C.
    A result or checkpoint made with a different fingerprint raises ``ValueError``. A run that another
    process is training raises :class:`RunBusy` (its message names the holder). ``devices``: per
    process, data-parallel (an int, "all"; None: one device); in a multi-process run
    (:mod:`hamecho.training.processes`) every process calls ``run_one`` alike and process 0 writes.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(map(repr, ALGOS))}; got {algo!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    result_path, checkpoint_path = run_paths(config, algo, seed, out)
    fingerprint = config.run_fingerprint()
    processes = Processes.current()
    if processes.decide(lambda: _finished(result_path, fingerprint)):
        return result_path
    lock = RunLock(lock_path(checkpoint_path)) if processes.writer else None
    processes.decide(lambda: lock.acquire(f"{config.name} {algo} seed {seed}"))
    try:
        if processes.decide(lambda: _finished(result_path, fingerprint)):   # finished while this one started
            return result_path
        if not processes.writer:
            progress, log = False, None
        return _train(config, algo, seed, result_path, checkpoint_path, fingerprint, resume=resume,
                      progress=progress, log=log, stop_at_step=stop_at_step, devices=devices)
    finally:
        if lock is not None:
            lock.release()


def _train(config: Config, algo: str, seed: int, result_path: Path, checkpoint_path: Path, fingerprint: str, *,
           resume: bool, progress: bool | None, log, stop_at_step: int | None, devices) -> Path:
    """The body of :func:`run_one`, the run's lock held."""
    t = config.train
    run = Run.start(config, algo, seed, checkpoint_path, fingerprint, resume=resume, devices=devices)
    state = run.state
    timer = StepTimer(state.step)
    bar = _Progress(f"{config.name} {algo} seed {seed}", state, t.steps, run.evaluator.metric, show=progress, log=log)
    try:
        with _InterruptFlag() as interrupt:
            while state.stopped is None and state.step < t.steps:
                tick = time.perf_counter()
                loss = run.step()
                timer.stepped(tick, state.step)
                bar.advance()
                if state.step % t.eval_every == 0 or state.step == t.steps or state.stopped:
                    entry = run.evaluate(timer.ms_per_step(state.step))
                    run.checkpoint()
                    timer.restart(state.step)
                    bar.evaluated(entry)
                bar.show_loss(state.step, loss)
                over_time = t.time_limit_s is not None and state.stopped is None and run.elapsed() > t.time_limit_s
                over_time, interrupted = run.processes.any(over_time, interrupt.set)   # every process alike
                if over_time:
                    state.stopped = "time_limit"
                    if state.history and state.history[-1]["step"] != state.step:
                        run.evaluate(None)
                    run.checkpoint()
                if state.stopped is None and state.step < t.steps and (
                        interrupted or (stop_at_step is not None and state.step >= stop_at_step)):
                    run.checkpoint()
                    raise Interrupted(state.step, checkpoint_path)
    finally:
        bar.close()

    if state.stopped is None:
        state.stopped = "max_steps"
    run.checkpoint()
    if run.processes.writer:
        atomic_write_json(result_path, run.result(timer.first_step_s))
    return result_path


def train_config(config: Config, *, out: str | Path | None = None, resume: bool = True,
                 progress: bool | None = None, log=None, devices: int | str | None = None,
                 on_busy=None) -> list[Path]:
    """Every (seed, algo) of the configuration, seed by seed (both algorithms of a seed are adjacent).

    ``on_busy``: called with the :class:`RunBusy` of a run another process is training, which is then
    skipped (its path is not returned); None: the error is raised. ``devices``: as for :func:`run_one`."""
    paths = []
    for seed in config.train.seeds:
        for algo in config.train.algos:
            try:
                paths.append(run_one(config, algo, seed, out, resume=resume, progress=progress, log=log,
                                     devices=devices))
            except RunBusy as busy:
                if on_busy is None:
                    raise
                on_busy(busy)
    return paths
