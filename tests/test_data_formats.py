"""Parsers: every format feature on small fixture files, exact values, and clear errors on malformed input."""
from __future__ import annotations

import gzip
import struct
import textwrap

import numpy as np
import pytest

from hamecho.data import DataFormatError, read_arff, read_idx, read_ts, read_ucr_tsv

NAN = np.nan


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def assert_case(actual, expected):
    expected = np.asarray(expected, dtype=np.float32)
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)   # NaN compare equal here


# ------------------------------------------------------------------------------------------------------- .ts

MULTI_TS = """
% a tsml-style comment
# an aeon-style comment
@problemName Toy
@timeStamps false
@MISSING true
@univariate false
@dimensions 2
@equalLength false
@classLabel true Standing Running 3

@data

1.0,2.5,?:4,5e-1,-6:Standing
# comment inside the data
7,8:NaN,10:3
"""


def test_ts_multivariate_missing_unequal_comments(tmp_path):
    X, y = read_ts(write(tmp_path, "toy.ts", MULTI_TS))
    assert len(X) == 2
    assert_case(X[0], [[1.0, 4.0], [2.5, 0.5], [NAN, -6.0]])
    assert_case(X[1], [[7, NAN], [8, 10]])
    assert y.tolist() == ["Standing", "3"]


def test_ts_univariate_header_case_insensitive_dims_inferred(tmp_path):
    path = write(tmp_path, "u.ts", """
        @ProblemName U
        @TIMESTAMPS FALSE
        @Univariate True
        @equallength true
        @SeriesLength 3
        @classlabel true 1 2
        @DATA
        0.5,1.5,2.5:1
        -1,-2,-3:2
    """)
    X, y = read_ts(path)
    assert_case(X[0], [[0.5], [1.5], [2.5]])
    assert_case(X[1], [[-1], [-2], [-3]])
    assert y.tolist() == ["1", "2"]


def test_ts_regression_target(tmp_path):
    path = write(tmp_path, "r.ts", """
        @problemName Reg
        @univariate false
        @targetLabel true
        @data
        1,2,3:4,5,6:0.25
        7,8,9:1,2,3:-12.5
    """)
    X, y = read_ts(path)
    assert y.dtype == np.float64 and y.tolist() == [0.25, -12.5]
    assert_case(X[1], [[7, 1], [8, 2], [9, 3]])


def test_ts_timestamps(tmp_path):
    path = write(tmp_path, "t.ts", """
        @problemName Stamped
        @timeStamps true
        @univariate true
        @classLabel true a b
        @data
        (2007-01-01 00:00:00,241.97),(2007-01-01 00:01:00,?),(2007-01-01 00:02:00,1e2):a
        (0,1),(2,3):b
    """)
    X, y, T = read_ts(path, return_timestamps=True)
    assert_case(X[0], [[241.97], [NAN], [100.0]])
    assert_case(X[1], [[1.0], [3.0]])
    assert T[0] == [["2007-01-01 00:00:00", "2007-01-01 00:01:00", "2007-01-01 00:02:00"]]
    assert T[1] == [["0", "2"]]
    assert y.tolist() == ["a", "b"]


def test_ts_unlabelled(tmp_path):
    X, y = read_ts(write(tmp_path, "n.ts", "@problemName N\n@classLabel false\n@data\n1,2:3,4\n"))
    assert_case(X[0], [[1, 3], [2, 4]])
    assert y.size == 0


TS_HEADER = "@problemName Bad\n@dimensions 2\n@classLabel true A B\n@data\n"


@pytest.mark.parametrize("body, line, expect", [
    ("1,2,3:4,5,6:A\n1,2,3:4,5", 6, "expected 2 dimension"),                        # truncated line (label lost)
    ("1,2,3:4,5,6:A\n1,2,3:", 6, "expected 2 dimension(s)"),                          # truncated mid-case
    ("1,2,3:4,5,6:A\n1,2,3,", 6, "expected 2 dimension(s) and a class label"),    # truncated in first channel
    ("1,2,3:4,5,6:A\n1,2:3,4:5,6:B", 6, "expected 2 dimension"),                    # wrong dimension count
    ("1,2,x3:4,5,6:A", 5, "dimension 1, value 3: expected a number or '?', got 'x3'"),  # bad number
    ("1,2,3:4,5,6:C", 5, "class label 'C' is not declared in @classLabel"),         # label not declared
    ("1,2,3:4,5:A", 5, "same length"),                                              # ragged channels in a case
])
def test_ts_malformed_data(tmp_path, body, line, expect):
    path = write(tmp_path, "bad.ts", TS_HEADER + body + "\n")
    with pytest.raises(DataFormatError) as info:
        read_ts(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}:" in message and expect in message, message
    assert info.value.line == line


@pytest.mark.parametrize("text, line, expect", [
    ("", 1, "file is empty"),
    ("# only a comment\n\n", 2, "file is empty"),
    ("@problemName X\n@classLabel true a\n1,2:a\n", 3, "expected a '@key value' header line or '@data'"),
    ("@problemName X\n@classLabel true a\n", 2, "without an '@data' line"),
    ("@problemName X\n@colour blue\n@data\n1:a\n", 2, "unknown header key '@colour'"),
    ("@problemName X\n@classLabel true\n@data\n1:a\n", 2, "expected the list of class labels"),
    ("@problemName X\n@univariate maybe\n@data\n1\n", 2, "expected 'true' or 'false'"),
    ("@problemName X\n@dimensions two\n@data\n1\n", 2, "expected a positive integer"),
    ("@problemName X\n@seriesLength 3\n@equalLength true\n@data\n1,2\n", 5, "expected 3 values per dimension"),
    ("@problemName X\n@targetLabel true\n@data\n1,2:high\n", 4, "expected a numeric regression target"),
    ("@problemName X\n@data\n\n", 3, "no cases after '@data'"),
    ("@problemName X\n@timeStamps true\n@data\n(1,2),3\n", 4, "expected '(time,value)' tuples"),
])
def test_ts_malformed_header(tmp_path, text, line, expect):
    path = tmp_path / "bad.ts"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_ts(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}:" in message and expect in message, message


def test_data_format_error_is_value_error():
    assert issubclass(DataFormatError, ValueError)


# ------------------------------------------------------------------------------------------------------- ARFF

UNI_ARFF = """
% comment
@RELATION 'GunPointToy'

@attribute att0 numeric
@attribute att1 NUMERIC
@ATTRIBUTE att2 real
@attribute target {1,2}
@data
0.1,-0.2,?,1
1,2,3,2
4,?,?,1
"""


def test_arff_univariate_missing_and_padding(tmp_path):
    X, y = read_arff(write(tmp_path, "u.arff", UNI_ARFF))
    assert_case(X[0], [[0.1], [-0.2]])          # trailing '?' is padding: removed
    assert_case(X[1], [[1], [2], [3]])
    assert_case(X[2], [[4]])
    assert y.tolist() == ["1", "2", "1"]


REL_ARFF = r"""
@relation 'BasicMotionsToy'
@attribute relationalAtt relational
@attribute att0 numeric
@attribute att1 numeric
@attribute att2 numeric
@end relationalAtt
@attribute activity {Standing,'Running',Walking}
@data
'1,2,3\n4,5,6',Standing
'0.5,?,-1\n7,8,9',Running
'1,2,?\n3,4,?',Walking
"""


def test_arff_relational_multivariate(tmp_path):
    X, y = read_arff(write(tmp_path, "m.arff", REL_ARFF))
    assert_case(X[0], [[1, 4], [2, 5], [3, 6]])
    assert_case(X[1], [[0.5, 7], [NAN, 8], [-1, 9]])
    assert_case(X[2], [[1, 3], [2, 4]])
    assert y.tolist() == ["Standing", "Running", "Walking"]


def test_arff_regression_target(tmp_path):
    path = write(tmp_path, "r.arff", "@relation r\n@attribute a0 numeric\n@attribute a1 numeric\n"
                 "@attribute target numeric\n@data\n1,2,0.5\n3,4,-2\n")
    X, y = read_arff(path)
    assert y.dtype == np.float64 and y.tolist() == [0.5, -2.0]
    assert_case(X[1], [[3], [4]])


@pytest.mark.parametrize("text, line, expect", [
    ("", 1, "file is empty"),
    ("@relation r\n@attribute a0 numeric\n@attribute t {a,b}\n", 3, "without an '@data' line"),
    ("@relation r\n@attribute a0 numeric\n@attribute t {a,b}\n@data\n1,a\n1,2,a\n", 6,
     "expected 2 comma-separated values"),
    ("@relation r\n@attribute a0 numeric\n@attribute t {a,b}\n@data\n1,a\n1", 6, "expected 2 comma-separated values"),
    ("@relation r\n@attribute a0 numeric\n@attribute t {a,b}\n@data\nx,a\n", 5, "expected a number or '?', got 'x'"),
    ("@relation r\n@attribute a0 numeric\n@attribute t {a,b}\n@data\n1,c\n", 5, "class label 'c' is not one of"),
    ("@relation r\n@attribute a0 string\n@data\n", 2, "unsupported attribute type"),
    ("@relation r\n@colour red\n", 2, "unknown keyword '@colour'"),
    ("@relation r\n@attribute R relational\n@attribute a0 numeric\n@attribute a1 numeric\n@end R\n"
     "@attribute t {a}\n@data\n'1,2\\n3,4',a\n'1,2\\n3',a\n", 9, "channel 2: expected 2 values"),
    ("@relation r\n@attribute R relational\n@attribute a0 numeric\n@end R\n"
     "@attribute t {a}\n@data\n'1\\n3',a\n'1',a\n", 8, "expected 2 channel(s)"),
    ("@relation r\n@attribute R relational\n@attribute a0 numeric\n@end R\n"
     "@attribute t {a}\n@data\n'1\\n3\n", 7, "expected a quoted relational value"),
])
def test_arff_malformed(tmp_path, text, line, expect):
    path = tmp_path / "bad.arff"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_arff(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}:" in message and expect in message, message


# ------------------------------------------------------------------------------------------------------- UCR .tsv

def test_ucr_tsv_labels_nan_padding_and_inner_nan(tmp_path):
    path = tmp_path / "X_TRAIN.tsv"
    path.write_text("1\t0.5\t1.5\t2.5\t3.5\n"
                    "-1\t1\tNaN\t3\tNaN\n"         # inner NaN kept, trailing NaN padding dropped
                    "2.0000000e+00\t4\t5\tNaN\tNaN\n", encoding="utf-8")
    X, y = read_ucr_tsv(path)
    assert_case(X[0], [[0.5], [1.5], [2.5], [3.5]])
    assert_case(X[1], [[1], [NAN], [3]])
    assert_case(X[2], [[4], [5]])
    assert y.tolist() == ["1", "-1", "2"]


@pytest.mark.parametrize("text, line, expect", [
    ("", 1, "file is empty"),
    ("1\t2\t3\n1\t2\n", 2, "expected 3 tab-separated fields"),
    ("1\t2\t3\n1\t2\tx\n", 2, "expected a number or '?', got 'x'"),
    ("1\t2\t3\nA\t2\t3\n", 2, "expected a numeric class label"),
    ("1\t2\t3\n\n1 2 3\n", 3, "expected a label and at least one value"),
])
def test_ucr_tsv_malformed(tmp_path, text, line, expect):
    path = tmp_path / "bad.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_ucr_tsv(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}:" in message and expect in message, message


# ------------------------------------------------------------------------------------------------------- IDX

def write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_images_and_labels(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    labels = np.array([7, 3], dtype=np.uint8)
    write_idx(tmp_path / "img.gz", images)
    write_idx(tmp_path / "lab.gz", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "img.gz"), images)
    X, y = read_idx(tmp_path / "img.gz", tmp_path / "lab.gz")
    assert len(X) == 2 and X[1].shape == (12, 1) and X[1].dtype == np.float32
    np.testing.assert_allclose(X[1][:, 0], images[1].reshape(-1) / 255.0, rtol=1e-6)
    assert y.tolist() == ["7", "3"]


def test_idx_truncated_and_bad_magic(tmp_path):
    with gzip.open(tmp_path / "short.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 2, 2) + bytes(5))
    with pytest.raises(DataFormatError, match=r"short\.gz, byte 16: expected 8 bytes of data"):
        read_idx(tmp_path / "short.gz")
    with gzip.open(tmp_path / "magic.gz", "wb") as handle:
        handle.write(b"\x1f\x8b\x08\x00" + bytes(8))
    with pytest.raises(DataFormatError, match=r"magic\.gz, byte 0: bad IDX magic"):
        read_idx(tmp_path / "magic.gz")


def test_ucr_tsv_20mb_parses_in_seconds(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(1000, 1751)).astype(np.float32)
    labels = rng.integers(1, 5, size=(1000, 1))
    path = tmp_path / "big.tsv"
    np.savetxt(path, np.hstack([labels, rows]), delimiter="\t", fmt="%.7e")
    assert path.stat().st_size > 20e6
    import time
    start = time.perf_counter()
    X, y = read_ucr_tsv(path)
    elapsed = time.perf_counter() - start
    assert len(X) == 1000 and X[0].shape == (1751, 1)
    assert elapsed < 10, elapsed
