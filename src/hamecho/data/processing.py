"""From parsed cases to training arrays: missing values, unequal lengths, deduplication, labels and splits.

The UEA/UCR protocol of the paper (and of the Log-NCDE/LinOSS pipeline it reuses), with the differences noted:

1. The archive's train and test files are concatenated (train first, file order).
2. Exact duplicate series are dropped, keeping the first occurrence and the original order (the LinOSS/RHEL code's
   ``np.unique`` reorders the cases lexicographically; we do not). Two series are duplicates when their values
   (including the positions of missing values) are identical, whatever their labels.
3. Labels are encoded as ``0..K-1`` in the order of ``class_names``: sorted, numerically when all labels are
   numbers (so the encoding does not depend on which file or format the data came from).
4. Missing values and unequal lengths (:func:`fill_missing`, :func:`pad_cases`): inside a series, NaN runs are
   linearly interpolated along time; leading NaN take the first observed value, trailing NaN the last observed one;
   a channel with no observed value becomes 0. Shorter series are then right-padded to the longest by repeating
   their last value (the same rule as trailing NaN). No NaN is left in the returned arrays.
5. An optional time channel ``t_i = i / L`` (so t ∈ [0, 1)) is prepended as channel 0.
6. A seeded 70/15/15 split (:func:`split_indices`): the permutation is ``numpy.random.Generator(PCG64(seed))
   .permutation(N)``; train is its first ``int(0.7 N)`` entries, validation the next ``int(0.85 N) - int(0.7 N)``,
   test the rest. The indices are written to a JSON index file per dataset, seed and size, and an existing file is
   always reused, so a split never changes when NumPy's generator internals do.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_SEED", "DatasetSplits", "fill_missing", "pad_cases", "dedup_cases", "encode_labels", "split_indices",
    "add_time_channel", "default_split_dir", "splits_from_parts", "subset_indices",
]

# The seed of the split (and of a subset) when none is given: the first of the paper's seeds.
DEFAULT_SEED = 2345


@dataclass(frozen=True)
class DatasetSplits:
    """Train/validation/test arrays ready for training.

    ``x_*`` are ``float32`` of shape ``(N, L, C)``; all splits share ``L`` and ``C``. For classification ``y_*`` are
    ``int64`` of shape ``(N,)`` in ``[0, num_classes)``; for regression ``float32`` of shape
    ``(N, L // output_step, out_dim)`` (one target per ``output_step`` inputs; a per-sequence target has
    ``output_step == L`` and shape ``(N, 1, out_dim)``).
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None
    out_dim: int
    output_step: int
    class_names: tuple[str, ...] | None
    source: str

    @property
    def length(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[2])

    def summary(self) -> dict:
        """A JSON-friendly description (used by ``hamecho data info``)."""
        info = {
            "name": self.name, "task": self.task, "source": self.source,
            "cases": {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)},
            "length": self.length, "channels": self.channels, "out_dim": self.out_dim, "output_step": self.output_step,
        }
        if self.task == "classification":
            info["num_classes"] = self.num_classes
            info["class_names"] = list(self.class_names or ())
        else:
            ys = [y for y in (self.y_train, self.y_val, self.y_test) if y.size]
            info["target_range"] = [float(min(y.min() for y in ys)), float(max(y.max() for y in ys))] if ys else None
        return info


def fill_missing(series: np.ndarray) -> np.ndarray:
    """Fill NaN in a ``(L, C)`` series along time: interpolate inside, extend the first/last observed value
    outwards, 0 for a channel with no observed value. Returns a new float32 array."""
    out = np.array(series, dtype=np.float32, copy=True)
    if not np.isnan(out).any():
        return out
    steps = np.arange(out.shape[0])
    for c in range(out.shape[1]):
        column = out[:, c]
        missing = np.isnan(column)
        if not missing.any():
            continue
        if missing.all():
            column[:] = 0.0
            continue
        column[missing] = np.interp(steps[missing], steps[~missing], column[~missing])
    return out


def pad_cases(cases: list[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack ``(L_i, C)`` cases to ``(N, L, C)``: fill NaN (:func:`fill_missing`), right-pad shorter cases by
    repeating their last value, truncate to ``length`` if given (otherwise L is the longest case)."""
    if not cases:
        raise ValueError("no cases to stack")
    channels = {c.shape[1] for c in cases}
    if len(channels) != 1:
        raise ValueError(f"cases have different channel counts: {sorted(channels)}")
    target = max(c.shape[0] for c in cases) if length is None else int(length)
    out = np.zeros((len(cases), target, channels.pop()), dtype=np.float32)
    for i, case in enumerate(cases):
        filled = fill_missing(case)[:target]
        n = filled.shape[0]
        if n == 0:
            continue
        out[i, :n] = filled
        if n < target:
            out[i, n:] = filled[-1]
    return out


def dedup_cases(cases: list[np.ndarray]) -> np.ndarray:
    """Indices of the first occurrence of each distinct series (exact values, NaN positions included), in order."""
    seen: set[bytes] = set()
    keep = []
    for i, case in enumerate(cases):
        arr = np.ascontiguousarray(case, dtype=np.float32)
        arr = np.where(np.isnan(arr), np.float32(np.nan), arr)  # one NaN bit pattern
        key = hashlib.sha1(repr(arr.shape).encode() + arr.tobytes()).digest()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _sort_key(labels):
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def encode_labels(labels, declared: list[str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map string labels to ``int64`` codes. Classes are ``declared`` (file order) if given, else sorted."""
    labels = [str(v) for v in labels]
    names = list(declared) if declared else _sort_key(set(labels))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the declared classes {names}")
    return np.array([index[v] for v in labels], dtype=np.int64), tuple(names)


def default_split_dir() -> Path:
    """``$HAMECHO_CACHE/splits`` if set, else ``$XDG_CACHE_HOME/hamecho/splits`` or ``~/.cache/hamecho/splits``."""
    if os.environ.get("HAMECHO_CACHE"):
        return Path(os.environ["HAMECHO_CACHE"]) / "splits"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hamecho" / "splits"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def split_indices(name: str, n: int, seed: int, split_dir: str | Path | None = None,
                  fractions: tuple[float, float] = (0.7, 0.85)) -> dict[str, np.ndarray]:
    """The seeded 70/15/15 split of ``n`` cases, read from / written to ``<split_dir>/<name>__n<n>__seed<seed>.json``.

    A present file is reused as is (after checking it is a partition of ``range(n)``); otherwise the split is
    made from ``Generator(PCG64(seed)).permutation(n)`` and written atomically.
    """
    directory = Path(split_dir) if split_dir is not None else default_split_dir()
    path = directory / f"{_safe(name)}__n{n}__seed{seed}.json"
    if path.exists():
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
        parts = {k: np.asarray(stored[k], dtype=np.int64) for k in ("train", "val", "test")}
        together = np.sort(np.concatenate(list(parts.values())))
        if together.shape[0] != n or not np.array_equal(together, np.arange(n)):
            raise ValueError(f"split index file {path} is not a split of {n} cases; delete it to make a new one")
        return parts
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(n)
    a, b = int(fractions[0] * n), int(fractions[1] * n)
    parts = {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}
    directory.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "n": n, "seed": seed, "method": "numpy PCG64(seed).permutation(n); 70/15/15",
              **{k: v.tolist() for k, v in parts.items()}}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(tmp, path)
    return parts


def add_time_channel(x: np.ndarray) -> np.ndarray:
    """Prepend ``t_i = i / L`` as channel 0 of a ``(N, L, C)`` array."""
    n, length, _ = x.shape
    t = np.broadcast_to((np.arange(length, dtype=np.float32) / length)[None, :, None], (n, length, 1))
    return np.concatenate([t, x], axis=2)


def subset_indices(n_total: int, num_samples: int | None, seed: int) -> np.ndarray:
    """All indices, or a seeded subset of ``num_samples`` of them (kept in original order)."""
    if num_samples is None or num_samples >= n_total:
        return np.arange(n_total)
    if num_samples < 3:
        raise ValueError(f"num_samples must be at least 3, got {num_samples}")
    return np.sort(np.random.Generator(np.random.PCG64(seed)).permutation(n_total)[:num_samples])


def splits_from_parts(name, task, parts, x, y, *, num_classes, out_dim, output_step, class_names, source, time_channel):
    """A ``DatasetSplits`` from all cases x (N, L, C) and y, and the split ``parts`` (index arrays per split)."""
    if time_channel:
        x = add_time_channel(x)
    return DatasetSplits(
        name=name, task=task,
        x_train=x[parts["train"]], y_train=y[parts["train"]],
        x_val=x[parts["val"]], y_val=y[parts["val"]],
        x_test=x[parts["test"]], y_test=y[parts["test"]],
        num_classes=num_classes, out_dim=out_dim, output_step=output_step, class_names=class_names, source=source,
    )
