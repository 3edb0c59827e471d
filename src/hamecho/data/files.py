"""``load_file(path)``: a researcher's own data file, through the same protocol as the archive datasets.

The kind of file is told by its suffix:

* ``.npz`` (``numpy.savez``): ``X`` of shape ``(N, L, C)`` or ``(N, L)`` and ``y`` (one label or target per series,
  as for :func:`~hamecho.data.from_arrays`); optionally ``X_test`` and ``y_test`` (a test set of your own), and
  ``lengths`` / ``lengths_test``, ``(N,)`` integers, for unequal-length series stored padded: series ``i`` is
  ``X[i, :lengths[i]]`` and what follows is padding. Object arrays are refused, since reading them needs pickle,
  which can run code: store unequal-length series padded with ``lengths``, or as a long table. Any other array
  name is an error, so that nothing in the file is ignored.
* ``.csv`` and ``.parquet`` / ``.pq``: a long table, one row per series and time step, with the columns ``series``
  (an id, numbers or text), ``time`` (numbers or, in CSV, ISO 8601 date-times), one column per channel, and
  ``label`` (classification) or ``target`` (regression: one number per series; several columns through
  ``target_column=[...]``). Other names through ``series_column``, ``time_column``, ``label_column``,
  ``target_column``; by default every other column is a channel, or name them with ``channel_columns``. Rows may
  come in any order: each series is its rows sorted by time, and series are ordered by id (numerically when every
  id is a number). ``time`` only orders the rows; its values are not an input (add them as a channel, or use
  ``time_channel=True`` for ``t = i / L``). An empty cell, ``NaN`` or ``?`` in a channel is a missing value (see
  ``missing``). Parquet is read with ``pyarrow`` (``pip install pyarrow`` or ``pip install 'hamecho[files]'``).
* ``.ts``, ``.arff``, ``.tsv``: one file in an archive format, read by :mod:`hamecho.data.formats`.

A single file has no official test split, so its series get the seeded 70/15/15 split stored as an index file, as
the archives; a test set of your own comes from ``X_test``/``y_test`` in an ``.npz`` or from a second file
(``test_path``), and is then kept as the test set (see :mod:`hamecho.data.arrays`). Missing values are an error
(``missing="error"``) except in the archive formats, which mark them on purpose (``?``) and where the archive
protocol interpolates them (``missing="interpolate"``); ``missing`` overrides either default.

Every problem raises :class:`~hamecho.data.errors.DataFormatError` naming the file, the line (CSV) or row
(Parquet) where it applies, and what is wrong: a missing label or target column (listing the columns present), a
missing label, a non-numeric value, a duplicated (series, time) row, a series whose label changes between rows,
NaN, ragged or object arrays, array counts that disagree. Nothing is silently dropped; exact duplicate series are
dropped by the protocol and counted in ``DatasetSplits.source``.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from .arrays import MISSING_RULES, SeriesSet, as_cases, as_targets, run_protocol
from .errors import DataFormatError, DataNotFoundError
from .formats import ARCHIVE_READERS
from .processing import DEFAULT_SEED, DatasetSplits

__all__ = ["FILE_SUFFIXES", "load_file", "looks_like_path"]

ARCHIVE_SUFFIXES = tuple(ARCHIVE_READERS)
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
FILE_SUFFIXES = (".npz", *TABLE_SUFFIXES, *ARCHIVE_SUFFIXES)
NPZ_KEYS = ("X", "y", "X_test", "y_test", "lengths", "lengths_test")
_MISSING_TEXT = {"", "?", "nan", "NaN", "NAN", "NA", "null"}
_TABLE_DEFAULTS = {"series_column": "series", "time_column": "time", "label_column": None, "target_column": None,
                   "channel_columns": None}


def looks_like_path(name) -> bool:
    """Whether ``load(name)`` means a file: a ``Path``, or a string ending in a known suffix or starting with
    ``.``, ``/`` or ``~`` (``"ucr/EthanolLevel"`` stays a dataset name)."""
    if isinstance(name, Path):
        return True
    text = str(name).strip()
    return text.lower().endswith(FILE_SUFFIXES) or text.startswith((".", "/", "~", "\\"))


# ------------------------------------------------------------------------------------------------------- .npz

def _read_npz(path: Path) -> tuple[SeriesSet, SeriesSet | None]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataFormatError(path, None, f"not a readable .npz file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(path, None, "holds a single array; expected an .npz archive with arrays X and y "
                                          "(numpy.savez(path, X=X, y=y))")
    with archive:
        keys = list(archive.files)
        present = ", ".join(keys) or "none"
        unknown = [k for k in keys if k not in NPZ_KEYS]
        if unknown:
            raise DataFormatError(path, None, f"unexpected array(s) {', '.join(unknown)}; expected X and y, "
                                              f"optionally X_test, y_test, lengths, lengths_test (present: {present})")
        if "X" not in keys:
            raise DataFormatError(path, None, f"no array 'X' (the series, (N, L, C)); present: {present}")
        if "y" not in keys:
            raise DataFormatError(path, None, "no array 'y' (one class label or regression target per series; "
                                              f"missing labels); present: {present}")
        if ("X_test" in keys) != ("y_test" in keys):
            given, absent = ("X_test", "y_test") if "X_test" in keys else ("y_test", "X_test")
            raise DataFormatError(path, None, f"has {given} but no {absent}; expected both (a test set) or neither")
        if "lengths_test" in keys and "X_test" not in keys:
            raise DataFormatError(path, None, "has lengths_test but no X_test")
        arrays = {}
        for key in keys:
            try:
                arrays[key] = archive[key]
            except ValueError:
                raise DataFormatError(
                    path, None, f"array {key!r} is an object array (ragged series or mixed values); it cannot be "
                    "read without pickle, which is refused because unpickling can run code. Store unequal-length "
                    "series padded to a common length with each series' length in 'lengths' (and 'lengths_test'), "
                    "or as a long CSV/Parquet table; store labels as integers or strings",
                ) from None
    parts = []
    for x_key, y_key, l_key in (("X", "y", "lengths"), ("X_test", "y_test", "lengths_test")):
        if x_key not in arrays:
            parts.append(None)
            continue
        X = _unpad(path, arrays[x_key], arrays.get(l_key), x_key, l_key)
        cases = as_cases(X, x_key, path)
        y = as_targets(arrays[y_key], len(cases), y_key, path, series_what=x_key)
        parts.append(SeriesSet(cases, y, [f"{x_key}[{i}]" for i in range(len(cases))], y_key))
    return parts[0], parts[1]


def _unpad(path, X: np.ndarray, lengths, x_key: str, l_key: str):
    """``X[i, :lengths[i]]`` for each series when ``lengths`` is given, else ``X`` unchanged."""
    if lengths is None:
        return X
    if X.ndim not in (2, 3):
        raise DataFormatError(path, None, f"{x_key} has shape {X.shape}; with {l_key} expected (N, L, C) or (N, L)")
    if lengths.ndim != 1 or lengths.shape[0] != X.shape[0] or lengths.dtype.kind not in "iu":
        raise DataFormatError(path, None, f"{l_key} has shape {lengths.shape} and dtype {lengths.dtype}; expected "
                                          f"{X.shape[0]} integers, the length of each series of {x_key}")
    bad = np.flatnonzero((lengths < 1) | (lengths > X.shape[1]))
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(path, None, f"{l_key}[{i}] is {lengths[i]}; expected a length from 1 to "
                                          f"{X.shape[1]} (the padded length of {x_key})")
    X = X if X.ndim == 3 else X[:, :, None]
    return [X[i, :n] for i, n in enumerate(lengths.tolist())]


# ------------------------------------------------------------------------------------------------ long tables

def _read_csv(path: Path) -> tuple[dict[str, list], np.ndarray, str]:
    """Columns as lists of text, the file line of each data row, and ``"line"``."""
    header: list[str] | None = None
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [cell.strip() for cell in row]
                    blank = [i + 1 for i, cell in enumerate(header) if not cell]
                    if blank:
                        raise DataFormatError(path, reader.line_num, f"header column {blank[0]} has no name")
                    repeated = sorted({c for c in header if header.count(c) > 1})
                    if repeated:
                        raise DataFormatError(path, reader.line_num, f"column {repeated[0]!r} appears twice in "
                                                                     "the header")
                    columns: list[list[str]] = [[] for _ in header]
                    continue
                if len(row) != len(header):
                    raise DataFormatError(path, reader.line_num, f"{len(row)} fields; expected {len(header)}, one "
                                                                 f"per header column ({', '.join(header)})")
                for column, cell in zip(columns, row):
                    column.append(cell)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise DataFormatError(path, None, "is not UTF-8 text; expected a CSV file") from None
    except csv.Error as error:
        raise DataFormatError(path, None, f"not a readable CSV file ({error})") from None
    if header is None:
        raise DataFormatError(path, None, "file is empty; expected a header row (series, time, the channels, "
                                          "label or target) and one row per series and time step")
    if not lines:
        raise DataFormatError(path, None, "no data rows after the header; expected one row per series and time "
                                          "step")
    return dict(zip(header, columns)), np.asarray(lines), "line"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet files needs pyarrow: pip install pyarrow "
                          "(or pip install 'hamecho[files]')") from None
    return pa, pq


def _read_parquet(path: Path) -> tuple[dict[str, object], np.ndarray, str]:
    """Columns (numbers and times as NumPy arrays, nulls as NaN; text as lists), the row numbers, ``"row"``."""
    pa, pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataFormatError(path, None, f"not a readable Parquet file ({error})") from None
    if table.num_rows == 0:
        raise DataFormatError(path, None, "has no rows; expected one row per series and time step")
    columns: dict[str, object] = {}
    for name in table.column_names:
        column = table.column(name)
        kind = column.type
        if name in columns:
            raise DataFormatError(path, None, f"column {name!r} appears twice")
        if pa.types.is_temporal(kind) and not pa.types.is_time(kind):
            columns[name] = column.cast(pa.int64()).to_numpy(zero_copy_only=False)     # order is what matters
        elif pa.types.is_integer(kind) and column.null_count == 0:
            columns[name] = column.to_numpy(zero_copy_only=False)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
                or pa.types.is_decimal(kind):
            columns[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            columns[name] = column.to_pylist()
    return columns, np.arange(1, table.num_rows + 1), "row"


def _texts(values) -> list[str | None]:
    """Ids or labels as text: whole-number floats as integers; ``None`` where missing."""
    out: list[str | None] = []
    for value in (values.tolist() if isinstance(values, np.ndarray) else values):
        if value is None or isinstance(value, float) and not np.isfinite(value):
            out.append(None)
        elif isinstance(value, float):
            out.append(str(int(value)) if value == int(value) else repr(value))
        else:
            text = str(value).strip()
            out.append(text if text not in _MISSING_TEXT - {"NA", "null"} else None)
    return out


def _plain(value):
    """A NumPy scalar or one-entry array as a plain Python value (for messages)."""
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _is_date(token: str) -> bool:
    try:
        np.datetime64(token, "ns")
    except ValueError:
        return False
    return True


def _numbers(path, name: str, values, rows, where: str, *, allow_missing: bool, dates: bool = False) -> np.ndarray:
    """A column as float64 (int64 nanoseconds for date-times when ``dates``); raises at the first value that is not
    a number, at an infinite value, and at a missing value unless ``allow_missing`` (then NaN)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        array = values if values.dtype.kind == "f" or dates else values.astype(np.float64)
    else:
        text = ["nan" if v is None or str(v).strip() in _MISSING_TEXT else str(v).strip() for v in values]
        try:
            array = np.array(text, dtype=np.float64)
        except ValueError:
            readable = (lambda t: _is_number(t) or _is_date(t)) if dates else _is_number
            bad = next((i for i, token in enumerate(text) if not readable(token)), None)
            if bad is None and not dates:
                raise  # pragma: no cover - numpy and float() disagree
            if bad is not None:
                also = " or an ISO 8601 date-time" if dates else ""
                raise DataFormatError(path, int(rows[bad]), f"column {name!r}: expected a number{also}, got "
                                                            f"{values[bad]!r}", where=where) from None
            if any(t == "nan" for t in text):
                i = text.index("nan")
                raise DataFormatError(path, int(rows[i]), f"column {name!r} is empty (missing); expected a "
                                                          "date-time", where=where) from None
            array = np.array(text, dtype="datetime64[ns]").view(np.int64)
    if array.dtype.kind == "f":
        bad = np.flatnonzero(np.isinf(array) if allow_missing else ~np.isfinite(array))
        if bad.size:
            i = int(bad[0])
            problem = "is infinite" if np.isinf(array[i]) else "is empty (missing)"
            raise DataFormatError(path, int(rows[i]), f"column {name!r} {problem}; expected a number", where=where)
    return array


def _long_table(path: Path, columns: dict, rows: np.ndarray, where: str, *, series_column: str, time_column: str,
                label_column: str | None, target_column, channel_columns, missing: str) -> tuple[SeriesSet, str]:
    """One series per id: its rows sorted by time, channels stacked to ``(L_i, C)``; one label/target per series."""
    present = ", ".join(repr(c) for c in columns)

    def need(column: str, role: str):
        if column not in columns:
            raise DataFormatError(path, None, f"no {role} column {column!r}; the columns are {present}")

    if label_column is not None and target_column is not None:
        raise ValueError("give label_column (classification) or target_column (regression), not both")
    if label_column is not None:
        task, y_columns = "classification", [label_column]
    elif target_column is not None:
        task, y_columns = "regression", [target_column] if isinstance(target_column, str) else list(target_column)
    elif "label" in columns and "target" in columns:
        raise DataFormatError(path, None, "has both a 'label' and a 'target' column; say which one is the output "
                                          "with label_column='label' (classification) or target_column='target' "
                                          "(regression)")
    elif "label" in columns or "target" in columns:
        task, y_columns = ("classification", ["label"]) if "label" in columns else ("regression", ["target"])
    else:
        raise DataFormatError(path, None, f"no 'label' or 'target' column (the class label or regression target of "
                                          f"each series); the columns are {present}; name yours with label_column= "
                                          "or target_column= (--label-column / --target-column)")
    role = "label" if task == "classification" else "target"
    for column in y_columns:
        need(column, role)
    need(series_column, "series (id)")
    need(time_column, "time")
    reserved = [series_column, time_column, *y_columns]
    if channel_columns is None:
        channel_columns = [c for c in columns if c not in reserved]
        if not channel_columns:
            raise DataFormatError(path, None, f"no channel columns; expected at least one column besides "
                                              f"{', '.join(reserved)} (the columns are {present})")
    else:
        channel_columns = [channel_columns] if isinstance(channel_columns, str) else list(channel_columns)
        for column in channel_columns:
            need(column, "channel")
            if column in reserved:
                raise ValueError(f"channel column {column!r} is also the series, time, label or target column")

    ids = _texts(columns[series_column])
    blank = [i for i, v in enumerate(ids) if v is None]
    if blank:
        raise DataFormatError(path, int(rows[blank[0]]), f"column {series_column!r} is empty; expected the id of "
                                                         "the series this row belongs to", where=where)
    keys = np.array(ids)
    try:                                 # numeric ids in numeric order, unless two spellings name one number
        numbers = np.array([float(v) for v in ids])
        if len(np.unique(numbers)) == len(np.unique(keys)):
            keys = numbers
    except ValueError:
        pass
    _, first, code = np.unique(keys, return_index=True, return_inverse=True)
    series_ids = [ids[i] for i in first]
    time = _numbers(path, time_column, columns[time_column], rows, where, allow_missing=False, dates=True)
    order = np.lexsort((time, code))
    code_sorted, time_sorted = code[order], time[order]
    repeated = np.flatnonzero((code_sorted[1:] == code_sorted[:-1]) & (time_sorted[1:] == time_sorted[:-1]))
    if repeated.size:
        j = int(repeated[0])
        a, b = sorted((int(rows[order[j]]), int(rows[order[j + 1]])))
        step = _plain(columns[time_column][order[j]])
        raise DataFormatError(path, b, f"series {series_ids[code_sorted[j]]!r} has a second row for time {step!r} "
                                       f"(the first is {where} {a}); expected one row per series and time step",
                              where=where)

    values = np.stack([_numbers(path, c, columns[c], rows, where, allow_missing=True) for c in channel_columns], 1)
    if missing == "error":
        holes = np.flatnonzero(np.isnan(values).any(axis=1))
        if holes.size:
            i = int(holes[0])
            column = channel_columns[int(np.flatnonzero(np.isnan(values[i]))[0])]
            raise DataFormatError(path, int(rows[i]), f"column {column!r} is missing (empty, NaN or ?) for series "
                                                      f"{ids[i]!r}; fill it, or pass missing='interpolate' to fill "
                                                      "missing values by the archive rule (linear interpolation "
                                                      "along time)", where=where)

    starts = np.flatnonzero(np.r_[True, code_sorted[1:] != code_sorted[:-1]])
    if task == "classification":
        labels = _texts(columns[y_columns[0]])
        blank = [i for i, v in enumerate(labels) if v is None]
        if blank:
            raise DataFormatError(path, int(rows[blank[0]]), f"column {y_columns[0]!r} is empty for series "
                                                             f"{ids[blank[0]]!r}; expected its class label (missing "
                                                             "label)", where=where)
        y_rows = np.array(labels)[order]
    else:
        y_rows = np.stack([_numbers(path, c, columns[c], rows, where, allow_missing=False) for c in y_columns],
                          1)[order]
    group_first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    differs = y_rows != y_rows[group_first]
    if differs.ndim > 1:
        differs = differs.any(axis=1)
    if differs.any():
        j = int(np.flatnonzero(differs)[0])
        first_row, row = int(rows[order[group_first[j]]]), int(rows[order[j]])
        shown = (lambda k: str(y_rows[k])) if task == "classification" else (lambda k: _plain(y_rows[k]))
        raise DataFormatError(path, row, f"series {series_ids[code_sorted[j]]!r} has {role} {shown(j)!r} here but "
                                         f"{shown(group_first[j])!r} in {where} {first_row}; expected one {role} per "
                                         "series", where=where)
    y = y_rows[starts]
    if task == "regression" and len(y_columns) == 1:
        y = y[:, 0]
    cases = np.split(values[order].astype(np.float32), starts[1:])
    what = f"column {y_columns[0]!r}" if len(y_columns) == 1 else f"columns {y_columns}"
    return SeriesSet(list(cases), y, [f"series {s!r}" for s in series_ids], what), task


# ------------------------------------------------------------------------------------------------ one entry

def _read_any(path: Path, table_options: dict, missing: str | None):
    """Read one file of any kind: ``(train, test or None, column task or None, default missing rule)``."""
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise DataNotFoundError(f"{path} is a folder; expected a data file ({', '.join(FILE_SUFFIXES)}). An "
                                "archive folder <Name>_TRAIN/_TEST is loaded by name: uea/<Name> with --data-dir")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataFormatError(path, None, f"unknown kind of data file {suffix or '(no suffix)'!r}; expected one of "
                                          f"{', '.join(FILE_SUFFIXES)}")
    if suffix not in TABLE_SUFFIXES:
        given = [k for k, v in table_options.items() if v != _TABLE_DEFAULTS[k]]
        if given:
            raise ValueError(f"{', '.join(given)}: options for CSV and Parquet tables, not {suffix} files ({path})")
    if suffix == ".npz":
        train, test = _read_npz(path)
        return train, test, None, "error"
    if suffix in TABLE_SUFFIXES:
        columns, rows, where = _read_csv(path) if suffix == ".csv" else _read_parquet(path)
        train, task = _long_table(path, columns, rows, where, missing=missing or "error", **table_options)
        return train, None, task, "error"
    X, y = ARCHIVE_READERS[suffix](path)
    if len(y) != len(X):
        raise DataFormatError(path, None, "has no class labels or targets (for .ts: '@classLabel false' or no "
                                          "@targetLabel); expected a labelled dataset (missing labels)")
    return SeriesSet(X, y, [f"case {i + 1}" for i in range(len(X))], "the labels"), None, None, "interpolate"


def load_file(path: str | Path, *, test_path: str | Path | None = None, name: str | None = None,
              task: str | None = None, seed: int = DEFAULT_SEED, split_dir: str | Path | None = None,
              length: int | None = None, time_channel: bool = False, num_samples: int | None = None,
              missing: str | None = None, dedup: bool = True, series_column: str = "series",
              time_column: str = "time", label_column: str | None = None, target_column: str | list[str] | None = None,
              channel_columns: list[str] | None = None) -> DatasetSplits:
    """Load your own data file (``.npz``, ``.csv``, ``.parquet``/``.pq``, ``.ts``, ``.arff``, ``.tsv``; see the
    module docstring for each layout) as a :class:`DatasetSplits`, by the archive protocol.

    ``test_path``: a second file (any of these kinds) holding the test set; the first file is then split 70:15
    into train/validation. ``name`` names the dataset and its split index file (default: the file name).
    ``task``, ``seed``, ``split_dir``, ``length``, ``time_channel``, ``num_samples``, ``dedup``: as for
    :func:`~hamecho.data.from_arrays` and :func:`~hamecho.data.load`. ``missing``: ``"error"`` or
    ``"interpolate"`` (default: ``"interpolate"`` for ``.ts``/``.arff``/``.tsv``, ``"error"`` otherwise).
    ``series_column``, ``time_column``, ``label_column``, ``target_column``, ``channel_columns``: the column names
    of a CSV/Parquet table (an error for other kinds of file).

    Raises :class:`DataNotFoundError` for a missing file and :class:`DataFormatError` (naming the file, and the
    line or row) for anything wrong in it.
    """
    if missing is not None and missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {MISSING_RULES}, got {missing!r}")
    table_options = {"series_column": series_column, "time_column": time_column, "label_column": label_column,
                     "target_column": target_column, "channel_columns": channel_columns}
    path = Path(path).expanduser()
    train, test, column_task, default_missing = _read_any(path, table_options, missing)
    source = f"file {path}"
    if test_path is not None:
        test_path = Path(test_path).expanduser()
        if test is not None:
            raise DataFormatError(path, None, "already holds a test set (X_test, y_test), and "
                                              f"test_path={str(test_path)!r} gives another; expected one of them")
        test, extra, test_task, _ = _read_any(test_path, table_options, missing)
        if extra is not None:
            raise DataFormatError(test_path, None, "holds a test set of its own (X_test, y_test); a test file "
                                                   "holds only X and y")
        if column_task is not None and test_task != column_task:
            raise DataFormatError(test_path, None, f"has a {'label' if test_task == 'classification' else 'target'} "
                                                   f"column but {path.name} has a "
                                                   f"{'label' if column_task == 'classification' else 'target'} "
                                                   "column; expected the same")
        test.names = [f"{test_path.name}: {n}" for n in test.names]
        test.what = f"{test_path.name}: {test.what}"
        source += f", test file {test_path}"
    return run_protocol(train, test, name=name or path.name, task=task or column_task, seed=seed,
                        split_dir=split_dir, length=length, time_channel=time_channel, num_samples=num_samples,
                        missing=missing or default_missing, dedup=dedup, source=source, path=path)
