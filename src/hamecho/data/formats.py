"""Parsers for the time-series file formats used by the archives, written from the format descriptions.

Every reader returns ``(X, y)``:

* ``X`` is a list with one ``float32`` array of shape ``(length, channels)`` per case, in file order;
  missing values (``?`` or ``NaN`` in the file) are ``NaN``.
* ``y`` is a NumPy array: class labels as strings (``dtype=str``, as written in the file), or ``float64`` regression
  targets.

A malformed file raises :class:`~hamecho.data.errors.DataFormatError` naming the file, the line and what was
expected. Nothing is silently dropped or truncated, with one documented exception: in the fixed-width formats
(UCR ``.tsv`` and ARFF) unequal-length series are right-padded with missing values up to the widest series, so
trailing time steps that are missing in *every* channel are taken as padding and removed. ``.ts`` stores ragged
series directly, so there every value is kept.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from .errors import DataFormatError

__all__ = ["read_ts", "read_arff", "read_ucr_tsv", "read_idx"]

_MISSING = {"?", "nan", "NaN", "NAN"}
_BOOL = {"true": True, "false": False}


def _floats(tokens: list[str], path, lineno: int, what: str) -> np.ndarray:
    """Convert text tokens to float64; ``?``/``NaN`` become NaN. Raise naming the first bad token."""
    cleaned = ["nan" if t.strip() in _MISSING else t for t in tokens]
    try:
        return np.array(cleaned, dtype=np.float64)
    except ValueError:
        for i, tok in enumerate(cleaned):
            try:
                float(tok)
            except ValueError:
                raise DataFormatError(
                    path, lineno, f"{what}, value {i + 1}: expected a number or '?', got {tok.strip()!r}"
                ) from None
        raise  # pragma: no cover - numpy and float() disagree


def _strip_padding(values: np.ndarray) -> np.ndarray:
    """Drop trailing time steps that are NaN in every channel (end padding of fixed-width formats)."""
    valid = ~np.isnan(values).all(axis=1)
    if valid.all():
        return values
    last = np.flatnonzero(valid)
    return values[: last[-1] + 1] if last.size else values[:0]


def _numeric_label(token: str) -> str:
    """UCR labels are numbers, sometimes written with a decimal point: '1.0000e+00' and '1' are the same class."""
    try:
        value = float(token)
    except ValueError:
        return token
    if np.isfinite(value) and value == int(value):
        return str(int(value))
    return token


# ----------------------------------------------------------------------------------------------------------------
# .ts (UEA / UCR, sktime / aeon)
# ----------------------------------------------------------------------------------------------------------------

_TS_KEYS = {
    "problemname", "timestamps", "missing", "univariate", "dimension", "dimensions", "equallength",
    "serieslength", "classlabel", "targetlabel", "data",
}


def _split_outside_parens(line: str, sep: str) -> list[str]:
    if "(" not in line:
        return line.split(sep)
    fields, depth, start = [], 0, 0
    for i, ch in enumerate(line):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            fields.append(line[start:i])
            start = i + 1
    fields.append(line[start:])
    return fields


_TUPLE = re.compile(r"\(([^()]*)\)")


def _ts_bool(path, lineno, key, value) -> bool:
    word = value.split()[0].lower() if value.split() else ""
    if word not in _BOOL:
        raise DataFormatError(path, lineno, f"@{key}: expected 'true' or 'false', got {value!r}")
    return _BOOL[word]


def _ts_int(path, lineno, key, value) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise DataFormatError(path, lineno, f"@{key}: expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise DataFormatError(path, lineno, f"@{key}: expected a positive integer, got {value!r}")
    return number


def read_ts(path: str | Path, *, return_timestamps: bool = False):
    """Read a ``.ts`` file (UEA/UCR archive format, as written by sktime/aeon).

    Supports every header key (case-insensitive), ``#``/``%`` comment lines, blank lines anywhere,
    ``@timeStamps true`` data (``(time,value)`` tuples; channels split on ``:`` only outside parentheses), ``?`` and
    ``NaN`` missing values, unequal lengths, class labels (``@classLabel true l1 l2 …``; labels are checked against
    the declared list) and regression targets (``@targetLabel true``; the last field is a float).

    Returns ``(X, y)``; with ``return_timestamps=True`` returns ``(X, y, T)`` where ``T[i]`` is a list (one entry
    per channel) of the timestamp strings of case ``i`` (``None`` for files without timestamps).
    If the file has no label column ``y`` is an empty array.
    """
    path = Path(path)
    header: dict[str, str] = {}
    header_line: dict[str, int] = {}
    in_data = False
    X: list[np.ndarray] = []
    labels: list[str] = []
    stamps: list = []
    dims = None
    labelled = regression = stamped = False
    class_labels: list[str] | None = None
    series_length = None
    equal_length = None
    lineno = 0
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line[0] in "#%":
                continue
            if not in_data:
                if line[0] != "@":
                    raise DataFormatError(
                        path, lineno, f"expected a '@key value' header line or '@data', got {line[:40]!r}"
                    )
                key, _, value = line[1:].partition(" ")
                if "\t" in key:
                    key, _, rest = key.partition("\t")
                    value = rest + " " + value
                key = key.lower()
                value = value.strip()
                if key not in _TS_KEYS:
                    raise DataFormatError(
                        path, lineno, f"unknown header key '@{key}'; expected one of "
                        + ", ".join(f"@{k}" for k in sorted(_TS_KEYS)),
                    )
                if key == "data":
                    in_data = True
                    stamped = "timestamps" in header and _ts_bool(path, lineno, "timeStamps", header["timestamps"])
                    if "classlabel" in header:
                        words = header["classlabel"].split()
                        labelled = _ts_bool(path, header_line["classlabel"], "classLabel", header["classlabel"])
                        if labelled:
                            class_labels = words[1:]
                            if not class_labels:
                                raise DataFormatError(
                                    path, header_line["classlabel"],
                                    "@classLabel true: expected the list of class labels after 'true'"
                                )
                    if "targetlabel" in header and _ts_bool(path, header_line["targetlabel"], "targetLabel",
                                                            header["targetlabel"]):
                        if labelled:
                            raise DataFormatError(path, lineno,
                                                  "both @classLabel true and @targetLabel true; expected one of them")
                        labelled = regression = True
                    for k in ("dimension", "dimensions"):
                        if k in header:
                            dims = _ts_int(path, header_line[k], k, header[k])
                    if "univariate" in header and _ts_bool(path, header_line["univariate"], "univariate",
                                                           header["univariate"]):
                        if dims not in (None, 1):
                            raise DataFormatError(path, lineno, f"@univariate true but @dimensions {dims}")
                        dims = 1
                    if "serieslength" in header:
                        series_length = _ts_int(path, header_line["serieslength"], "seriesLength",
                                                header["serieslength"])
                    if "equallength" in header:
                        equal_length = _ts_bool(path, header_line["equallength"], "equalLength", header["equallength"])
                    if "missing" in header:
                        _ts_bool(path, header_line["missing"], "missing", header["missing"])
                    continue
                header[key] = value
                header_line[key] = lineno
                continue

            # ---- a data line: one case
            if line[0] == "@":
                raise DataFormatError(path, lineno,
                                      f"header line {line.split()[0]!r} after '@data'; expected a data line")
            fields = _split_outside_parens(line, ":") if stamped else line.split(":")
            expected = None if dims is None else dims + labelled
            if (expected is not None and len(fields) != expected) or (labelled and len(fields) < 2):
                tail = " and a " + ("target" if regression else "class label") if labelled else ""
                if expected is None:
                    expected = 2
                raise DataFormatError(
                    path, lineno, f"expected {expected - labelled} dimension(s){tail} separated by ':', "
                    f"found {len(fields)} field(s)",
                )
            if labelled:
                label = fields.pop().strip()
                if regression:
                    try:
                        labels.append(float(label))
                    except ValueError:
                        raise DataFormatError(path, lineno,
                                              f"expected a numeric regression target, got {label!r}") from None
                else:
                    if label not in class_labels:
                        raise DataFormatError(
                            path, lineno,
                            f"class label {label!r} is not declared in @classLabel ({' '.join(class_labels)})"
                        )
                    labels.append(label)
            if dims is None:
                dims = len(fields)
            channels, case_stamps = [], []
            for c, field in enumerate(fields, start=1):
                field = field.strip()
                if not field:
                    raise DataFormatError(path, lineno, f"dimension {c} is empty; expected comma-separated values")
                if stamped:
                    tuples = _TUPLE.findall(field)
                    leftover = _TUPLE.sub("", field).replace(",", "").strip()
                    if not tuples or leftover:
                        raise DataFormatError(path, lineno,
                                              f"dimension {c}: expected '(time,value)' tuples separated by ','")
                    times, tokens = [], []
                    for t in tuples:
                        time, comma, value = t.rpartition(",")
                        if not comma:
                            raise DataFormatError(path, lineno, f"dimension {c}: expected '(time,value)', got ({t})")
                        times.append(time.strip())
                        tokens.append(value)
                    case_stamps.append(times)
                else:
                    tokens = field.split(",")
                channels.append(_floats(tokens, path, lineno, f"dimension {c}"))
            lengths = {len(ch) for ch in channels}
            if len(lengths) != 1:
                raise DataFormatError(
                    path, lineno, "all dimensions of a case must have the same length; found lengths "
                    + ", ".join(str(len(ch)) for ch in channels),
                )
            length = lengths.pop()
            if series_length is not None and equal_length is not False and length != series_length:
                raise DataFormatError(path, lineno,
                                      f"expected {series_length} values per dimension (@seriesLength), found {length}")
            X.append(np.stack(channels, axis=1).astype(np.float32))
            stamps.append(case_stamps if stamped else None)

    if lineno == 0 or (not in_data and not header):
        raise DataFormatError(path, max(lineno, 1), "file is empty; expected a header ('@problemName …') and '@data'")
    if not in_data:
        raise DataFormatError(path, lineno, "reached the end of the file without an '@data' line")
    if not X:
        raise DataFormatError(path, lineno, "no cases after '@data'; expected at least one data line")
    y = np.array(labels, dtype=np.float64 if regression else str)
    if return_timestamps:
        return X, y, stamps
    return X, y


# ----------------------------------------------------------------------------------------------------------------
# ARFF (Weka; the UEA multivariate variant uses one relational attribute)
# ----------------------------------------------------------------------------------------------------------------

_NUMERIC_TYPES = {"numeric", "real", "integer"}


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _parse_attribute(path, lineno, rest: str):
    """Split '@attribute <name> <type>' (name may be quoted) into (name, type-text)."""
    rest = rest.strip()
    if rest[:1] in "'\"":
        end = rest.find(rest[0], 1)
        if end < 0:
            raise DataFormatError(path, lineno, "unterminated quoted attribute name")
        name, kind = rest[1:end], rest[end + 1:].strip()
    else:
        name, _, kind = rest.partition(" ")
        if "\t" in name:
            name, _, k2 = name.partition("\t")
            kind = k2 + " " + kind
        kind = kind.strip()
    if not name or not kind:
        raise DataFormatError(path, lineno, "expected '@attribute <name> <type>'")
    return name, kind


def read_arff(path: str | Path):
    """Read a time-series ARFF file, univariate or multivariate (relational attribute).

    * Univariate: one numeric attribute per time step, then the class attribute.
    * Multivariate: one ``relational`` attribute whose inner numeric attributes are the time steps, ``@end``, then the
      class attribute. Each data line is ``'c0v0,…\\nc1v0,…',label`` where ``\\n`` is the two characters
      backslash, n.

    The last attribute is the target: nominal (``{a,b,…}``) gives class labels, numeric gives regression targets.
    ``?`` is a missing value (NaN). Trailing time steps missing in every channel are padding and removed.
    """
    path = Path(path)
    attributes: list[tuple[str, str]] = []   # top-level (name, type)
    inner: list[str] | None = None           # inner attribute names of the open relational attribute
    relational_width = None
    in_relational = False
    in_data = False
    saw_relation = False
    X: list[np.ndarray] = []
    labels: list = []
    nominal = None
    regression = False
    lineno = 0
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line[0] == "%":
                continue
            if not in_data:
                if line[0] != "@":
                    raise DataFormatError(path, lineno,
                                          f"expected '@relation', '@attribute', '@end' or '@data', got {line[:40]!r}")
                keyword, _, rest = line[1:].partition(" ")
                keyword = keyword.lower()
                if keyword == "relation":
                    saw_relation = True
                elif keyword == "attribute":
                    name, kind = _parse_attribute(path, lineno, rest)
                    low = kind.lower()
                    if in_relational:
                        if low not in _NUMERIC_TYPES:
                            raise DataFormatError(path, lineno,
                                                  f"relational attribute members must be numeric, got {kind!r}")
                        inner.append(name)
                    elif low == "relational":
                        if attributes or inner is not None:
                            raise DataFormatError(path, lineno,
                                                  "expected the relational attribute to come first and only once")
                        in_relational, inner = True, []
                    elif low in _NUMERIC_TYPES or low.startswith("{"):
                        attributes.append((name, kind))
                    else:
                        raise DataFormatError(path, lineno,
                                              f"unsupported attribute type {kind!r}; expected numeric, a nominal "
                                              f"{{…}} set or relational")
                elif keyword == "end":
                    if not in_relational:
                        raise DataFormatError(path, lineno, "'@end' without an open relational attribute")
                    in_relational = False
                    relational_width = len(inner)
                    if relational_width == 0:
                        raise DataFormatError(path, lineno, "relational attribute has no numeric members")
                elif keyword == "data":
                    if in_relational:
                        raise DataFormatError(path, lineno, "'@data' before '@end' of the relational attribute")
                    if not attributes:
                        raise DataFormatError(path, lineno, "no target attribute declared before '@data'")
                    target_kind = attributes[-1][1]
                    if target_kind.startswith("{"):
                        if not target_kind.endswith("}"):
                            raise DataFormatError(path, lineno,
                                                  f"nominal attribute {attributes[-1][0]!r} is not closed with '}}'")
                        nominal = [_unquote(v) for v in target_kind[1:-1].split(",") if v.strip()]
                    else:
                        regression = True
                    for name, kind in attributes[:-1]:
                        if kind.lower() not in _NUMERIC_TYPES:
                            raise DataFormatError(path, lineno,
                                                  f"attribute {name!r}: only the last attribute may be nominal")
                    if inner is None and len(attributes) < 2:
                        raise DataFormatError(path, lineno, "expected at least one numeric attribute before the target")
                    in_data = True
                else:
                    raise DataFormatError(path, lineno,
                                          f"unknown keyword '@{keyword}'; expected @relation, @attribute, @end or "
                                          "@data")
                continue

            if line[0] == "{":
                raise DataFormatError(path, lineno,
                                      "sparse ARFF data lines are not supported; expected dense comma-separated values")
            if inner is not None:  # multivariate
                quote = line[0]
                end = line.rfind(quote)
                if quote not in "'\"" or end <= 0:
                    raise DataFormatError(path, lineno,
                                          "expected a quoted relational value ('…\\n…') followed by ',label'")
                body, rest = line[1:end], line[end + 1:].strip()
                if not rest.startswith(","):
                    raise DataFormatError(path, lineno, "expected ',label' after the quoted relational value")
                rest = rest[1:].split(",")
                if len(rest) != len(attributes):
                    raise DataFormatError(path, lineno,
                                          f"expected {len(attributes)} value(s) after the relational value, found "
                                          f"{len(rest)}")
                label = rest[-1]
                channels = []
                for c, chunk in enumerate(body.split("\\n"), start=1):
                    tokens = chunk.split(",")
                    if len(tokens) != relational_width:
                        raise DataFormatError(path, lineno,
                                              f"channel {c}: expected {relational_width} values (one per relational "
                                              f"member), found {len(tokens)}")
                    channels.append(_floats(tokens, path, lineno, f"channel {c}"))
                if X and len(channels) != X[0].shape[1]:
                    raise DataFormatError(path, lineno,
                                          f"expected {X[0].shape[1]} channel(s) like the first case, found "
                                          f"{len(channels)}")
                values = np.stack(channels, axis=1)
            else:
                tokens = line.split(",")
                if len(tokens) != len(attributes):
                    raise DataFormatError(path, lineno,
                                          f"expected {len(attributes)} comma-separated values (time steps and "
                                          f"target), found {len(tokens)}")
                label = tokens[-1]
                values = _floats(tokens[:-1], path, lineno, "time step")[:, None]
            label = _unquote(label)
            if regression:
                try:
                    labels.append(float(label))
                except ValueError:
                    raise DataFormatError(path, lineno, f"expected a numeric target, got {label!r}") from None
            else:
                if label not in nominal:
                    raise DataFormatError(path, lineno,
                                          f"class label {label!r} is not one of the declared values "
                                          f"{{{','.join(nominal)}}}")
                labels.append(label)
            X.append(_strip_padding(values).astype(np.float32))

    if lineno == 0 or (not saw_relation and not attributes and inner is None and not in_data):
        raise DataFormatError(path, max(lineno, 1),
                              "file is empty; expected '@relation', '@attribute' lines and '@data'")
    if not in_data:
        raise DataFormatError(path, lineno, "reached the end of the file without an '@data' line")
    if not X:
        raise DataFormatError(path, lineno, "no cases after '@data'; expected at least one data line")
    return X, np.array(labels, dtype=np.float64 if regression else str)


# ----------------------------------------------------------------------------------------------------------------
# UCR 2018 .tsv
# ----------------------------------------------------------------------------------------------------------------

def read_ucr_tsv(path: str | Path):
    """Read a UCR 2018 ``.tsv`` file: no header, one case per line, tab-separated, class label first.

    Labels are numbers; they are returned as strings in canonical form (``'1.0'`` and ``'1'`` both become
    ``'1'``; non-integral labels are kept as written). Unequal-length series are right-padded with ``NaN`` in the
    archive; that padding is removed, so each case has its own length. ``NaN`` inside a series stays ``NaN``.
    Parsing uses NumPy's C reader on the whole file (a 20 MB file takes about a second) and falls back to a line by
    line check only to report an error precisely.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    lines = text.splitlines()
    numbered = [(i, ln) for i, ln in enumerate(lines, start=1) if ln.strip()]
    if not numbered:
        raise DataFormatError(path, 1, "file is empty; expected one case per line: label<TAB>value<TAB>value…")
    body = [ln for _, ln in numbered]
    try:
        table = np.loadtxt(body, delimiter="\t", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        table = None
    if table is None or table.shape[1] < 2:
        width = None
        for lineno, ln in numbered:
            tokens = ln.split("\t")
            if len(tokens) < 2:
                raise DataFormatError(path, lineno, "expected a label and at least one value separated by tabs")
            if width is None:
                width = len(tokens)
            elif len(tokens) != width:
                raise DataFormatError(path, lineno,
                                      f"expected {width} tab-separated fields like the first line (label + "
                                      f"{width - 1} values), found {len(tokens)}")
            try:
                float(tokens[0])
            except ValueError:
                raise DataFormatError(path, lineno, "expected a numeric class label in the first column, "
                                      f"got {tokens[0]!r}") from None
            _floats(tokens[1:], path, lineno, "column")
        raise DataFormatError(path, None, "could not be parsed as tab-separated numbers")  # pragma: no cover
    raw_labels = [ln.split("\t", 1)[0].strip() for ln in body]
    for (lineno, _), lab, num in zip(numbered, raw_labels, table[:, 0]):
        if np.isnan(num):
            raise DataFormatError(path, lineno, f"expected a class label in the first column, got {lab!r}")
    values = table[:, 1:].astype(np.float32)
    finite = ~np.isnan(values)
    lengths = np.where(finite.any(axis=1), values.shape[1] - np.argmax(finite[:, ::-1], axis=1), 0)
    X = [values[i, : lengths[i], None] for i in range(len(values))]
    y = np.array([_numeric_label(lab) for lab in raw_labels], dtype=str)
    return X, y


# ----------------------------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST), usually gzip'd
# ----------------------------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx_array(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataFormatError(path, None,
                              f"could not be read as {'gzip' if opener is gzip.open else 'a file'}: {error}") from None
    if len(data) < 4:
        raise DataFormatError(path, 0, "file too short; expected a 4-byte IDX magic number", where="byte")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataFormatError(path, 0,
                              f"bad IDX magic number {data[:4].hex()}; expected 0000 <type> <ndim>", where="byte")
    ndim = data[3]
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise DataFormatError(path, 4, f"expected {ndim} big-endian uint32 dimension sizes", where="byte")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise DataFormatError(path, offset, f"expected {expected} bytes of data for shape {shape}, "
                              f"found {len(data) - offset}", where="byte")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def read_idx(path: str | Path, labels_path: str | Path | None = None):
    """Read IDX files (optionally gzip'd, as in MNIST/Fashion-MNIST).

    With one path, return the stored array (e.g. ``uint8`` of shape ``(60000, 28, 28)``).
    With an image file and a label file, return ``(X, y)`` like the other readers: ``X`` a list of ``float32``
    arrays of shape ``(H*W, 1)`` (each image read pixel by pixel, row-major, scaled to ``[0, 1]``) and ``y`` the labels
    as strings. A malformed file raises :class:`DataFormatError` naming the file and the byte offset.
    """
    images = _read_idx_array(Path(path))
    if labels_path is None:
        return images
    labels = _read_idx_array(Path(labels_path))
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataFormatError(labels_path, 4,
                              f"expected {images.shape[0]} labels (one per image in {path}), found shape "
                              f"{labels.shape}", where="byte")
    flat = (images.reshape(images.shape[0], -1, 1).astype(np.float32) / 255.0)
    return list(flat), labels.astype(str)


# The archive formats by file suffix: the one map the dataset registry and your own files read with.
ARCHIVE_READERS = {".ts": read_ts, ".arff": read_arff, ".tsv": read_ucr_tsv}
