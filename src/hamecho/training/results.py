"""Result files: where a run's files live, what its result JSON holds, and reading it back.

    <out>/<config name>/<algo>/seed<seed>.json      the result (``RESULT_FORMAT``; docs/training.md)
    <out>/<config name>/<algo>/seed<seed>.ckpt.npz  the last checkpoint (:mod:`hamecho.training.checkpoints`)

Each part of the configuration name is one folder, with characters other than letters, digits and
``-_.`` replaced by ``-`` (:func:`slug`).
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import resource
import sys
from pathlib import Path

import numpy as np

from .config import Config
from .evaluation import metric_name
from .state import LoopState

__all__ = ["RESULT_FORMAT", "build_result", "config_dir", "format_metric", "package_versions", "peak_rss_mb",
           "read_result", "run_paths", "slug"]

RESULT_FORMAT = "hamecho-result/1"
PEAK_RSS_NOTE = ("getrusage(RUSAGE_SELF).ru_maxrss of the training process: whole-process peak host memory "
                 "(interpreter, JAX, data, and earlier runs in the same process)")


# --- paths -------------------------------------------------------------------------------------------

def slug(text: str) -> str:
    """``text`` with every character other than letters, digits and ``-_.`` replaced by ``-`` (a folder name)."""
    return "".join(c if (c.isalnum() or c in "-_.") else "-" for c in text)


def config_dir(out: str | Path, config_name: str) -> Path:
    """The folder of a configuration's runs: ``out`` / one folder per ``/``-separated part of its name."""
    base = Path(out)
    for part in config_name.split("/"):
        base = base / slug(part)
    return base


def run_paths(config: Config, algo: str, seed: int, out: str | Path | None = None) -> tuple[Path, Path]:
    """(result JSON path, checkpoint path) of one run; ``out`` None: the configuration's ``out``."""
    directory = config_dir(out if out is not None else config.out, config.name) / algo
    return directory / f"seed{seed}.json", directory / f"seed{seed}.ckpt.npz"


# --- the result JSON ---------------------------------------------------------------------------------

def read_result(path: str | Path) -> dict:
    """A result JSON written by :func:`hamecho.training.run_one` (``ValueError`` if it is not one)."""
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or payload.get("format") != RESULT_FORMAT:
        raise ValueError(f"{path} is not a hamecho result file (format {RESULT_FORMAT})")
    return payload


def package_versions() -> dict:
    """Versions of hamecho, Python and the numerical packages, the platform and JAX's backend."""
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


def build_result(config: Config, algo: str, seed: int, state: LoopState, *, data, batch: int, parameters: int,
                 first_step_s: float | None, fingerprint: str) -> dict:
    """The result JSON of a finished run (``state.stopped`` set); ``data``: its ``DatasetSplits``."""
    return {
        "format": RESULT_FORMAT,
        "config_name": config.name, "dataset": config.data.dataset, "model": config.model.hru, "algo": algo,
        "seed": seed, "task": data.task, "metric": metric_name(data.task),
        "test_metric": state.test_at_best, "test_loss": state.test_loss_at_best,
        "best_val_metric": state.best_val, "best_step": state.best_step,
        "steps": state.step, "max_steps": config.train.steps, "stopped": state.stopped,
        "wall_time_s": state.wall_s, "sessions": state.sessions,
        "first_step_s": first_step_s,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_note": PEAK_RSS_NOTE,
        "parameters": parameters,
        "history": state.history,
        "data": data.summary() | {"batch_size": batch},
        "config": config.to_dict(), "config_source": config.source, "fingerprint": fingerprint,
        "versions": package_versions(),
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def format_metric(value: float | None, scale: float = 1.0, spec: str = ".4f") -> str:
    """A metric of a result for people: ``scale · value`` formatted by ``spec``, "n/a" for None."""
    return "n/a" if value is None else format(scale * value, spec)
