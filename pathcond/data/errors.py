"""Errors specific to reading dataset files."""

from __future__ import annotations

from pathcond.errors import DatasetNotFoundError


class DatasetFormatError(DatasetNotFoundError):
    """A dataset file exists but is truncated, corrupted or not in the expected layout.

    It subclasses :class:`~pathcond.errors.DatasetNotFoundError` so that callers handling
    "the data is not usable" need only one ``except`` clause. The message names the file.
    """
