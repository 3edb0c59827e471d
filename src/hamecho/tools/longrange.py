"""``hamecho longrange``: training at long sequence lengths, lengths × tasks × methods × seeds, one run per process.

    cells = grid_cells(lengths=[10_000, 100_000], tasks=["first5"], methods=["streaming", "bptt_chunks"],
                       seeds=[0, 1, 2], settings=RunSettings(steps=300))
    rows = run_grid(cells, "runs/longrange/grid")          # resumable: rerun it after an interruption
    write_outputs(rows, "runs/longrange/grid")             # longrange.json, longrange.md, three plots

A *cell* (``Cell``) is one training run: a generated task (``hamecho.data.generated``, made batch by batch, never
held) at one length L, trained by one method (``METHODS``: RHEL with ``Streaming``, plain RHEL, BPTT, BPTT with
``TimeChunks``) from one seed, then its test metric (accuracy, or MSE for a regression task) over the test split.
Each cell runs in a fresh interpreter (``python -m hamecho.tools.longrange CELL_DIR``), so its whole-process peak
memory (VmHWM: runtime, compilation, data and steps) is its own. Per cell the folder ``CELL_DIR`` holds
``cell.json`` (what to run), ``checkpoint.npz`` (written atomically every ``checkpoint_every_s`` seconds and at
the end of each stage), ``log.jsonl`` (one JSON line per step) and, once finished, ``result.json``. A rerun skips
cells with a result and resumes the others from their checkpoints, bit for bit (batches are drawn by step index).

The recipe (docs/longrange.md): Adam at ``lr`` for every parameter but the HRUs' θ (the linear HRU's a and steps,
``hamecho.nn.hssm.parameter_groups``), which gets ``theta_learning_rate(L) = min(lr, THETA_LR_SCALE / L)``: one
Adam step turns an oscillator's phase by up to Δθ·L, so θ's rate must fall as 1/L for a step to mean the same at
every length. A length curriculum (``curriculum_steps``) trains first at L // ``curriculum_factor`` (with that
length's θ rate), then continues at L with a fresh optimiser; ``init_model`` starts from a saved model instead.

A cell whose peak would pass the memory limit is not started: the estimate is a line through the method's
measured peaks at shorter L in this grid (same model shape and batch), else the measured peak plus the slope of
the sizing table (``SIZING_BYTES_PER_SAMPLE_STEP``), else the sizing table alone; it is reported as
"does not fit: needs ≈ X GiB".
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["METHODS", "THETA_LR_SCALE", "Cell", "RunSettings", "estimated_peak_bytes", "grid_cells",
           "machine_memory_bytes", "method_choices", "run_cell", "run_grid", "theta_learning_rate",
           "time_exponent", "write_outputs"]

METHODS = ("streaming", "rhel", "bptt", "bptt_chunks")
METHOD_LABELS = {"streaming": "RHEL + Streaming", "rhel": "RHEL", "bptt": "BPTT", "bptt_chunks": "BPTT + TimeChunks"}
# θ's Adam learning rate is min(lr, THETA_LR_SCALE / L): at L = 20,000 that is 3e-4, the rate that took the first-5 %
# task from 59-78 % to 96.7 % (benchmarks/longrange/NOTES.md, section 9).
THETA_LR_SCALE = 6.0
# Whole-process peak of the sizing runs (benchmarks/longrange/NOTES.md, section 8; 2 blocks, hidden 16, state 16,
# batch 8, float64 cores): the base, and the growth per sample and step of each method, between its two longest
# measured lengths. Used only when this grid has not measured the method yet; scaled by batch and model width.
SIZING_BASE_BYTES = int(0.55 * 2**30)
SIZING_BYTES_PER_SAMPLE_STEP = {"streaming": 27, "rhel": 2950, "bptt": 4550, "bptt_chunks": 410}
SIZING_WIDTH = 2 * (16 + 16)          # blocks · (hidden + state) of the sizing model
GIB = 2**30


def method_choices(method: str, chunk: int) -> dict:
    """The strategy objects of ``method`` (a name in ``METHODS``) as ``train_step`` keywords."""
    import hamecho as he

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    return {"streaming": {"gradient": he.RHEL(), "memory": he.Streaming(chunk)},
            "rhel": {"gradient": he.RHEL()},
            "bptt": {"gradient": he.BPTT()},
            "bptt_chunks": {"gradient": he.BPTT(), "memory": he.TimeChunks(chunk)}}[method]


def theta_learning_rate(length: int, lr: float, scale: float | None = THETA_LR_SCALE) -> float:
    """θ's learning rate at sequence length ``length``: min(lr, scale / length); ``scale`` None: ``lr``."""
    return lr if scale is None else min(lr, scale / length)


# --- what one run is ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSettings:
    """Everything of a run but its task, length, method and seed (the grid's axes).

    steps, batch: training steps and samples per step at the final length; lr: Adam's learning rate;
    theta_lr_scale: θ's rate is min(lr, theta_lr_scale / L) (None: θ at lr); hidden, state, blocks, hru: the
    HSSM (norm "layer", float32 model, float64 cores); chunk: the time chunk of Streaming and TimeChunks;
    curriculum_steps: steps at L // curriculum_factor first (0: none); init_model: start from this saved model
    (``eqx.tree_serialise_leaves`` of the same shape); test_size: test samples; data_seed: the generated
    dataset's seed; task_params: keyword arguments of the task (e.g. {"classes": 3}); zero_head,
    hru_output_norm: the HSSM's options for long sequences (``hamecho.HSSM``; the regression tasks need both).
    """

    steps: int = 300
    batch: int = 16
    lr: float = 3e-3
    theta_lr_scale: float | None = THETA_LR_SCALE
    hidden: int = 16
    state: int = 16
    blocks: int = 2
    hru: str = "linear"
    chunk: int = 512
    curriculum_steps: int = 0
    curriculum_factor: int = 10
    init_model: str | None = None
    test_size: int = 300
    data_seed: int = 0
    task_params: dict = field(default_factory=dict)
    zero_head: bool = False
    hru_output_norm: bool = False

    def __post_init__(self):
        for name in ("steps", "batch", "hidden", "state", "blocks", "chunk", "test_size", "curriculum_factor"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        for name in ("zero_head", "hru_output_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if not isinstance(self.curriculum_steps, int) or self.curriculum_steps < 0:
            raise ValueError(f"curriculum_steps must be a non-negative integer; got {self.curriculum_steps!r}")
        if not self.lr > 0 or (self.theta_lr_scale is not None and not self.theta_lr_scale > 0):
            raise ValueError(f"lr and theta_lr_scale must be positive; got {self.lr!r}, {self.theta_lr_scale!r}")


# settings added after results were recorded (benchmarks/results/longrange/): left out of a cell's JSON, and so of
# its folder name, while at their defaults
LATER_SETTINGS = ("zero_head", "hru_output_norm")


@dataclass(frozen=True)
class Cell:
    """One run of the grid: ``task`` (a name in ``hamecho.data.generated.GENERATED_TASKS``) at ``length``, trained
    by ``method`` from model seed ``seed`` with ``settings``."""

    task: str
    length: int
    method: str
    seed: int
    settings: RunSettings = RunSettings()

    def __post_init__(self):
        from ..data.generated import GENERATED_TASKS

        if self.task not in GENERATED_TASKS:
            raise ValueError(f"unknown task {self.task!r}; allowed: {', '.join(GENERATED_TASKS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; allowed: {', '.join(METHODS)}")
        if not isinstance(self.length, int) or self.length < 2:
            raise ValueError(f"length must be an integer ≥ 2; got {self.length!r}")
        if self.settings.curriculum_steps and self.length // self.settings.curriculum_factor < 2:
            raise ValueError(f"the curriculum's first length L // {self.settings.curriculum_factor} is below 2 "
                             f"at L = {self.length}")

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for name in LATER_SETTINGS:     # left out at their defaults: the cells recorded before them keep their names
            if data["settings"][name] == getattr(RunSettings, name):
                del data["settings"][name]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Cell:
        return cls(**{**data, "settings": RunSettings(**data["settings"])})

    @property
    def name(self) -> str:
        """The cell's folder name: readable axes and a hash of the settings (two settings never share a folder)."""
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.task}-L{self.length}-{self.method}-seed{self.seed}-{digest}"

    def stages(self) -> list[tuple[int, int]]:
        """(length, steps) of each training stage: the curriculum's shorter length first, if any."""
        s = self.settings
        first = [(self.length // s.curriculum_factor, s.curriculum_steps)] if s.curriculum_steps else []
        return [*first, (self.length, s.steps)]

    @property
    def total_steps(self) -> int:
        return sum(steps for _, steps in self.stages())


def grid_cells(lengths: Sequence[int], tasks: Sequence[str], methods: Sequence[str], seeds: Sequence[int],
               settings: RunSettings = RunSettings()) -> list[Cell]:
    """Every (length, task, method, seed), shortest length first (so a longer cell's peak can be estimated from
    the shorter ones)."""
    return [Cell(task, int(length), method, int(seed), settings)
            for length in sorted(set(lengths)) for task in tasks for method in methods for seed in seeds]


# --- one run, in this process --------------------------------------------------------------------------------

def _build_model(cell: Cell, source, key):
    import jax.numpy as jnp

    import hamecho as he

    s = cell.settings
    return he.HSSM(in_dim=source.channels, out_dim=source.out_dim, hidden=s.hidden, state=s.state, blocks=s.blocks,
                   hru=s.hru, norm="layer", task=source.task, output_step=source.output_step, dtype=jnp.float32,
                   zero_head=s.zero_head, hru_output_norm=s.hru_output_norm, key=key)


def make_optimizer(model, lr: float, theta_lr: float):
    """Adam at ``lr``, with the HRUs' θ (``parameter_groups``' "core") at ``theta_lr``."""
    import optax

    from ..nn.hssm import parameter_groups

    labels = parameter_groups(model)
    # a function, not the label tree: optax would call a callable label tree (an eqx.Module is callable)
    return optax.multi_transform({"core": optax.adam(theta_lr), "rest": optax.adam(lr)}, lambda params: labels)


def evaluate(model, source, split: str, batch: int, chunk: int) -> dict:
    """Accuracy and mean cross-entropy (classification) or MSE (regression) over the whole ``split``, in batches
    of ``batch`` sequences, each streamed ``chunk`` steps at a time (``he.predict(memory=he.Streaming(chunk))``:
    an inference pass at L = 10⁶ then needs no more memory than a training step)."""
    import jax
    import jax.numpy as jnp

    import hamecho as he

    n = source.size(split)
    correct, loss_sum, sq_sum = 0, 0.0, 0.0
    for start in range(0, n, batch):
        x, y = source.batch(split, np.arange(start, min(start + batch, n)))
        out = he.predict(model, jnp.asarray(x), memory=he.Streaming(chunk))
        if source.task == "classification":
            log_p = jax.nn.log_softmax(out.astype(jnp.float64), axis=-1)
            loss_sum += float(-jnp.sum(log_p[jnp.arange(len(y)), y]))
            correct += int(jnp.sum(jnp.argmax(out, -1) == y))
        else:
            sq_sum += float(jnp.sum((out - y) ** 2)) / (y.shape[1] * y.shape[2])
    if source.task == "classification":
        return {"metric": "accuracy", "value": correct / n, "loss": loss_sum / n}
    return {"metric": "mse", "value": sq_sum / n, "loss": sq_sum / n}


def run_cell(cell_dir: str | Path, *, emit: Callable[[dict], None] | None = None,
             checkpoint_every_s: float = 120.0) -> dict:
    """Run (or resume) the cell of ``cell_dir``/cell.json in this process; returns and writes result.json.

    wall_s in the result: the whole time of the run in this and earlier sessions (data, steps, compilation,
    evaluation; not the interpreter's start); train_s: the training steps alone.
    ``emit(record)`` receives every log record (also appended to log.jsonl): {"event": "step", "stage", "length",
    "step", "loss", "elapsed_s"} per step, {"event": "resumed", ...}, {"event": "stage", ...}, and the result.
    For a faithful peak, call it in a fresh process (``run_grid`` does)."""
    import jax

    jax.config.update("jax_enable_x64", True)      # float64 cores, float32 model: as hamecho train
    import equinox as eqx
    import jax.numpy as jnp

    import hamecho as he

    from ..data.generated import generated
    from ..training.checkpoints import atomic_write_json, load_checkpoint, save_checkpoint
    from .bench import read_status_bytes

    session_start = time.perf_counter()
    cell_dir = Path(cell_dir)
    cell = Cell.from_json(json.loads((cell_dir / "cell.json").read_text()))
    s = cell.settings
    checkpoint = cell_dir / "checkpoint.npz"
    log = (cell_dir / "log.jsonl").open("a")

    def record(entry: dict) -> None:
        log.write(json.dumps(entry) + "\n")
        log.flush()
        if emit is not None:
            emit(entry)

    def source_at(length: int, steps: int):
        return generated(cell.task, length=length, sizes=(steps * s.batch, 0, s.test_size), seed=s.data_seed,
                         **s.task_params)

    stages = cell.stages()
    final_source = source_at(cell.length, s.steps)
    model = _build_model(cell, final_source, jax.random.PRNGKey(cell.seed))
    if s.init_model:
        model = eqx.tree_deserialise_leaves(s.init_model, model)
    choices = method_choices(cell.method, s.chunk)
    stage, start, train_s, wall_before, sessions = 0, 0, 0.0, 0.0, 0
    optimizer = make_optimizer(model, s.lr, theta_learning_rate(stages[0][0], s.lr, s.theta_lr_scale))
    opt_state = he.init_optimizer(optimizer, model)
    if checkpoint.exists():
        meta, _, _ = load_checkpoint(checkpoint)
        stage = meta["stage"]
        optimizer = make_optimizer(model, s.lr, theta_learning_rate(stages[stage][0], s.lr, s.theta_lr_scale))
        meta, model, opt_state = load_checkpoint(checkpoint, model, he.init_optimizer(optimizer, model))
        if meta.get("cell") != cell.to_json():
            raise ValueError(f"{checkpoint} belongs to another cell; delete it to start this one afresh")
        start, train_s, wall_before, sessions = meta["step"], meta["train_s"], meta["wall_s"], meta["sessions"]
        record({"event": "resumed", "stage": stage, "step": start})

    def save(stage_index: int, step: int) -> None:
        save_checkpoint(checkpoint, model, opt_state, {"cell": cell.to_json(), "stage": stage_index, "step": step,
                                                       "train_s": train_s, "sessions": sessions + 1,
                                                       "wall_s": wall_before + time.perf_counter() - session_start})

    step_times: list[float] = []
    first_step_s = None
    loss = math.nan
    diverged = False
    last_save = time.perf_counter()
    for index in range(stage, len(stages)):
        length, steps = stages[index]
        source = source_at(length, steps) if length != cell.length else final_source
        if index != stage:
            start = 0
        if start == 0:          # a new stage: a fresh optimiser with this length's θ rate
            optimizer = make_optimizer(model, s.lr, theta_learning_rate(length, s.lr, s.theta_lr_scale))
            opt_state = he.init_optimizer(optimizer, model)
        record({"event": "stage", "stage": index, "length": length, "steps": steps,
                "theta_lr": theta_learning_rate(length, s.lr, s.theta_lr_scale)})
        for step in range(start, steps):
            x, y = source.batch("train", np.arange(step * s.batch, (step + 1) * s.batch))
            t0 = time.perf_counter()
            model, opt_state, loss = he.train_step(model, opt_state, jnp.asarray(x), jnp.asarray(y), optimizer,
                                                   **choices)
            loss = float(loss)
            took = time.perf_counter() - t0
            train_s += took
            if first_step_s is None:
                first_step_s = took
            elif length == cell.length:
                step_times.append(took)
            record({"event": "step", "stage": index, "length": length, "step": step, "loss": loss,
                    "elapsed_s": round(train_s, 3)})
            if not math.isfinite(loss):
                diverged = True
                break
            if time.perf_counter() - last_save >= checkpoint_every_s or step == steps - 1:
                save(index, step + 1)
                last_save = time.perf_counter()
        if diverged:
            break
        if index + 1 < len(stages):
            save(index + 1, 0)     # the next stage starts here (a resume builds its optimiser afresh)
    t0 = time.perf_counter()
    test = evaluate(model, final_source, "test", s.batch, s.chunk)
    result = {"cell": cell.to_json(), "name": cell.name, "task": cell.task, "length": cell.length,
              "method": cell.method, "seed": cell.seed, "status": "diverged" if diverged else "done",
              "metric": test["metric"], "test_metric": test["value"], "test_loss": test["loss"],
              "final_loss": loss, "steps": cell.total_steps, "train_s": round(train_s, 3),
              "eval_s": round(time.perf_counter() - t0, 3), "first_step_s": first_step_s,
              "s_per_step": statistics.median(step_times) if step_times else first_step_s,
              "peak_bytes": read_status_bytes("VmHWM"), "sessions": sessions + 1}
    result["wall_s"] = round(wall_before + time.perf_counter() - session_start, 3)
    atomic_write_json(cell_dir / "result.json", result)
    record({"event": "result", **{k: v for k, v in result.items() if k != "cell"}})
    log.close()
    return result


# --- memory estimates -----------------------------------------------------------------------------------------

def machine_memory_bytes() -> int:
    """The memory a run may take now: MemAvailable of /proc/meminfo (the physical memory less what other
    processes hold; at most MemTotal), else 16 GiB."""
    fields = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 16 * GIB
    return fields.get("MemAvailable", fields.get("MemTotal", 16 * GIB))


def _same_shape(a: Cell, b: Cell) -> bool:
    keys = ("batch", "hidden", "state", "blocks", "hru", "chunk")
    return a.method == b.method and all(getattr(a.settings, k) == getattr(b.settings, k) for k in keys)


def sizing_slope(cell: Cell) -> float:
    """Bytes per step of L from the sizing table, scaled by the batch and the model's width."""
    s = cell.settings
    width = s.blocks * (s.hidden + s.state) / SIZING_WIDTH
    return SIZING_BYTES_PER_SAMPLE_STEP[cell.method] * s.batch * width


def estimated_peak_bytes(rows: Sequence[dict], cell: Cell) -> float:
    """The cell's whole-process peak, from the measured peaks of ``rows`` (finished cells) of the same method,
    model shape and batch at shorter L: a line through the two longest if they are ≥ 2× apart in L and the
    peak grew; else the longest measured plus the sizing slope; with none measured, the sizing table alone."""
    measured = sorted((r["length"], r["peak_bytes"]) for r in rows
                      if r.get("peak_bytes") and "cell" in r and r["length"] < cell.length
                      and _same_shape(Cell.from_json(r["cell"]), cell))
    if len(measured) >= 2:
        (l0, p0), (l1, p1) = measured[-2:]
        if l1 >= 2 * l0 and p1 > p0:
            return p1 + (p1 - p0) / (l1 - l0) * (cell.length - l1)
    if measured:
        l1, p1 = measured[-1]
        return p1 + sizing_slope(cell) * (cell.length - l1)
    return SIZING_BASE_BYTES + sizing_slope(cell) * cell.length


# --- the grid ------------------------------------------------------------------------------------------------

def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")   # as hamecho bench's cases
    return env


def run_grid(cells: Sequence[Cell], out: str | Path, *, memory_limit_bytes: float | None = None,
             timeout_s: float | None = None, progress: bool | None = None,
             echo: Callable[[str], None] | None = None) -> list[dict]:
    """Run every cell not finished yet, one child process each, into ``out``/cells/<cell.name>/; returns one row
    per cell (its result, or {"status": "does not fit", "needs_bytes", "message"} / {"status": "failed", ...}).

    Finished cells are read back, not rerun (row "reused": True); interrupted ones resume from their checkpoints.
    ``memory_limit_bytes``: cells estimated above it are not started (default: the memory available when the
    grid starts, ``machine_memory_bytes``). Every
    child's log record and every row is appended to ``out``/progress.jsonl as it comes (step records with
    ``grid_steps_done``, ``grid_steps`` and a rough ``eta_s``); a tqdm bar over all steps shows the ETA
    (``progress`` None: only on a terminal)."""
    from tqdm.auto import tqdm

    echo = echo or (lambda line: print(line, flush=True))
    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    limit = machine_memory_bytes() if memory_limit_bytes is None else memory_limit_bytes
    progress_file = (out / "progress.jsonl").open("a")

    def log(entry: dict) -> None:
        progress_file.write(json.dumps({"time": round(time.time(), 1), **entry}) + "\n")
        progress_file.flush()

    rows: list[dict] = []
    pending = [c for c in cells if not (out / "cells" / c.name / "result.json").exists()]
    counter = StepCounter(total=sum(c.total_steps for c in pending))
    bar = tqdm(total=counter.total, desc="longrange", unit="step",
               disable=None if progress is None else not progress)
    for cell in cells:
        cell_dir = out / "cells" / cell.name
        if (cell_dir / "result.json").exists():
            rows.append({**json.loads((cell_dir / "result.json").read_text()), "reused": True})
            with tqdm.external_write_mode(file=sys.stderr):
                echo(format_row(rows[-1]))
            continue
        needs = estimated_peak_bytes(rows, cell)
        if needs > limit:
            row = {"cell": cell.to_json(), "name": cell.name, "task": cell.task, "length": cell.length,
                   "method": cell.method, "seed": cell.seed, "status": "does not fit", "needs_bytes": needs,
                   "message": f"does not fit: needs ≈ {needs / GIB:.1f} GiB (estimate; limit {limit / GIB:.1f} GiB)"}
            bar.update(cell.total_steps)
            counter.skip(cell.total_steps)
        else:
            row = _run_child(cell, cell_dir, timeout_s, bar, counter, log)
        rows.append(row)
        log({"event": "cell", **{k: v for k, v in row.items() if k != "cell"}})
        with tqdm.external_write_mode(file=sys.stderr):
            echo(format_row(row))
    bar.close()
    progress_file.close()
    return rows


class StepCounter:
    """Steps of this call's grid: done, left, and a rough ETA (the mean time per step so far, compilation and
    evaluation included, times the steps left), for the JSON lines (the bar has its own)."""

    def __init__(self, total: int):
        self.total, self.done, self.trained, self.start = total, 0, 0, time.perf_counter()

    def skip(self, steps: int) -> None:
        self.done += steps

    def step(self) -> dict:
        self.done += 1
        self.trained += 1
        per_step = (time.perf_counter() - self.start) / self.trained
        return {"grid_steps_done": self.done, "grid_steps": self.total,
                "eta_s": round(per_step * (self.total - self.done), 1)}


def _run_child(cell: Cell, cell_dir: Path, timeout_s, bar, counter: StepCounter, log) -> dict:
    """One cell in a fresh interpreter; its JSON lines move the bar and go to progress.jsonl."""
    from ..training.checkpoints import atomic_write_json

    cell_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cell_dir / "cell.json", cell.to_json())
    done_before = 0
    if (cell_dir / "log.jsonl").exists():      # steps already done by an interrupted session
        done_before = sum(1 for line in (cell_dir / "log.jsonl").read_text().splitlines()
                          if '"event": "step"' in line)
        bar.update(min(done_before, cell.total_steps))
        counter.skip(min(done_before, cell.total_steps))
    stderr_path = cell_dir / "stderr.txt"
    started = time.perf_counter()
    with stderr_path.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "hamecho.tools.longrange", str(cell_dir)],
                                 stdout=subprocess.PIPE, stderr=stderr, text=True, env=_child_env())
        result = None
        try:
            for line in child.stdout:
                if timeout_s is not None and time.perf_counter() - started > timeout_s:
                    raise subprocess.TimeoutExpired(child.args, timeout_s)
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("event") == "step":
                    bar.update(1)
                    entry = {**entry, **counter.step()}
                log({"cell": cell.name, **entry})
                if entry.get("event") == "result":
                    result = entry
            child.wait()
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as stop:
            child.kill()
            child.wait()
            if isinstance(stop, KeyboardInterrupt):
                raise
            return {"cell": cell.to_json(), "name": cell.name, "task": cell.task, "length": cell.length,
                    "method": cell.method, "seed": cell.seed, "status": "failed",
                    "message": f"timed out after {timeout_s:.0f} s (resumes from its checkpoint on a rerun)"}
    if child.returncode != 0 or result is None:
        tail = (stderr_path.read_text().strip().splitlines() or ["no output"])[-1]
        reason = "killed (out of memory?)" if child.returncode in (-9, 137) else f"failed: {tail}"
        return {"cell": cell.to_json(), "name": cell.name, "task": cell.task, "length": cell.length,
                "method": cell.method, "seed": cell.seed, "status": "failed", "message": reason}
    return json.loads((cell_dir / "result.json").read_text())


# --- outputs -------------------------------------------------------------------------------------------------

def format_metric(row: dict) -> str:
    if row.get("metric") == "accuracy":
        return f"{100 * row['test_metric']:.1f} %"
    return f"MSE {row['test_metric']:.4f}"


def format_row(row: dict) -> str:
    """One line per cell, as the grid goes."""
    head = f"{row['task']:12s} L={row['length']:>9,} {METHOD_LABELS[row['method']]:18s} seed {row['seed']}: "
    if row["status"] in ("done", "diverged"):
        return head + (f"test {format_metric(row)}, {row['steps']} steps, {row['s_per_step']:.3f} s/step, "
                       f"peak {row['peak_bytes'] / GIB:.2f} GiB" + (" (diverged)" if row["status"] == "diverged"
                                                                     else "") + (" (reused)" if row.get("reused")
                                                                                 else ""))
    return head + row["message"]


def time_exponent(rows: Sequence[dict], method: str) -> float | None:
    """The exponent b of a least-squares fit s_per_step ∝ L^b over the method's finished cells (None: < 2 L)."""
    points = {}
    for r in rows:
        if r["method"] == method and r.get("s_per_step"):
            points.setdefault(r["length"], []).append(r["s_per_step"])
    if len(points) < 2:
        return None
    lengths = sorted(points)
    x = np.log([float(n) for n in lengths])
    y = np.log([statistics.median(points[n]) for n in lengths])
    return float(np.polyfit(x, y, 1)[0])


def summarise(rows: Sequence[dict]) -> list[dict]:
    """One line per (task, length, method): mean ± population std of the metric over seeds, median s/step, max
    peak; or the "does not fit"/"failed" message."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["length"], r["method"]), []).append(r)
    lines = []
    for (task, length, method), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                               METHODS.index(kv[0][2]))):
        done = [r for r in group if r["status"] in ("done", "diverged")]
        line = {"task": task, "length": length, "method": method, "runs": len(done)}
        if done:
            values = [r["test_metric"] for r in done]
            line.update(metric=done[0]["metric"], mean=float(np.mean(values)), std=float(np.std(values)),
                        s_per_step=statistics.median(r["s_per_step"] for r in done),
                        peak_bytes=max(r["peak_bytes"] for r in done),
                        wall_s=statistics.median(r["wall_s"] for r in done), steps=done[0]["steps"])
        else:
            line["message"] = group[0]["message"]
        lines.append(line)
    return lines


def format_markdown(rows: Sequence[dict], command: str = "") -> str:
    lines = ["# hamecho longrange", ""]
    if command:
        lines += [f"`{command}`", ""]
    lines += ["Test metric: mean ± std over seeds (accuracy, or MSE for regression); s/step: median time of a "
              "training step at L after the first (compilation); peak: the whole process's VmHWM.", "",
              "| task | L | method | seeds | test | steps | s/step | peak (GiB) | wall (s) |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in summarise(rows):
        label = METHOD_LABELS[s["method"]]
        if "mean" in s:
            test = (f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f} %" if s["metric"] == "accuracy"
                    else f"{s['mean']:.4f} ± {s['std']:.4f}")
            lines.append(f"| {s['task']} | {s['length']:,} | {label} | {s['runs']} | {test} | {s['steps']} | "
                         f"{s['s_per_step']:.3f} | {s['peak_bytes'] / GIB:.2f} | {s['wall_s']:.0f} |")
        else:
            lines.append(f"| {s['task']} | {s['length']:,} | {label} | 0 | {s['message']} | | | | |")
    exponents = {m: time_exponent(rows, m) for m in METHODS}
    shown = [f"{METHOD_LABELS[m]} L^{b:.2f}" for m, b in exponents.items() if b is not None]
    if shown:
        lines += ["", "Time per step against L (least-squares fit of log s/step on log L): " + ", ".join(shown) + "."]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict], out: Path) -> list[Path]:
    """metric.png (test metric against L per method, one panel per task), peak.png (with the estimated need of
    what did not fit, open markers), time.png (with the fitted exponents). Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = [s for s in summarise(rows) if "mean" in s]
    if not summary:
        return []
    tasks = sorted({s["task"] for s in summary})
    written = []
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in METHODS:
            pts = [s for s in summary if s["task"] == task and s["method"] == method]
            if pts:
                scale = 100 if pts[0]["metric"] == "accuracy" else 1
                ax.errorbar([p["length"] for p in pts], [scale * p["mean"] for p in pts],
                            yerr=[scale * p["std"] for p in pts], marker="o", capsize=3, label=METHOD_LABELS[method])
                ax.set_ylabel("test accuracy (%)" if scale == 100 else "test MSE")
        ax.set_xscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "metric.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)
    for name, key, ylabel, scale in (("peak", "peak_bytes", "whole-process peak (GiB)", 1 / GIB),
                                     ("time", "s_per_step", "time per step (s)", 1.0)):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for method in METHODS:
            pts = sorted({s["length"]: s[key] for s in summary if s["method"] == method}.items())
            if not pts:
                continue
            label = METHOD_LABELS[method]
            exponent = time_exponent(rows, method) if name == "time" else None
            if exponent is not None:
                label += f" (∝ L^{exponent:.2f})"
            line, = ax.plot([p[0] for p in pts], [scale * p[1] for p in pts], marker="o", label=label)
            estimates = sorted({r["length"]: r["needs_bytes"] for r in rows
                                if r["method"] == method and r["status"] == "does not fit"}.items())
            if name == "peak" and estimates:     # what did not fit: the estimate, open markers on a dashed line
                ax.plot([pts[-1][0], *(e[0] for e in estimates)], [scale * v for v in (pts[-1][1], *(e[1] for e in
                        estimates))], linestyle="--", marker="o", markerfacecolor="none", color=line.get_color(),
                        label=f"{METHOD_LABELS[method]}: does not fit (estimate)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / f"{name}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


def write_outputs(rows: Sequence[dict], out: str | Path, command: str = "") -> list[Path]:
    """longrange.json (every row and the summary), longrange.md and the plots into ``out``."""
    from ..training.checkpoints import atomic_write_bytes, atomic_write_json

    out = Path(out)
    atomic_write_json(out / "longrange.json", {"command": command, "rows": list(rows), "summary": summarise(rows),
                                               "time_exponents": {m: time_exponent(rows, m) for m in METHODS}})
    atomic_write_bytes(out / "longrange.md", format_markdown(rows, command).encode())
    return [out / "longrange.json", out / "longrange.md", *plot(rows, out)]


def _child_main(cell_dir: str) -> int:
    run_cell(cell_dir, emit=lambda entry: print(json.dumps(entry), flush=True))
    return 0


if __name__ == "__main__":      # one cell in a fresh interpreter (run_grid's child)
    raise SystemExit(_child_main(sys.argv[1]))
