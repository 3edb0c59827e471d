"""Exceptions raised by the data layer."""
from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file does not follow its format.

    The message names the file, the line (or byte offset for binary files) and what was expected there.
    ``path``, ``line`` and ``reason`` are kept as attributes for programmatic use.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str, *, where: str = "line"):
        self.path = str(path)
        self.line = line
        self.reason = reason
        location = f"{self.path}" if line is None else f"{self.path}, {where} {line}"
        super().__init__(f"{location}: {reason}")


class DataInputError(ValueError):
    """Arrays given to :func:`~hamecho.data.from_arrays` do not fit the protocol (shapes, labels, missing values).

    The message says which array (and which series, step or label) is wrong and what was expected. When the arrays
    came from a file, :class:`DataFormatError` (which names the file) is raised instead.
    """


class DataNotFoundError(FileNotFoundError, ValueError):
    """A dataset could not be found in any of the places searched.

    The message lists every place that was tried and how to provide the data. It is also a ``ValueError``
    so that the command line reports it as one clear line.
    """
