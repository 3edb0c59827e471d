"""``from_arrays``: a researcher's own series and targets, through the same protocol as the archive datasets.

Series (``X``): an ``(N, L, C)`` array, an ``(N, L)`` array (one channel), or a list of ``N`` arrays of shape
``(L_i, C)`` or ``(L_i,)`` whose lengths may differ (all with the same ``C``). Axis 1 is time: an ``(N, C, L)``
array must be transposed first.

Targets (``y``), one entry per series; the task is inferred from their type unless ``task`` is given:

* classification (integer, boolean or string labels, shape ``(N,)``): encoded ``0..K-1`` in sorted order, numeric
  order when every label is a number, as for the archives. Float labels need ``task="classification"``; a float
  that is a whole number names the same class as the integer (``1.0`` and ``1`` are class ``"1"``).
* regression (floats): ``(N,)`` or ``(N, out)``, one target per series, become ``y`` of shape ``(N, 1, out)`` with
  ``output_step == L`` (read after the last step), exactly as the archive regression files; ``(N, T, out)``, ``T``
  targets per series, one every ``L // T`` steps (``output_step = L // T``, as the synthetic PPG task), needs
  equal-length series with ``L`` a multiple of ``T``.

The protocol is the archives' (:mod:`hamecho.data.processing`): exact duplicate series dropped (first kept, order
kept), labels encoded, unequal lengths right-padded by repeating the last value, ``length`` truncation,
``num_samples`` seeded subset and ``time_channel`` when given, and the seeded 70/15/15 split stored as the index file
``<split_dir>/<name>__n<N>__seed<seed>.json``. What differs is explicit:

* Missing values (NaN in ``X``) are an error by default (``missing="error"``, naming the first series, step and
  channel); ``missing="interpolate"`` fills them with the archive rule (:func:`~hamecho.data.processing.fill_missing`).
  Infinite values, and NaN or infinite labels and targets, are always an error.
* A user-given test set (``X_test``, ``y_test``) stays the test set: its series are never shuffled into training.
  The archive protocol has no such case (it merges its official train and test files and splits them again), so
  the training series are split into train/validation in the archive's 70:15 proportion (validation is the last
  ``N - int(14/17 N)`` of ``Generator(PCG64(seed)).permutation(N)``), stored as
  ``<split_dir>/<name>-train__n<N>__seed<seed>.json``, the way Fashion-MNIST's official training set is split.
  Duplicates are dropped inside each set, and a training series identical to a test series is dropped from
  training so that no test series is trained on. ``num_samples`` then keeps a seeded ``int(0.85 n)`` training and
  ``n - int(0.85 n)`` test series.
* ``DatasetSplits.source`` says how many duplicates were dropped and how many missing values were filled.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataFormatError, DataInputError
from .processing import (
    DEFAULT_SEED,
    DatasetSplits,
    dedup_cases,
    default_split_dir,
    encode_labels,
    pad_cases,
    split_indices,
    splits_from_parts,
    subset_indices,
)

__all__ = ["MISSING_RULES", "TASKS", "SeriesSet", "from_arrays"]

MISSING_RULES = ("error", "interpolate")
TASKS = ("classification", "regression")
TRAIN_SHARE_OF_TRAINING_SET = 14 / 17     # 70 : 15 of a user-given training set, the archive proportion
TRAINING_SHARE_OF_SUBSET = 0.85           # num_samples with a user test set: 85 % training, 15 % test


@dataclass
class SeriesSet:
    """Series and their targets before the protocol.

    ``cases``: ``float32`` arrays of shape ``(L_i, C)``; ``y``: one entry per case (labels ``(N,)`` or targets
    ``(N,)``, ``(N, out)``, ``(N, T, out)``); ``names``: how each case is called in error messages (``"X[3]"``,
    ``"series 'a'"``); ``what``: how ``y`` is called (``"y"``, ``"column 'label'"``).
    """

    cases: list[np.ndarray]
    y: np.ndarray
    names: list[str]
    what: str = "y"


def _error(reason: str, path: str | Path | None) -> ValueError:
    """DataFormatError naming the file when the arrays came from one, else DataInputError."""
    return DataInputError(reason) if path is None else DataFormatError(path, None, reason)


def as_cases(X, what: str = "X", path: str | Path | None = None) -> list[np.ndarray]:
    """``(N, L, C)``, ``(N, L)`` or a list of ``(L_i, C)`` / ``(L_i,)`` arrays -> list of ``float32 (L_i, C)``.

    Raises (naming ``what[i]``) for a wrong shape, ragged rows, non-numeric values, an empty series or series whose
    channel counts differ. Values are not checked here (see :func:`_check_values`).
    """
    expected = "expected an (N, L, C) array, an (N, L) array or a list of (L_i, C) / (L_i,) arrays"
    if X is None:
        raise _error(f"{what} is missing; {expected}", path)
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.dtype.kind not in "biuf":
            raise _error(f"{what} holds {X.dtype} values; expected numbers", path)
        if X.ndim == 2:
            X = X[:, :, None]
        if X.ndim != 3:
            raise _error(f"{what} has shape {X.shape}; {expected}", path)
        if X.shape[0] == 0:
            raise _error(f"{what} holds no series; expected at least one", path)
        if X.shape[1] == 0:
            raise _error(f"{what} has shape {X.shape}: the series have no time steps", path)
        return list(X.astype(np.float32, copy=False))
    try:
        items = [] if isinstance(X, (str, bytes)) else list(X)
    except TypeError:
        items = []
    if isinstance(X, (str, bytes)) or not items and not hasattr(X, "__len__"):
        raise _error(f"{what} is a {type(X).__name__}; {expected}", path)
    if not items:
        raise _error(f"{what} holds no series; expected at least one", path)
    cases: list[np.ndarray] = []
    for i, item in enumerate(items):
        try:
            arr = np.asarray(item)
        except ValueError:
            raise _error(f"{what}[{i}] is ragged (its time steps have different numbers of channels); "
                         "expected an (L, C) array", path) from None
        if arr.dtype.kind not in "biuf":
            raise _error(f"{what}[{i}] holds {arr.dtype} values; expected numbers", path)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise _error(f"{what}[{i}] has shape {arr.shape}; expected (L, C) or (L,)", path)
        if arr.shape[0] == 0:
            raise _error(f"{what}[{i}] has no time steps; expected at least one", path)
        if cases and arr.shape[1] != cases[0].shape[1]:
            raise _error(f"{what}[{i}] has {arr.shape[1]} channel(s) but {what}[0] has {cases[0].shape[1]}; "
                         "every series must have the same channels", path)
        cases.append(arr.astype(np.float32, copy=False))
    return cases


def _check_values(series: SeriesSet, missing: str, path) -> int:
    """Raise on an infinite value anywhere and on NaN unless ``missing == 'interpolate'``; return the NaN count."""
    missing_count = 0
    for case, name in zip(series.cases, series.names):
        finite = np.isfinite(case)
        if finite.all():
            continue
        infinite = np.argwhere(np.isinf(case))
        if infinite.size:
            step, channel = infinite[0]
            raise _error(f"{name} has an infinite value at step {step}, channel {channel} (or a number too large "
                         "for float32); expected finite numbers", path)
        if missing == "error":
            step, channel = np.argwhere(~finite)[0]
            raise _error(f"{name} has a missing value (NaN) at step {step}, channel {channel}; fill or remove it, "
                         "or pass missing='interpolate' to fill missing values by the archive rule (linear "
                         "interpolation along time, first/last observed value at the ends)", path)
        missing_count += int((~finite).sum())
    return missing_count


def as_targets(y, n: int, what: str = "y", path=None, series_what: str = "X") -> np.ndarray:
    """``y`` as a NumPy array with one entry per series; raises for a missing ``y`` or a count other than ``n``."""
    if y is None:
        raise _error(f"{what} is missing; expected one class label or regression target per series", path)
    try:
        arr = np.asarray(y)
    except ValueError:
        raise _error(f"{what} is ragged; expected one label or one target (vector) per series", path) from None
    if arr.dtype == object:
        if all(isinstance(v, str) for v in arr.ravel()):
            arr = arr.astype(str)
        else:
            odd = next(v for v in arr.ravel() if not isinstance(v, str))
            raise _error(f"{what} holds a {type(odd).__name__} value ({odd!r}) among others; expected integer or "
                         "string class labels, or float regression targets", path)
    if arr.ndim == 0 or arr.shape[0] != n:
        count = "a single value" if arr.ndim == 0 else f"{arr.shape[0]} entries"
        raise _error(f"{what} has {count} but {series_what} has {n} series; expected one label or target per "
                     "series", path)
    return arr


def infer_task(y: np.ndarray, task: str | None, what: str = "y", path=None) -> str:
    """``task`` if given (checked), else classification for integer/boolean/string ``y``, regression for floats."""
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        return task
    if y.dtype.kind in "biuUS":
        return "classification"
    if y.dtype.kind == "f":
        return "regression"
    raise _error(f"{what} holds {y.dtype} values; expected integer or string class labels, or float regression "
                 "targets", path)


def _class_labels(series: SeriesSet, path) -> np.ndarray:
    """Labels as strings: whole-number floats as integers, strings stripped; raises for NaN or empty labels."""
    y, what = series.y, series.what
    if y.ndim != 1:
        raise _error(f"{what} has shape {y.shape}; class labels are one per series, shape (N,)", path)
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise _error(f"{what}[{bad[0]}] (the label of {series.names[bad[0]]}) is {y[bad[0]]}; expected a "
                         "class label", path)
        return np.array([str(int(v)) if v == int(v) else repr(float(v)) for v in y], dtype=str)
    if y.dtype.kind == "b":
        return y.astype(str)
    if y.dtype.kind in "iu":
        return np.array([str(int(v)) for v in y], dtype=str)
    if y.dtype.kind not in "US":
        raise _error(f"{what} holds {y.dtype} values; expected class labels", path)
    labels = np.char.strip(y.astype(str))
    empty = np.flatnonzero(labels == "")
    if empty.size:
        raise _error(f"{what}[{empty[0]}] (the label of {series.names[empty[0]]}) is empty; expected a class "
                     "label", path)
    return labels


def _regression_targets(series: SeriesSet, path) -> np.ndarray:
    """Targets as ``float32 (N, T, out)``; ``(N,)`` and ``(N, out)`` give ``T = 1``. Raises for NaN/inf."""
    y, what = series.y, series.what
    if y.dtype.kind not in "biuf":
        raise _error(f"{what} holds {y.dtype} values; regression targets must be numbers (or pass "
                     "task='classification')", path)
    if y.ndim not in (1, 2, 3):
        raise _error(f"{what} has shape {y.shape}; regression targets have shape (N,), (N, out) or (N, T, out)",
                     path)
    targets = y.astype(np.float32)
    bad = ~np.isfinite(targets.reshape(len(targets), -1)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _error(f"{what}[{i}] (the target of {series.names[i]}) is not finite ({y[i]!r}); expected finite "
                     "regression targets", path)
    if targets.ndim == 1:
        return targets[:, None, None]
    if targets.ndim == 2:
        return targets[:, None, :]
    return targets


def _seeded_subset(n_total: int, k: int, seed: int) -> np.ndarray:
    """All indices, or ``k`` of them drawn with ``Generator(PCG64(seed))`` (kept in order), as
    ``subset_indices`` does."""
    if k >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.Generator(np.random.PCG64(seed)).permutation(n_total)[:k])


def run_protocol(train: SeriesSet, test: SeriesSet | None = None, *, name: str, task: str | None = None,
                 seed: int = DEFAULT_SEED, split_dir: str | Path | None = None, length: int | None = None,
                 time_channel: bool = False, num_samples: int | None = None, missing: str = "error",
                 dedup: bool = True, source: str = "arrays", path: str | Path | None = None) -> DatasetSplits:
    """The archive protocol on parsed series (see the module docstring); shared by :func:`from_arrays` and the
    file readers of :mod:`hamecho.data.files`. ``path`` (the file the series came from) makes every error a
    :class:`DataFormatError` naming it."""
    if missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {MISSING_RULES}, got {missing!r}")
    sets = [train] if test is None else [train, test]
    channels = train.cases[0].shape[1]
    if test is not None and test.cases[0].shape[1] != channels:
        raise _error(f"the test series have {test.cases[0].shape[1]} channel(s) but the training series have "
                     f"{channels}; expected the same channels", path)
    filled = sum(_check_values(s, missing, path) for s in sets)

    task = infer_task(train.y, task, train.what, path)
    if task == "classification":
        targets = [_class_labels(s, path) for s in sets]
        classes = sorted(set().union(*(set(t.tolist()) for t in targets)))
        if len(classes) < 2:
            raise _error(f"every series has the label {classes[0]!r}; classification needs at least two classes "
                         "(pass float targets or task='regression' for regression)", path)
    else:
        targets = [_regression_targets(s, path) for s in sets]
        if test is not None and targets[0].shape[1:] != targets[1].shape[1:]:
            raise _error(f"{train.what} has targets of shape {targets[0].shape[1:]} per series but {test.what} has "
                         f"{targets[1].shape[1:]}; expected the same", path)

    notes = []
    if test is None:
        keep = dedup_cases(train.cases) if dedup else np.arange(len(train.cases))
        if len(keep) < len(train.cases):
            notes.append(f"{len(train.cases) - len(keep)} exact duplicate series dropped (first kept)")
        chosen = keep[subset_indices(len(keep), num_samples, seed)]
        if len(chosen) < 3:
            raise _error(f"{len(chosen)} series (after dropping exact duplicates); the 70/15/15 split needs at "
                         "least 3", path)
        cases = [train.cases[i] for i in chosen]
        y = targets[0][chosen]
        split_name = name if len(chosen) == len(keep) else f"{name}__subset{len(chosen)}of{len(keep)}"
        parts = split_indices(split_name, len(cases), seed, split_dir)
    else:
        n_test = len(test.cases)
        if dedup:
            both = dedup_cases(test.cases + train.cases)      # test first: a training copy of a test series goes
            keep_test, keep_train = both[both < n_test], both[both >= n_test] - n_test
        else:
            keep_test, keep_train = np.arange(n_test), np.arange(len(train.cases))
        if len(keep_train) < len(train.cases) or len(keep_test) < n_test:
            notes.append(f"exact duplicate series dropped: {len(train.cases) - len(keep_train)} training (also "
                         f"those identical to a test series), {n_test - len(keep_test)} test")
        n_pool, n_held = len(keep_train), len(keep_test)
        if num_samples is not None:
            if num_samples < 3:
                raise ValueError(f"num_samples must be at least 3, got {num_samples}")
            n_pool = min(n_pool, max(2, int(TRAINING_SHARE_OF_SUBSET * num_samples)))
            n_held = min(n_held, max(1, num_samples - n_pool))
        pool = keep_train[_seeded_subset(len(keep_train), n_pool, seed)]
        held = keep_test[_seeded_subset(len(keep_test), n_held, seed)]
        if len(pool) < 2:
            raise _error(f"{len(pool)} training series (after dropping exact duplicates); the train/validation "
                         "split needs at least 2", path)
        cases = [train.cases[i] for i in pool] + [test.cases[i] for i in held]
        y = np.concatenate([targets[0][pool], targets[1][held]])
        subset = "" if len(pool) == len(keep_train) else f"__subset{len(pool)}of{len(keep_train)}"
        split_name = f"{name}-train{subset}"
        inner = split_indices(split_name, len(pool), seed, split_dir, fractions=(TRAIN_SHARE_OF_TRAINING_SET, 1.0))
        if inner["test"].size:
            folder = Path(split_dir) if split_dir is not None else default_split_dir()
            raise ValueError(f"the split index file for {split_name!r} in {folder} has test entries; expected a "
                             "train/validation split of the training series; delete it to make a new one")
        parts = {"train": inner["train"], "val": inner["val"], "test": len(pool) + np.arange(len(held))}
        notes.append(f"user-given test set ({len(held)} series)")
    if filled:
        notes.append(f"{filled} missing value(s) interpolated")

    lengths = {c.shape[0] for c in cases}
    if task == "regression" and y.shape[1] > 1:              # (N, T, out): one target every L // T steps
        steps = y.shape[1]
        if len(lengths) != 1:
            raise _error(f"per-step targets ({y.shape[1]} per series) need equal-length series; found lengths "
                         f"{min(lengths)} to {max(lengths)}", path)
        full = lengths.pop()
        if full % steps:
            raise _error(f"series of length {full} with {steps} targets each: the length must be a multiple of "
                         "the number of targets", path)
        output_step = full // steps
        if length is not None:
            if length > full or length % output_step:
                raise ValueError(f"length={length}: with one target every {output_step} steps it must be a multiple "
                                 f"of {output_step} and at most {full}")
            y = y[:, : length // output_step]
    x = pad_cases(cases, length)
    if task == "regression" and y.shape[1] == 1:
        output_step = x.shape[1]
    full_source = source + "".join(f"; {note}" for note in notes)
    if task == "regression":
        return splits_from_parts(name, "regression", parts, x, y, num_classes=None, out_dim=int(y.shape[2]),
                                 output_step=output_step, class_names=None, source=full_source,
                                 time_channel=time_channel)
    codes, class_names = encode_labels(y)
    return splits_from_parts(name, "classification", parts, x, codes, num_classes=len(class_names),
                             out_dim=len(class_names), output_step=1, class_names=class_names, source=full_source,
                             time_channel=time_channel)


def from_arrays(X, y, *, X_test=None, y_test=None, task: str | None = None, name: str = "arrays",
                seed: int = DEFAULT_SEED, split_dir: str | Path | None = None, length: int | None = None,
                time_channel: bool = False, num_samples: int | None = None, missing: str = "error",
                dedup: bool = True) -> DatasetSplits:
    """Your own series and targets as a :class:`DatasetSplits`, by the archive protocol (see the module docstring).

    ``X``: ``(N, L, C)``, ``(N, L)`` or a list of ``(L_i, C)`` / ``(L_i,)`` arrays; ``y``: ``(N,)`` class labels or
    regression targets ``(N,)``, ``(N, out)``, ``(N, T, out)``; ``task`` (``"classification"``/``"regression"``)
    is inferred from ``y`` when not given. Without ``X_test`` the cases get the seeded 70/15/15 split stored in
    ``<split_dir>/<name>__n<N>__seed<seed>.json``; with ``X_test``/``y_test`` those are the test set and ``X``/``y``
    are split 70:15 into train/validation. ``name`` names the dataset and its split index file.
    ``missing``: ``"error"`` (default) or ``"interpolate"``. ``dedup=False`` keeps exact duplicate series.

    Raises :class:`DataInputError` (a ``ValueError``) saying which array, series or label is wrong and what was
    expected: wrong shapes, ragged or empty series, channel counts that differ, a label count other than ``N``,
    NaN (unless interpolated) or infinite values, NaN labels or targets, a single class.
    """
    if (X_test is None) != (y_test is None):
        given, absent = ("X_test", "y_test") if y_test is None else ("y_test", "X_test")
        raise DataInputError(f"{given} is given but {absent} is not; expected both (a test set) or neither")
    cases = as_cases(X, "X")
    train = SeriesSet(cases, as_targets(y, len(cases), "y"), [f"X[{i}]" for i in range(len(cases))], "y")
    test = None
    if X_test is not None:
        test_cases = as_cases(X_test, "X_test")
        test = SeriesSet(test_cases, as_targets(y_test, len(test_cases), "y_test", series_what="X_test"),
                         [f"X_test[{i}]" for i in range(len(test_cases))], "y_test")
    return run_protocol(train, test, name=name, task=task, seed=seed, split_dir=split_dir, length=length,
                        time_channel=time_channel, num_samples=num_samples, missing=missing, dedup=dedup,
                        source=f"arrays ({len(cases)} series" + ("" if test is None else
                                                                 f" + {len(test.cases)} test series") + ")")
