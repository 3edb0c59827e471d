"""Archive datasets (``uea/<Name>``, ``ucr/<Name>``): a TRAIN/TEST pair found by :mod:`hamecho.data.sources`,
read by its format's reader and put through the paper's protocol (:mod:`hamecho.data.processing`): train+test
merged, exact duplicates dropped, labels encoded, lengths padded, a seeded 70/15/15 split stored as an index file.
``hamecho.data.load`` calls it for archive names; the noise-padded generated task calls it for its series.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import sources
from .formats import ARCHIVE_READERS
from .processing import (
    DatasetSplits,
    dedup_cases,
    encode_labels,
    pad_cases,
    split_indices,
    splits_from_parts,
    subset_indices,
)

__all__ = ["ARCHIVES", "load_archive", "read_pair"]

ARCHIVES = ("uea", "ucr")


def read_pair(train: Path, test: Path):
    """Read an archive TRAIN/TEST pair with the reader for its extension; returns ``(X, y)`` for each."""
    reader = ARCHIVE_READERS[train.suffix]
    return reader(train), reader(test)


def load_archive(kind, ds, name, root, seed, time_channel, length, num_samples, split_dir, download) -> DatasetSplits:
    """The archive dataset ``ds`` of ``kind`` ("uea" or "ucr") as ``DatasetSplits`` named ``name`` (the arguments
    are those of ``hamecho.data.load``)."""
    (train_path, test_path), where = sources.find_archive_pair(kind, ds, root, download)
    (x_tr, y_tr), (x_te, y_te) = read_pair(train_path, test_path)
    cases = x_tr + x_te
    regression = y_tr.dtype.kind == "f"
    if (y_te.dtype.kind == "f") != regression:
        raise ValueError(f"{name}: {train_path.name} and {test_path.name} disagree on classification vs regression")
    labels = np.concatenate([y_tr, y_te])
    if labels.size != len(cases):
        raise ValueError(f"{name}: the files have no class labels or targets; expected a labelled dataset")
    keep = dedup_cases(cases)
    cases, labels = [cases[i] for i in keep], labels[keep]
    chosen = subset_indices(len(cases), num_samples, seed)
    cases, labels = [cases[i] for i in chosen], labels[chosen]
    x = pad_cases(cases, length)
    split_name = name if len(chosen) == len(keep) else f"{name}__subset{len(chosen)}of{len(keep)}"
    parts = split_indices(split_name, len(cases), seed, split_dir)
    source = f"{where}: {train_path.name}, {test_path.name}"
    if regression:
        y = labels.astype(np.float32)[:, None, None]
        return splits_from_parts(name, "regression", parts, x, y, num_classes=None, out_dim=1, output_step=x.shape[1],
                                 class_names=None, source=source, time_channel=time_channel)
    codes, names = encode_labels(labels)
    return splits_from_parts(name, "classification", parts, x, codes, num_classes=len(names), out_dim=len(names),
                             output_step=1, class_names=names, source=source, time_channel=time_channel)
