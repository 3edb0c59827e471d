"""Your own data: from_arrays, .npz, CSV, Parquet and single archive files, through the archive protocol.

Every test writes its files into ``tmp_path``; nothing is downloaded. Each malformed case checks that the message
names the file (and line or row) and says what is wrong.
"""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from hamecho import cli
from hamecho.data import (
    DataFormatError,
    DataInputError,
    DataNotFoundError,
    from_arrays,
    load,
    load_file,
)

CLASSES = ("walk", "run", "jump")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Split files go to a temporary cache unless a test names split_dir; no HAMECHO_DATA."""
    monkeypatch.setenv("HAMECHO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HAMECHO_DATA", raising=False)


def toy(n=30, channels=2, seed=0, equal=False):
    """``n`` series of 2 channels, lengths 5..8 (or all 8), 3 decimals (so text files hold the exact values),
    string labels cycling through CLASSES."""
    rng = np.random.default_rng(seed)
    cases = [np.round(rng.normal(size=(8 if equal else 5 + i % 4, channels)), 3) for i in range(n)]
    labels = np.array([CLASSES[i % 3] for i in range(n)])
    return cases, labels


def padded(cases):
    """(N, L, C) padded with zeros, and each series' length."""
    lengths = np.array([len(c) for c in cases])
    X = np.zeros((len(cases), lengths.max(), cases[0].shape[1]))
    for i, c in enumerate(cases):
        X[i, : len(c)] = c
    return X, lengths


def write_csv(path, cases, labels, *, header=("series", "time", "c0", "c1", "label"), shuffle=True, ids=None):
    """Long format, one row per series and time step, rows shuffled (the reader sorts them)."""
    rows = []
    for i, (case, label) in enumerate(zip(cases, labels)):
        sid = f"s{i:03d}" if ids is None else ids[i]
        rows += [[sid, t, *(repr(float(v)) for v in case[t]), label] for t in range(len(case))]
    if shuffle:
        rows = [rows[j] for j in np.random.default_rng(1).permutation(len(rows))]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_parquet(path, cases, labels, **extra_columns):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    series, time, c0, c1, label = [], [], [], [], []
    for i, (case, lab) in enumerate(zip(cases, labels)):
        for t in range(len(case)):
            series.append(f"s{i:03d}")
            time.append(t)
            c0.append(float(case[t, 0]))
            c1.append(float(case[t, 1]))
            label.append(lab)
    order = np.random.default_rng(2).permutation(len(series))
    columns = {"series": series, "time": time, "c0": c0, "c1": c1, "label": label, **extra_columns}
    table = pa.table({k: [v[j] for j in order] if len(v) == len(order) else v for k, v in columns.items()})
    pq.write_table(table, path)
    return path


def write_ts(path, cases, labels):
    header = ("@problemName Toy\n@univariate false\n@dimensions 2\n@equalLength false\n"
              f"@classLabel true {' '.join(CLASSES)}\n@data\n")
    lines = [":".join(",".join(repr(float(v)) for v in case[:, c]) for c in range(case.shape[1])) + f":{label}"
             for case, label in zip(cases, labels)]
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def same_splits(a, b):
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part), err_msg=part)
    assert (a.task, a.num_classes, a.out_dim, a.output_step, a.class_names) == \
           (b.task, b.num_classes, b.out_dim, b.output_step, b.class_names)


# ------------------------------------------------------------------------------------------------ from_arrays

def test_from_arrays_seeded_split_is_stored_and_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 12, 3)), rng.integers(0, 3, 40)
    ds = from_arrays(X, y, name="mine", split_dir=tmp_path)
    assert ds.task == "classification" and ds.num_classes == 3 and ds.class_names == ("0", "1", "2")
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (28, 6, 6)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape[1:] == (12, 3) and ds.y_train.dtype == np.int64
    record = json.loads((tmp_path / "mine__n40__seed2345.json").read_text())
    perm = np.random.Generator(np.random.PCG64(2345)).permutation(40)
    assert record["train"] == sorted(perm[:28].tolist())
    np.testing.assert_array_equal(ds.x_train, X[record["train"]].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y[record["test"]])
    same_splits(ds, from_arrays(X, y, name="mine", split_dir=tmp_path))
    other = from_arrays(X, y, name="mine", seed=7, split_dir=tmp_path)
    assert not np.array_equal(other.y_train, ds.y_train) and (tmp_path / "mine__n40__seed7.json").exists()
    timed = from_arrays(X, y, name="mine", split_dir=tmp_path, time_channel=True, length=10)
    assert timed.x_train.shape[1:] == (10, 4)
    np.testing.assert_allclose(timed.x_train[0, :, 0], np.arange(10) / 10)


def test_from_arrays_unequal_lengths_one_channel_and_string_labels(tmp_path):
    series = [np.arange(3.0), np.arange(5.0), np.arange(4.0)] * 4
    series = [s + i for i, s in enumerate(series)]                 # no exact duplicates
    labels = ["b", "a", "c"] * 4
    ds = from_arrays(series, labels, split_dir=tmp_path)
    assert ds.x_train.shape[1:] == (5, 1) and ds.class_names == ("a", "b", "c")
    everything = np.concatenate([ds.x_train, ds.x_val, ds.x_test])[:, :, 0]
    assert {tuple(row) for row in everything} >= {(0, 1, 2, 2, 2)}   # padded by repeating the last value
    flat = from_arrays(np.stack([np.arange(6.0) + i for i in range(10)]), [0, 1] * 5, split_dir=tmp_path)
    assert flat.x_train.shape[1:] == (6, 1)


def test_from_arrays_regression_targets(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 12, 2))
    per_series = from_arrays(X, rng.normal(size=20), split_dir=tmp_path)
    assert per_series.task == "regression" and per_series.output_step == 12 and per_series.out_dim == 1
    assert per_series.y_train.shape == (14, 1, 1) and per_series.y_train.dtype == np.float32
    vector = from_arrays(X, rng.normal(size=(20, 3)), split_dir=tmp_path)
    assert vector.y_train.shape == (14, 1, 3) and vector.out_dim == 3
    steps = from_arrays(X, rng.normal(size=(20, 4, 1)), split_dir=tmp_path)
    assert steps.output_step == 3 and steps.y_train.shape == (14, 4, 1)
    short = from_arrays(X, rng.normal(size=(20, 4, 1)), split_dir=tmp_path, length=6)
    assert short.x_train.shape[1] == 6 and short.y_train.shape == (14, 2, 1)
    classes = from_arrays(X, np.arange(20) % 2 * 1.0, task="classification", split_dir=tmp_path)
    assert classes.class_names == ("0", "1")
    with pytest.raises(ValueError, match="multiple of 3"):
        from_arrays(X, rng.normal(size=(20, 4, 1)), split_dir=tmp_path, length=7)


def test_from_arrays_user_test_set_is_kept(tmp_path):
    cases, labels = toy(34)
    test_cases, test_labels = toy(10, seed=5)
    cases[3] = test_cases[2].copy()                            # a training copy of a test series is not trained on
    ds = from_arrays(cases, labels, X_test=test_cases, y_test=test_labels, name="mine", split_dir=tmp_path)
    assert len(ds.x_test) == 10
    for i, case in enumerate(test_cases):                     # test set whole and in its order
        np.testing.assert_array_equal(ds.x_test[i, : len(case)], case.astype(np.float32))
    assert [ds.class_names[k] for k in ds.y_test] == list(test_labels)
    assert (len(ds.x_train), len(ds.x_val)) == (27, 6)         # 33 training series, 70:15 -> int(33 * 14/17) = 27
    record = json.loads((tmp_path / "mine-train__n33__seed2345.json").read_text())
    assert record["test"] == [] and len(record["val"]) == 6
    assert "1 training" in ds.source and "user-given test set" in ds.source
    sub = from_arrays(cases, labels, X_test=test_cases, y_test=test_labels, name="mine", split_dir=tmp_path,
                      num_samples=20)
    assert (len(sub.x_train) + len(sub.x_val), len(sub.x_test)) == (17, 3)


def test_from_arrays_duplicates_and_interpolation_are_reported(tmp_path):
    cases, labels = toy(20)
    cases.append(cases[4].copy())
    labels = np.append(labels, "run")
    ds = from_arrays(cases, labels, split_dir=tmp_path)
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 20
    assert "1 exact duplicate series dropped" in ds.source
    kept = from_arrays(cases, labels, split_dir=tmp_path, dedup=False)
    assert len(kept.x_train) + len(kept.x_val) + len(kept.x_test) == 21
    cases[0][1, 0] = np.nan
    filled = from_arrays(cases, labels, split_dir=tmp_path, missing="interpolate")
    assert "1 missing value(s) interpolated" in filled.source
    for x in (filled.x_train, filled.x_val, filled.x_test):
        assert not np.isnan(x).any()


def nan_at(step):
    X = np.ones((6, 4, 2))
    X[2, step, 1] = np.nan
    return X


@pytest.mark.parametrize("kwargs, message", [
    ({"X": np.ones((5, 4, 2)), "y": [0, 1, 0, 1]}, "y has 4 entries but X has 5 series"),
    ({"X": [np.ones((4, 2)), np.ones((3, 3))], "y": [0, 1]}, r"X\[1\] has 3 channel\(s\) but X\[0\] has 2"),
    ({"X": [], "y": []}, "X holds no series"),
    ({"X": np.zeros((0, 4, 2)), "y": []}, "X holds no series"),
    ({"X": [np.ones((3, 1)), np.ones((0, 1))], "y": [0, 1]}, r"X\[1\] has no time steps"),
    ({"X": [[[1.0, 2.0], [3.0]]], "y": [0]}, r"X\[0\] is ragged"),
    ({"X": np.ones((4, 2, 2, 2)), "y": [0, 1, 0, 1]}, r"X has shape \(4, 2, 2, 2\); expected an \(N, L, C\)"),
    ({"X": np.array([["a", "b"], ["c", "d"]]), "y": [0, 1]}, "expected numbers"),
    ({"X": nan_at(3), "y": [0, 1] * 3}, r"X\[2\] has a missing value \(NaN\) at step 3, channel 1.*interpolate"),
    ({"X": np.where(nan_at(1) != nan_at(1), np.inf, 1.0), "y": [0, 1] * 3}, r"X\[2\] has an infinite value"),
    ({"X": np.ones((6, 4, 2)) * np.arange(6)[:, None, None], "y": ["a"] * 6}, "at least two classes"),
    ({"X": np.ones((6, 4, 2)) * np.arange(6)[:, None, None], "y": [0.1, np.nan, 0.3, 0.4, 0.5, 0.6]},
     r"y\[1\] \(the target of X\[1\]\) is not finite"),
    ({"X": np.ones((6, 4, 2)) * np.arange(6)[:, None, None], "y": [1.0, np.nan] * 3, "task": "classification"},
     r"y\[1\] \(the label of X\[1\]\) is nan"),
    ({"X": np.ones((6, 4, 2)) * np.arange(6)[:, None, None], "y": ["a", ""] * 3}, r"y\[1\].* is empty"),
    ({"X": np.ones((6, 4, 2)) * np.arange(6)[:, None, None], "y": None}, "y is missing"),
    ({"X": np.ones((6, 4, 2)) * np.arange(6)[:, None, None], "y": [0, 1] * 3, "X_test": np.ones((2, 4, 2))},
     "X_test is given but y_test is not"),
    ({"X": np.ones((6, 4, 2)) * np.arange(6)[:, None, None], "y": [0, 1] * 3, "X_test": np.ones((2, 4, 3)),
      "y_test": [0, 1]}, "test series have 3 channel"),
    ({"X": np.ones((2, 4, 2)) * np.arange(2)[:, None, None], "y": [0, 1]}, "needs at least 3"),
    ({"X": [np.ones((4 + i % 2, 1)) * i for i in range(6)], "y": np.ones((6, 2, 1))}, "per-step targets"),
])
def test_from_arrays_malformed(tmp_path, kwargs, message):
    with pytest.raises(DataInputError, match=message):
        from_arrays(**kwargs, split_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ files

def test_same_data_as_arrays_npz_csv_parquet_and_ts_gives_the_same_splits(tmp_path):
    cases, labels = toy(30)
    split_dir = tmp_path / "splits"
    reference = from_arrays(cases, labels, split_dir=split_dir)
    X, lengths = padded(cases)
    np.savez(tmp_path / "toy.npz", X=X, y=labels, lengths=lengths)
    write_csv(tmp_path / "toy.csv", cases, labels)
    write_parquet(tmp_path / "toy.parquet", cases, labels)
    write_ts(tmp_path / "toy.ts", cases, labels)
    for name in ("toy.npz", "toy.csv", "toy.parquet", "toy.ts"):
        ds = load_file(tmp_path / name, split_dir=split_dir)
        same_splits(ds, reference)
        assert ds.name == name and str(tmp_path / name) in ds.source
        assert (split_dir / f"{name}__n30__seed2345.json").exists()
    same_splits(load(str(tmp_path / "toy.csv"), split_dir=split_dir), reference)   # load() takes paths too
    arff = tmp_path / "toy.arff"
    arff.write_text("@relation toy\n@attribute t0 numeric\n@attribute t1 numeric\n@attribute t2 numeric\n"
                    "@attribute class {a,b}\n@data\n" + "".join(f"{i},{i + 1},{i % 5},{'ab'[i % 2]}\n"
                                                                   for i in range(20)))
    tsv = tmp_path / "toy.tsv"
    tsv.write_text("".join(f"{i % 2 + 1}\t{i}\t{i + 1}\t{i % 5}\n" for i in range(20)))
    a, t = load_file(arff, split_dir=split_dir), load_file(tsv, split_dir=split_dir)
    np.testing.assert_array_equal(a.x_train, t.x_train)
    assert a.x_train.shape[1:] == (3, 1) and len(a.x_train) == 14 and t.class_names == ("1", "2")


def test_npz_test_set_and_regression(tmp_path):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(20, 6, 2)), rng.normal(size=20)
    X_test, y_test = rng.normal(size=(5, 6, 2)), rng.normal(size=5)
    np.savez(tmp_path / "reg.npz", X=X, y=y, X_test=X_test, y_test=y_test)
    ds = load_file(tmp_path / "reg.npz", split_dir=tmp_path)
    assert ds.task == "regression" and ds.output_step == 6 and (len(ds.x_train), len(ds.x_val)) == (16, 4)
    np.testing.assert_array_equal(ds.x_test, X_test.astype(np.float32))
    np.testing.assert_array_equal(ds.y_test[:, 0, 0], y_test.astype(np.float32))
    same_splits(ds, from_arrays(X, y, X_test=X_test, y_test=y_test, name="reg.npz", split_dir=tmp_path))


def test_csv_options_numeric_ids_dates_targets_and_test_file(tmp_path):
    cases, _ = toy(12, equal=True)
    targets = np.round(np.linspace(0, 1, 12), 3)
    ids = [str(i * 5) for i in range(12)]                        # numeric ids: series 5 comes before 10
    write_csv(tmp_path / "reg.csv", cases, targets, header=("id", "t", "a", "b", "y"), ids=ids)
    ds = load_file(tmp_path / "reg.csv", series_column="id", time_column="t", target_column="y",
                   split_dir=tmp_path)
    assert ds.task == "regression" and ds.y_train.shape[1:] == (1, 1)
    same_splits(ds, from_arrays(cases, targets, name="reg.csv", split_dir=tmp_path))
    only_a = load_file(tmp_path / "reg.csv", series_column="id", time_column="t", target_column="y",
                       channel_columns=["a"], split_dir=tmp_path)
    assert only_a.channels == 1
    dated = tmp_path / "dated.csv"
    dated.write_text("series,time,x,label\n" + "".join(
        f"{s},2024-01-0{9 - t}T00:00,{s * 10 + (9 - t)},{'ab'[s % 2]}\n" for s in range(6) for t in range(3)))
    ds = load_file(dated, split_dir=tmp_path)
    for x in (ds.x_train, ds.x_val, ds.x_test):                # rows sorted by their date-times
        assert (np.diff(x[:, :, 0], axis=1) > 0).all()
    train, labels = toy(20)
    test, test_labels = toy(6, seed=9)
    write_csv(tmp_path / "train.csv", train, labels)
    write_csv(tmp_path / "test.csv", test, test_labels)
    ds = load_file(tmp_path / "train.csv", test_path=tmp_path / "test.csv", split_dir=tmp_path)
    same_splits(ds, from_arrays(train, labels, X_test=test, y_test=test_labels, name="train.csv",
                                split_dir=tmp_path))
    assert "test file" in ds.source


def test_csv_missing_values_are_an_error_unless_interpolated(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("series,time,x,label\n" + "".join(f"{s},{t},{s + t},{'ab'[s % 2]}\n"
                                                      for s in range(6) for t in range(4)).replace("2,1,3,", "2,1,,"))
    with pytest.raises(DataFormatError, match=r"holes.csv, line 11: column 'x' is missing .* series '2'"):
        load_file(path, split_dir=tmp_path)
    ds = load_file(path, split_dir=tmp_path, missing="interpolate")
    assert "1 missing value(s) interpolated" in ds.source


def test_cli_data_info_on_files(tmp_path, capsys, monkeypatch):
    cases, labels = toy(20)
    monkeypatch.chdir(tmp_path)
    write_ts(tmp_path / "my.ts", cases, labels)
    write_csv(tmp_path / "my.csv", cases, [f"{i % 2}" for i in range(20)], header=("series", "time", "a", "b", "y"))
    X, lengths = padded(cases)
    np.savez(tmp_path / "my.npz", X=X, y=labels, lengths=lengths)
    assert cli.main(["data", "info", "./my.ts", "--split-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "my.ts" in out and "cases:     20 (train 14, val 3, test 3)" in out and "jump (6)" in out
    assert cli.main(["data", "info", "my.csv", "--label-column", "y", "--json", "--split-dir", str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class_names"] == ["0", "1"] and info["channels"] == 2
    assert cli.main(["data", "info", "my.npz", "--json", "--split-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["length"] == 8
    assert cli.main(["data", "info", "my.csv", "--split-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "my.csv" in err and "no 'label' or 'target' column" in err and "'y'" in err
    assert cli.main(["data", "info", "uea/Toy", "--label-column", "y"]) == 2
    assert "options for data files" in capsys.readouterr().err


def test_names_still_mean_datasets():
    with pytest.raises(ValueError, match="unknown dataset name 'cifar10'"):
        load("cifar10")
    with pytest.raises(ValueError, match="options for data files"):
        load("synthetic/first5", label_column="y")
    assert load("synthetic/first5", length=40, num_samples=10).name == "synthetic/first5"


# ------------------------------------------------------------------------------------------------ malformed files

def npz_file(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def csv_file(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


GOOD_ROWS = "".join(f"{s},{t},{s + t / 10},{'ab'[s % 2]}\n" for s in range(5) for t in range(3))


@pytest.mark.parametrize("make, message", [
    (lambda p: npz_file(p, X=np.array([np.ones(3), np.ones(4)], dtype=object), y=np.array([0, 1])),
     "array 'X' is an object array .*'lengths'.*long CSV/Parquet table"),
    (lambda p: npz_file(p, X=np.ones((4, 3, 1))), r"no array 'y' .*missing labels.*present: X"),
    (lambda p: npz_file(p, X=np.ones((4, 3)), y=np.arange(4), labels=np.arange(4)), "unexpected array.*labels"),
    (lambda p: npz_file(p, X=np.ones((4, 3)), y=np.arange(4), X_test=np.ones((2, 3))), "has X_test but no y_test"),
    (lambda p: npz_file(p, X=np.arange(12.0).reshape(4, 3), y=np.arange(3)), "y has 3 entries but X has 4 series"),
    (lambda p: npz_file(p, X=np.where(np.eye(4, 3) > 0, np.nan, 1.0) + np.arange(4)[:, None], y=np.arange(4) % 2),
     r"X\[0\] has a missing value \(NaN\) at step 0"),
    (lambda p: npz_file(p, X=np.ones((4, 3)), y=np.arange(4), lengths=np.array([3, 0, 2, 1])),
     r"lengths\[1\] is 0; expected a length from 1 to 3"),
    (lambda p: npz_file(p, X=np.arange(12.0).reshape(4, 3), y=np.array([1.0, 2.0, np.inf, 3.0])),
     r"y\[2\] .* is not finite"),
    (lambda p: csv_file(p, "series,time,x,y\n" + GOOD_ROWS),
     r"no 'label' or 'target' column .* the columns are 'series', 'time', 'x', 'y'"),
    (lambda p: csv_file(p, "series,time,x,label\n" + GOOD_ROWS + "3,1,0.5,b\n"),
     r"bad.csv, line 17: series '3' has a second row for time '1' \(the first is line 12\)"),
    (lambda p: csv_file(p, "series,time,x,label\n" + GOOD_ROWS.replace("2,2,2.2,a", "2,2,2.2,b")),
     r"bad.csv, line 10: series '2' has label 'b' here but 'a' in line 8; expected one label per series"),
    (lambda p: csv_file(p, "series,time,x,label\n" + GOOD_ROWS.replace("1,1,1.1,b", "1,1,one,b")),
     r"bad.csv, line 6: column 'x': expected a number.*'one'"),
    (lambda p: csv_file(p, "series,time,x,label\n" + GOOD_ROWS.replace("1,1,1.1,b", "1,1,1.1,")),
     r"bad.csv, line 6: column 'label' is empty for series '1'.*missing label"),
    (lambda p: csv_file(p, "series,time,x,label\n" + GOOD_ROWS.replace("1,1,1.1,b", "1,1,1.1")),
     r"bad.csv, line 6: 3 fields; expected 4"),
    (lambda p: csv_file(p, "series,time,x,label\n" + GOOD_ROWS.replace("1,1,1.1,b", "1,,1.1,b")),
     r"bad.csv, line 6: column 'time' is empty"),
    (lambda p: csv_file(p, "series,time,x,label,target\n" + GOOD_ROWS.replace("\n", ",1\n")),
     "both a 'label' and a 'target' column"),
    (lambda p: csv_file(p, "series,time,label\n1,1,a\n"), "no channel columns"),
    (lambda p: csv_file(p, ""), "file is empty"),
    (lambda p: csv_file(p, "series,time,x,label\n"), "no data rows"),
    (lambda p: csv_file(p, "series,time,x,label\n" + GOOD_ROWS.replace(",a\n", ",b\n")), "at least two classes"),
])
def test_malformed_file_names_the_file_and_the_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataFormatError, match=message) as info:
        load_file(path, split_dir=tmp_path)
    assert str(path) in str(info.value)


def test_malformed_parquet_names_the_file_and_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cases, labels = toy(6)
    write_parquet(tmp_path / "nolabel.parquet", cases, labels)
    with pytest.raises(DataFormatError, match=r"nolabel.parquet: no label column 'y'; the columns are 'series'"):
        load_file(tmp_path / "nolabel.parquet", label_column="y", split_dir=tmp_path)

    def table(name="bad", **overrides):
        columns = {"series": [1, 1, 2, 2, 3, 3], "time": [0, 1, 0, 1, 0, 1], "x": [0.0, 1, 2, 3, 4, 5],
                   "label": ["a", "a", "b", "b", "a", "a"]} | overrides
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table(columns), path)
        return path

    cases = [
        (table("text", x=["0", "1", "2", "three", "4", "5"]),
         r"text.parquet, row 4: column 'x': expected a number.*'three'"),
        (table("twice", time=[0, 1, 0, 0, 0, 1]), r"twice.parquet, row 4: series '2' has a second row for time"),
        (table("nolab", label=["a", "a", "b", None, "a", "a"]), r"nolab.parquet, row 4: column 'label' is empty"),
        (table("null", x=[0.0, 1, 2, None, 4, 5]), r"null.parquet, row 4: column 'x' is missing"),
    ]
    for path, message in cases:
        with pytest.raises(DataFormatError, match=message):
            load_file(path, split_dir=tmp_path)
    ok = load_file(table(series=[1.0, 1, 2, 2, 3, 3], label=[1, 1, 2, 2, 1, 1]), split_dir=tmp_path)
    assert ok.class_names == ("1", "2")


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_file(tmp_path / "x.parquet")


def test_file_kind_and_option_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="nothere.csv: no such file"):
        load_file(tmp_path / "nothere.csv")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(DataFormatError, match=r"data.xlsx: unknown kind of data file '.xlsx'"):
        load_file(tmp_path / "data.xlsx")
    X = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "ok.npz", X=X, y=np.arange(4) % 2)
    with pytest.raises(ValueError, match="label_column: options for CSV and Parquet tables"):
        load_file(tmp_path / "ok.npz", label_column="y")
    unlabelled = tmp_path / "unlabelled.ts"
    unlabelled.write_text("@problemName U\n@classLabel false\n@data\n1,2,3\n4,5,6\n7,8,9\n")
    with pytest.raises(DataFormatError, match=r"unlabelled.ts: has no class labels or targets"):
        load_file(unlabelled)
    broken = tmp_path / "broken.ts"
    broken.write_text("@problemName B\n@classLabel true a b\n@data\n1,2,3:a\n1,x,3:b\n")
    with pytest.raises(DataFormatError, match=r"broken.ts, line 5: .*expected a number"):
        load_file(broken)
    np.savez(tmp_path / "with_test.npz", X=X, y=np.arange(4) % 2, X_test=X, y_test=np.arange(4) % 2)
    with pytest.raises(DataFormatError, match="already holds a test set"):
        load_file(tmp_path / "with_test.npz", test_path=tmp_path / "ok.npz")
