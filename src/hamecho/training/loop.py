"""The training loop (``hamecho train``): the paper's protocol, checkpoints, resume and result files.

One run is one (configuration, algorithm, seed). :func:`run_one` trains it and writes

    <out>/<config name>/<algo>/seed<seed>.json      the result (see ``RESULT_FORMAT`` and docs/training.md)
    <out>/<config name>/<algo>/seed<seed>.ckpt.npz  the last checkpoint (model, optimiser, loop state)

Protocol (spec §5, rhel-paper-notes §6.3): Adam with a constant learning rate; mini-batches from a
fresh permutation of the training set every epoch (last incomplete batch dropped); dropout 0.05 and
batch-norm running statistics; evaluation on the validation set every ``eval_every`` steps and at the
last step, in inference mode; the test set is evaluated whenever validation is at least as good as
the best so far, and the reported test metric is the one of the last such evaluation (ties count);
early stopping once ``patience`` + 1 consecutive evaluations have not strictly improved validation
(the paper's ``no_val_improvement > 10`` with patience 10). Metric: accuracy for classification
(higher is better), mean squared error for regression (lower is better).

Determinism. The seed fixes the data split (``hamecho.data.load(seed=...)``), the model
initialisation (the same for BPTT and RHEL), the batch order (the permutation of epoch e is
``numpy.random.Generator(PCG64([seed, e]))``) and the dropout keys (``fold_in(key, step)``), so
everything the loop needs at step k is a function of (seed, k) and the stored arrays. A checkpoint
holds the model, the optimiser state and the loop state; a resumed run ends bit-identical to an
uninterrupted one (tested in float64 on CPU).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import math
import os
import platform
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ALGOS, Config, ConfigError, load_config, parse_override

RESULT_FORMAT = "hamecho-result/1"
CHECKPOINT_FORMAT = "hamecho-checkpoint/1"

__all__ = ["run_one", "train_config", "run_paths", "load_checkpoint", "read_result", "RESULT_FORMAT",
           "Interrupted", "metric_name"]


class Interrupted(Exception):
    """Training stopped early on request (SIGINT or ``stop_at_step``); the checkpoint is written."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint written to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


# --- small helpers ------------------------------------------------------------------------------------

def metric_name(task: str) -> str:
    return "accuracy" if task == "classification" else "mse"


def _better(task: str, value: float, best: float | None, *, strict: bool) -> bool:
    if best is None:
        return True
    if task == "classification":
        return value > best if strict else value >= best
    return value < best if strict else value <= best


def _slug(text: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "-" for c in text)


def run_paths(config: Config, algo: str, seed: int, out: str | Path | None = None) -> tuple[Path, Path]:
    """(result JSON path, checkpoint path) of one run."""
    base = Path(out if out is not None else config.out)
    for part in config.name.split("/"):
        base = base / _slug(part)
    directory = base / algo
    return directory / f"seed{seed}.json", directory / f"seed{seed}.ckpt.npz"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and ``os.replace`` (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_json(path: Path, payload: dict) -> None:
    _atomic_write_bytes(path, (json.dumps(payload, indent=1, default=_json_default) + "\n").encode())


def read_result(path: str | Path) -> dict:
    """A result JSON written by :func:`run_one` (``ValueError`` if it is not one)."""
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or payload.get("format") != RESULT_FORMAT:
        raise ValueError(f"{path} is not a hamecho result file (format {RESULT_FORMAT})")
    return payload


def package_versions() -> dict:
    import equinox
    import jax
    import jaxlib
    import optax

    from .. import __version__

    return {"hamecho": __version__, "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "equinox": equinox.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "backend": jax.default_backend()}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage(RUSAGE_SELF).ru_maxrss``).

    It covers the whole process: the Python interpreter, JAX/XLA, the data, and any earlier run in the
    same process. On CPU that is host memory, which is where the arrays live.
    """
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def set_precision(dtype: str, core_dtype: str = "float64") -> None:
    """float64 training or float64 cores need JAX's x64 mode (switched on, never off: other code may rely
    on it). The model's own dtype is explicit, so x64 mode does not widen a float32 model."""
    import jax

    if "float64" in (dtype, core_dtype) and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


# --- data, model, optimiser -----------------------------------------------------------------------------

def load_data(config: Config, seed: int):
    """The dataset split for ``seed`` as the configuration describes it."""
    from ..data import load

    d = config.data
    return load(d.name, d.data_dir, seed=seed, time_channel=d.time_channel, length=d.length,
                num_samples=d.num_samples, split_dir=d.split_dir, ppg_window=d.ppg_window, ppg_stride=d.ppg_stride)


def build_model(config: Config, data, seed: int):
    """The HSSM for this configuration and dataset; initialised from ``seed`` only (same for every algo)."""
    import jax

    from ..nn.hssm import HSSM

    m = config.model
    return HSSM(in_dim=data.channels, out_dim=data.out_dim, hidden=m.hidden, state=m.state, blocks=m.blocks,
                hru=m.hru, task=data.task, output_step=data.output_step, step=m.step,
                dtype=config.train.dtype, key=jax.random.PRNGKey(seed))


_OPTIMIZERS: dict = {}


def optimizer_for(lr: float):
    """Adam with a constant learning rate; one object per rate, so runs (seeds) share one compilation."""
    if lr not in _OPTIMIZERS:
        import optax

        _OPTIMIZERS[lr] = optax.adam(lr)
    return _OPTIMIZERS[lr]


_STEP_CACHE: dict = {}


def _eval_batch_fn():
    if "eval" in _STEP_CACHE:
        return _STEP_CACHE["eval"]
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from ..core.choices import Choices
    from ..core.gradients import BPTT

    @eqx.filter_jit
    def evaluate(model, x, y, mask):
        outputs, _ = model.apply(x, Choices(gradient=BPTT()), train=False)
        if model.task == "classification":
            log_probs = jax.nn.log_softmax(outputs, axis=-1)
            nll = -jnp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]
            correct = (jnp.argmax(outputs, axis=-1) == y).astype(outputs.dtype)
            return jnp.sum(correct * mask), jnp.sum(nll * mask)
        squared = jnp.sum(jnp.square(outputs - y), axis=(1, 2))
        return jnp.sum(squared * mask), jnp.sum(squared * mask)

    _STEP_CACHE["eval"] = evaluate
    return evaluate


@dataclass
class _Split:
    """One evaluation split, padded to a whole number of batches (padding is masked out)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    count: int
    batch: int
    per_sample: int  # elements averaged per sample (regression: L // k · out_dim; classification: 1)


def _prepare_split(x, y, task, dtype, eval_batch):
    n = len(x)
    batch = max(1, min(eval_batch, n))
    total = -(-n // batch) * batch
    pad = total - n
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]).astype(dtype) if pad else x.astype(dtype)
    if task == "classification":
        y = y.astype(np.int32)
        per_sample = 1
    else:
        y = y.astype(dtype)
        per_sample = int(np.prod(y.shape[1:]))
    if pad:
        y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)])
    mask = np.concatenate([np.ones(n, dtype), np.zeros(pad, dtype)])
    return _Split(x, y, mask, n, batch, per_sample)


def evaluate_split(model, split: _Split, task: str) -> tuple[float, float]:
    """(metric, mean loss) of ``model`` in inference mode on one split."""
    if split.count == 0:
        return float("nan"), float("nan")
    fn = _eval_batch_fn()
    metric_sum = loss_sum = 0.0
    for start in range(0, len(split.x), split.batch):
        sl = slice(start, start + split.batch)
        m, l = fn(model, split.x[sl], split.y[sl], split.mask[sl])
        metric_sum += float(m)
        loss_sum += float(l)
    denominator = split.count * split.per_sample
    return metric_sum / denominator, loss_sum / denominator


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """Training-set indices of the batch taken at ``step`` (0-based): epoch e = step // (n // batch) uses
    the permutation ``Generator(PCG64([seed, e])).permutation(n)``; the last incomplete batch is dropped."""
    per_epoch = n // batch
    epoch, position = divmod(step, per_epoch)
    permutation = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)
    return permutation[position * batch:(position + 1) * batch]


# --- checkpoints --------------------------------------------------------------------------------------

def _state_leaves(model, opt_state):
    import equinox as eqx
    import jax

    return jax.tree_util.tree_leaves((eqx.filter(model, eqx.is_array), opt_state))


def save_checkpoint(path: Path, model, opt_state, loop: dict) -> None:
    """Model and optimiser arrays plus the loop state (JSON) in one ``.npz``, written atomically."""
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(_state_leaves(model, opt_state))}
    meta = json.dumps({"format": CHECKPOINT_FORMAT, **loop}, default=_json_default)
    arrays["meta"] = np.frombuffer(meta.encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, model_template=None, opt_template=None):
    """Read a checkpoint: (loop state dict, model, optimiser state). With no templates only the loop state
    is returned (model and optimiser state are None). ``ValueError`` if it does not fit the templates."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    with np.load(path) as archive:
        meta = json.loads(bytes(archive["meta"]).decode())
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a hamecho checkpoint")
        leaves = [archive[f"leaf_{i:05d}"] for i in range(len(archive.files) - 1)]
    if model_template is None:
        return meta, None, None
    params, static = eqx.partition((model_template, opt_template), eqx.is_array)
    template_leaves, treedef = jax.tree_util.tree_flatten(params)
    if len(template_leaves) != len(leaves):
        raise ValueError(f"{path}: checkpoint has {len(leaves)} arrays, the model needs {len(template_leaves)}")
    for i, (t, a) in enumerate(zip(template_leaves, leaves)):
        if tuple(t.shape) != a.shape or np.dtype(t.dtype) != a.dtype:
            raise ValueError(f"{path}: array {i} is {a.dtype}{a.shape}, the model needs {t.dtype}{tuple(t.shape)}")
    restored = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves])
    model, opt_state = eqx.combine(restored, static)
    return meta, model, opt_state


# --- SIGINT -------------------------------------------------------------------------------------------

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


# --- one run ------------------------------------------------------------------------------------------

def _fresh_loop_state(seed: int) -> dict:
    return {"step": 0, "history": [], "best_val": None, "best_step": None, "test_at_best": None,
            "test_loss_at_best": None, "since_improvement": 0, "interval_loss_sum": 0.0, "interval_steps": 0,
            "wall_s": 0.0, "sessions": 0, "stopped": None, "seed": seed}


def options_for(config: Config, algo: str):
    """The ``CoreOptions`` (the [train] keys, translated in ``hamecho.keywords``) a run of ``config`` with
    ``algo`` trains with; ``.choices`` are the strategy objects."""
    from ..keywords import CoreOptions  # lazily: JAX's precision is set before it is imported

    t = config.train
    return CoreOptions(algo=algo, eps=t.eps, estimator=t.estimator, difference=t.difference,
                       core_dtype=t.core_dtype, recompute_blocks=t.recompute_blocks,
                       block_chunk=t.block_chunk or None, integrator=t.integrator, fraction_bits=t.fraction_bits)


def run_one(config: Config, algo: str, seed: int, out: str | Path | None = None, *, resume: bool = True,
            progress: bool | None = None, log=None, stop_at_step: int | None = None) -> Path:
    """Train one (configuration, algorithm, seed) and return the path of its result JSON.

    Idempotent: when the result exists (with the same run fingerprint) it is returned without training.
    ``resume``: continue from the checkpoint if there is one; otherwise an existing checkpoint raises
    ``ValueError`` (it would be overwritten). ``progress``: tqdm bar (None: only on a terminal).
    ``log``: called with one line per evaluation (default: none). ``stop_at_step``: behave as if
    interrupted after that step (checkpoint, raise :class:`Interrupted`); also raised on Ctrl-C.
    A result or checkpoint made with a different fingerprint raises ``ValueError``.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(map(repr, ALGOS))}; got {algo!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    result_path, ckpt_path = run_paths(config, algo, seed, out)
    fingerprint = config.run_fingerprint()
    if result_path.exists():
        previous = read_result(result_path)
        if previous.get("fingerprint") != fingerprint:
            raise ValueError(f"{result_path} exists from a different configuration (fingerprint "
                             f"{previous.get('fingerprint')} vs {fingerprint}); use another --out or remove it")
        return result_path

    set_precision(config.train.dtype, config.train.core_dtype)
    import jax
    from tqdm.auto import tqdm

    from ..nn.hssm import count_parameters

    t = config.train
    session_start = time.perf_counter()
    data = load_data(config, seed)
    if data.task == "regression" and data.output_step > data.length:
        raise ValueError(f"{config.name}: output_step {data.output_step} exceeds the length {data.length}")
    dtype = np.dtype(t.dtype)
    model = build_model(config, data, seed)
    from ..nn.api import init_optimizer, train_step

    choices = options_for(config, algo).choices
    optimizer = optimizer_for(t.lr)
    opt_state = init_optimizer(optimizer, model)

    def step_fn(model, opt_state, x, y, key):
        return train_step(model, opt_state, x, y, optimizer, choices, key=key)
    dropout_base = jax.random.fold_in(jax.random.PRNGKey(seed), 1)

    loop = _fresh_loop_state(seed)
    if ckpt_path.exists():
        if not resume:
            raise ValueError(f"a checkpoint of an interrupted run exists at {ckpt_path}; resume it (--resume) "
                             "or remove it (--restart)")
        meta, model, opt_state = load_checkpoint(ckpt_path, model, opt_state)
        if meta.get("fingerprint") != fingerprint:
            raise ValueError(f"{ckpt_path} is from a different configuration (fingerprint "
                             f"{meta.get('fingerprint')} vs {fingerprint}); use another --out or --restart")
        loop = meta["loop"]
        if not np.array_equal(np.asarray(meta["dropout_key"], dtype=np.uint32),
                              np.asarray(jax.random.key_data(dropout_base))):
            raise ValueError(f"{ckpt_path}: stored random key does not match seed {seed}")
    loop["sessions"] += 1
    wall_before = loop["wall_s"]

    def elapsed():
        return wall_before + (time.perf_counter() - session_start)

    n_train = len(data.x_train)
    batch = min(t.batch_size, n_train)
    x_train = data.x_train.astype(dtype)
    y_train = data.y_train.astype(np.int32) if data.task == "classification" else data.y_train.astype(dtype)
    val = _prepare_split(data.x_val, data.y_val, data.task, dtype, t.eval_batch_size)
    test = _prepare_split(data.x_test, data.y_test, data.task, dtype, t.eval_batch_size)
    train_eval = _prepare_split(data.x_train, data.y_train, data.task, dtype, t.eval_batch_size) if t.eval_train \
        else None
    metric = metric_name(data.task)

    def checkpoint():
        loop["wall_s"] = elapsed()
        save_checkpoint(ckpt_path, model, opt_state, {
            "fingerprint": fingerprint, "algo": algo, "config": config.to_dict(),
            "dropout_key": np.asarray(jax.random.key_data(dropout_base)).tolist(),
            "epoch": loop["step"] // max(1, n_train // batch), "loop": loop})

    def evaluate_now(step_time):
        val_metric, val_loss = evaluate_split(model, val, data.task)
        mean_loss = loop["interval_loss_sum"] / max(1, loop["interval_steps"])
        entry = {"step": loop["step"], "train_loss": mean_loss, f"val_{metric}": val_metric, "val_loss": val_loss,
                 "elapsed_s": elapsed(), "step_ms": step_time}
        if train_eval is not None:
            entry[f"train_{metric}"], entry["train_eval_loss"] = evaluate_split(model, train_eval, data.task)
        if not math.isfinite(val_metric):
            loop["stopped"] = "diverged"
        elif _better(data.task, val_metric, loop["best_val"], strict=False):
            strict = _better(data.task, val_metric, loop["best_val"], strict=True)
            test_metric, test_loss = evaluate_split(model, test, data.task)
            entry[f"test_{metric}"], entry["test_loss"] = test_metric, test_loss
            loop.update(best_val=val_metric, best_step=loop["step"], test_at_best=test_metric,
                        test_loss_at_best=test_loss)
            loop["since_improvement"] = 0 if strict else loop["since_improvement"] + 1
        else:
            loop["since_improvement"] += 1
        loop["history"].append(entry)
        loop["interval_loss_sum"], loop["interval_steps"] = 0.0, 0
        if t.early_stopping and loop["since_improvement"] > t.patience:
            loop["stopped"] = "early_stopping"
        return entry

    description = f"{config.name} {algo} seed {seed}"
    bar = tqdm(total=t.steps, initial=loop["step"], desc=description, disable=None if progress is None else
               not progress, mininterval=1.0, dynamic_ncols=True, leave=False, file=sys.stderr)
    last_val = loop["history"][-1][f"val_{metric}"] if loop["history"] else None
    first_step_s = None
    interval_start, interval_first = time.perf_counter(), loop["step"]
    try:
        with _InterruptFlag() as interrupt:
            while loop["stopped"] is None and loop["step"] < t.steps:
                step = loop["step"]
                idx = batch_indices(seed, step, n_train, batch)
                tick = time.perf_counter()
                model, opt_state, loss = step_fn(model, opt_state, x_train[idx], y_train[idx],
                                                 jax.random.fold_in(dropout_base, step))
                loss = float(loss)
                if first_step_s is None:
                    first_step_s = time.perf_counter() - tick
                    interval_start, interval_first = time.perf_counter(), step + 1
                loop["step"] = step + 1
                loop["interval_loss_sum"] += loss
                loop["interval_steps"] += 1
                bar.update(1)
                if not math.isfinite(loss):
                    loop["stopped"] = "diverged"
                if loop["step"] % t.eval_every == 0 or loop["step"] == t.steps or loop["stopped"]:
                    done = loop["step"] - interval_first
                    step_ms = 1000 * (time.perf_counter() - interval_start) / done if done > 0 else None
                    entry = evaluate_now(step_ms)
                    last_val = entry[f"val_{metric}"]
                    checkpoint()
                    interval_start, interval_first = time.perf_counter(), loop["step"]
                    if log is not None:
                        test_text = (f", test {entry[f'test_{metric}']:.4f}" if f"test_{metric}" in entry else "")
                        with tqdm.external_write_mode(file=sys.stderr):
                            log(f"{description}: step {loop['step']}, loss {entry['train_loss']:.4f}, "
                                f"val {metric} {last_val:.4f}{test_text}")
                if loop["step"] % 10 == 0 or loop["step"] == 1:
                    bar.set_postfix_str(f"loss {loss:.4f}" + ("" if last_val is None else f", val {last_val:.4f}"),
                                        refresh=False)
                if t.time_limit_s is not None and loop["stopped"] is None and \
                        elapsed() > t.time_limit_s:
                    loop["stopped"] = "time_limit"
                    if loop["history"] and loop["history"][-1]["step"] != loop["step"]:
                        evaluate_now(None)
                    checkpoint()
                if loop["stopped"] is None and loop["step"] < t.steps and (
                        interrupt.set or (stop_at_step is not None and loop["step"] >= stop_at_step)):
                    checkpoint()
                    raise Interrupted(loop["step"], ckpt_path)
    finally:
        bar.close()

    if loop["stopped"] is None:
        loop["stopped"] = "max_steps"
    checkpoint()
    result = {
        "format": RESULT_FORMAT,
        "config_name": config.name, "dataset": config.data.name, "model": config.model.hru, "algo": algo,
        "seed": seed, "task": data.task, "metric": metric,
        "test_metric": loop["test_at_best"], "test_loss": loop["test_loss_at_best"],
        "best_val_metric": loop["best_val"], "best_step": loop["best_step"],
        "steps": loop["step"], "max_steps": t.steps, "stopped": loop["stopped"],
        "wall_time_s": loop["wall_s"], "sessions": loop["sessions"],
        "first_step_s": first_step_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_note": "getrusage(RUSAGE_SELF).ru_maxrss of the training process: whole-process peak host memory "
                         "(interpreter, JAX, data, and earlier runs in the same process)",
        "parameters": count_parameters(model),
        "history": loop["history"],
        "data": data.summary() | {"batch_size": batch},
        "config": config.to_dict(), "config_source": config.source, "fingerprint": fingerprint,
        "versions": package_versions(),
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    _write_json(result_path, result)
    return result_path


def train_config(config: Config, *, out: str | Path | None = None, resume: bool = True,
                 progress: bool | None = None, log=None) -> list[Path]:
    """Every (seed, algo) of the configuration, seed by seed (both algorithms of a seed are adjacent)."""
    paths = []
    for seed in config.train.seeds:
        for algo in config.train.algos:
            paths.append(run_one(config, algo, seed, out, resume=resume, progress=progress, log=log))
    return paths


# --- command line -------------------------------------------------------------------------------------

def _fmt(value, scale=1.0, spec=".4f") -> str:
    return "n/a" if value is None else format(scale * value, spec)


def overrides_from_args(args) -> dict:
    """The dotted-key overrides given by the command-line flags (``--set`` first, named flags win)."""
    overrides = {}
    for text in args.set or ():
        key, value = parse_override(text)
        overrides[key] = value
    if args.algo is not None:
        overrides["train.algos"] = [a for a in args.algo.split(",") if a]
    named = {"train.eps": args.eps, "train.steps": args.steps, "train.lr": args.lr, "train.dtype": args.dtype,
             "out": args.out, "data.data_dir": args.data_dir}
    if args.seeds is not None:
        named["train.seeds"] = args.seeds
    overrides.update({k: v for k, v in named.items() if v is not None})
    return overrides


def add_override_flags(parser) -> None:
    parser.add_argument("--algo", metavar="ALGO[,ALGO]", help="rhel, bptt or rhel,bptt (train.algos)")
    parser.add_argument("--eps", type=float, help="RHEL nudge strength (train.eps)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="seeds (train.seeds)")
    parser.add_argument("--steps", type=int, help="maximum training steps (train.steps)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (train.lr)")
    parser.add_argument("--dtype", help="float32 or float64 (train.dtype)")
    parser.add_argument("--out", help="results folder (out; default runs)")
    parser.add_argument("--data-dir", help="local data folder searched first (data.data_dir)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override any key, value as a TOML literal (repeatable), e.g. --set train.batch_size=16")


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train HSSMs with RHEL and/or BPTT from TOML configs",
        description="Train every (algorithm, seed) of each configuration file and write one result JSON per run "
                    "under OUT/<config name>/<algo>/seed<seed>.json. Finished runs are skipped. See "
                    "docs/training.md for the configuration keys.")
    parser.add_argument("configs", nargs="+", metavar="CONFIG.toml")
    add_override_flags(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue interrupted runs from their checkpoints")
    group.add_argument("--restart", action="store_true", help="discard checkpoints of interrupted runs")
    parser.add_argument("--check", action="store_true", help="validate the configs and exit")
    parser.add_argument("--quiet", action="store_true", help="no per-evaluation lines")
    parser.set_defaults(func=main)


def main(args) -> int:
    overrides = overrides_from_args(args)
    configs = [load_config(path, overrides) for path in args.configs]   # all validated before any training
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two configurations share the name {max(names, key=names.count)!r}; give one a "
                          "different top-level name")
    if args.check:
        for c in configs:
            print(f"{c.source}: ok ({c.name}: {c.data.name}, {c.model.hru} HRU, algos {', '.join(c.train.algos)}, "
                  f"seeds {', '.join(map(str, c.train.seeds))})")
        return 0
    for c in configs:  # fail on missing data before any training starts
        load_data(c, c.train.seeds[0])
    if args.restart:
        for c in configs:
            for seed in c.train.seeds:
                for algo in c.train.algos:
                    ckpt = run_paths(c, algo, seed)[1]
                    with contextlib.suppress(FileNotFoundError):
                        if not run_paths(c, algo, seed)[0].exists():
                            ckpt.unlink()
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        for c in configs:
            for path in train_config(c, resume=args.resume, log=log):
                r = read_result(path)
                print(f"{r['config_name']} {r['algo']} seed {r['seed']}: test {r['metric']} {_fmt(r['test_metric'])} "
                      f"(best val {_fmt(r['best_val_metric'])} at step {r['best_step']}; {r['steps']} steps, "
                      f"{r['stopped']}, {r['wall_time_s']:.1f} s) -> {path}", flush=True)
    except Interrupted as stop:
        print(f"hamecho train: {stop}; run the same command with --resume to continue", file=sys.stderr)
        return 130
    return 0
