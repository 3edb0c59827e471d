"""PPG-DaLiA (Reiss et al., UCI dataset 495) from the raw per-subject pickles, following the benchmark protocol.

Expected layout: ``<dir>/S1/S1.pkl`` … ``<dir>/S15/S15.pkl`` (the ``PPG_FieldStudy`` folder of the UCI zip). Each
pickle is a dict (load with ``encoding="latin1"``) holding at least::

    data["signal"]["wrist"]["ACC"]   (n/2, 3) at 32 Hz
    data["signal"]["wrist"]["BVP"]   (n, 1)   at 64 Hz
    data["signal"]["wrist"]["EDA"]   (n/16, 1) at 4 Hz
    data["signal"]["wrist"]["TEMP"]  (n/16, 1) at 4 Hz
    data["label"]                    (m,)     heart rate, one value every 2 s

Protocol (the Log-NCDE/LinOSS/RHEL ``process_ppg.py`` pipeline, except that the split is seeded):

1. Align to 64 Hz by repetition (ACC ×2, EDA and TEMP ×16, BVP as is) and cut all signals to the shortest;
   channels are ``ACC x, ACC y, ACC z, BVP, EDA, TEMP``.
2. Each channel and the label are min-max scaled to [−1, 1] per subject (a constant channel becomes 0).
3. The label is left-padded with 3 copies of its first value (the first label describes the first 8 s window),
   so label ``k`` belongs to the 2 s slot ``k`` = input steps ``[128 k, 128 (k + 1))``.
4. Each subject's recording is cut, in whole 2 s slots, into three contiguous chunks of 70 %, 15 % and 15 %.
   Which chunk is train, validation and test is one of the 6 arrangements, drawn per subject from
   ``Generator(PCG64([seed, subject]))`` — the original draws it with an *unseeded* ``random.randint``.
5. Each chunk is cut into windows of ``window`` steps (default 49,920 = 780 s) with stride ``stride`` (default
   4,992), each with ``window // 128`` labels (default 390), one per 128 steps.
"""
from __future__ import annotations

import itertools
import pickle
import re
from pathlib import Path

import numpy as np

from .errors import DataFormatError

__all__ = ["PPG_RATE", "OUTPUT_STEP", "find_subjects", "load_subject", "ppg_windows"]

PPG_RATE = 64
OUTPUT_STEP = 128                      # 2 s at 64 Hz
_REPEAT = {"ACC": 2, "BVP": 1, "EDA": 16, "TEMP": 16}
_ARRANGEMENTS = list(itertools.permutations(("train", "val", "test")))   # 6 orders of the 3 chunks in time


def find_subjects(directory: Path) -> list[tuple[int, Path]]:
    """``(subject number, pickle path)`` for every ``S<i>/S<i>.pkl`` (or ``S<i>.pkl``) under ``directory``."""
    found = {}
    for path in list(directory.glob("S*/S*.pkl")) + list(directory.glob("S*.pkl")):
        match = re.fullmatch(r"S(\d+)\.pkl", path.name)
        if match:
            found.setdefault(int(match.group(1)), path)
    return sorted(found.items())


def _scale(values: np.ndarray) -> np.ndarray:
    lo, hi = values.min(axis=0), values.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, 2.0 * (values - lo) / span - 1.0, 0.0)


def load_subject(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Aligned, scaled inputs ``(n_slots * 128, 6)`` and labels ``(n_slots,)`` of one subject (steps 1–3)."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
        wrist = data["signal"]["wrist"]
        label = np.asarray(data["label"], dtype=np.float64).reshape(-1)
    except (KeyError, TypeError, pickle.UnpicklingError, EOFError) as error:
        raise DataFormatError(path, None, "expected a PPG-DaLiA pickle with data['signal']['wrist'][ACC/BVP/EDA/TEMP] "
                                          f"and data['label']: {error!r}") from None
    channels = []
    for key in ("ACC", "BVP", "EDA", "TEMP"):
        if key not in wrist:
            raise DataFormatError(path, None, f"data['signal']['wrist'] has no {key!r}; expected ACC, BVP, EDA, TEMP")
        signal = np.asarray(wrist[key], dtype=np.float64)
        signal = signal.reshape(signal.shape[0], -1)
        channels.append(np.repeat(signal, _REPEAT[key], axis=0))
    n = min(c.shape[0] for c in channels)
    x = np.concatenate([c[:n] for c in channels], axis=1)
    if x.shape[1] != 6:
        raise DataFormatError(path, None, f"expected 6 wrist channels (ACC x3, BVP, EDA, TEMP), found {x.shape[1]}")
    if label.size == 0:
        raise DataFormatError(path, None, "data['label'] is empty")
    label = np.concatenate([np.full(3, label[0]), label])
    slots = min(n // OUTPUT_STEP, label.size)
    x = _scale(x[: slots * OUTPUT_STEP])
    label = _scale(label[:slots, None])[:, 0]
    return x.astype(np.float32), label.astype(np.float32)


def _windows(x, labels, window, stride):
    per = window // OUTPUT_STEP
    xs, ys = [], []
    for start in range(0, x.shape[0] - window + 1, stride):
        xs.append(x[start:start + window])
        first = start // OUTPUT_STEP
        ys.append(labels[first:first + per])
    return xs, ys


def ppg_windows(directory: Path, seed: int, *, window: int = 49_920, stride: int = 4_992,
                split_record: dict | None = None) -> tuple[dict, dict]:
    """Window all subjects (steps 4–5). Returns ``({split: (x, y)}, arrangements)`` where ``x`` is float32
    ``(n, window, 6)``, ``y`` float32 ``(n, window // 128, 1)`` and ``arrangements`` maps subject → chunk order.
    ``split_record`` (a previously stored mapping subject → arrangement) is reused when given."""
    if window % OUTPUT_STEP or stride % OUTPUT_STEP:
        raise ValueError(f"window ({window}) and stride ({stride}) must be multiples of {OUTPUT_STEP}")
    subjects = find_subjects(directory)
    if not subjects:
        raise DataFormatError(directory, None, "no S<i>/S<i>.pkl subject pickles found")
    out = {k: ([], []) for k in ("train", "val", "test")}
    arrangements = {}
    for subject, path in subjects:
        x, labels = load_subject(path)
        if split_record and str(subject) in split_record:
            order = tuple(split_record[str(subject)])
        else:
            pick = int(np.random.Generator(np.random.PCG64([seed, subject])).integers(len(_ARRANGEMENTS)))
            order = _ARRANGEMENTS[pick]
        arrangements[str(subject)] = list(order)
        slots = labels.size
        sizes = {"train": int(0.7 * slots), "val": int(0.15 * slots)}
        sizes["test"] = slots - sizes["train"] - sizes["val"]
        cursor = 0
        for part in order:
            a, b = cursor, cursor + sizes[part]
            cursor = b
            xs, ys = _windows(x[a * OUTPUT_STEP:b * OUTPUT_STEP], labels[a:b], window, stride)
            out[part][0].extend(xs)
            out[part][1].extend(ys)
    per = window // OUTPUT_STEP
    arrays = {}
    for part, (xs, ys) in out.items():
        arrays[part] = (np.stack(xs) if xs else np.zeros((0, window, 6), np.float32),
                        np.stack(ys)[:, :, None] if ys else np.zeros((0, per, 1), np.float32))
    return arrays, arrangements
