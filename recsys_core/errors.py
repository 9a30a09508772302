"""Named exceptions. Every user-facing failure is a :class:`RecScopeError` whose message is one
clear paragraph: which file/id, what is wrong, what to do. The CLI maps them to exit code 2 and
the app shows them without a traceback."""

from __future__ import annotations


class RecScopeError(Exception):
    """Base class of all errors caused by the user's input or request."""


class DataError(RecScopeError):
    """A file cannot be ingested (unreadable, empty, missing id columns, ...).

    Args:
        message (str): What is wrong and what to do.
        file (str, optional): Display name of the file (never used as a path).
        row (int, optional): 1-based row number when the problem is on one row.
        column (str, optional): The offending column.
    """

    def __init__(self, message: str, file: str | None = None, row: int | None = None,
                 column: str | None = None):
        self.file, self.row, self.column = file, row, column
        where = []
        if file:
            where.append(f"file '{file}'")
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column '{column}'")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class ModelLoadError(RecScopeError):
    """A run directory or model file is missing, corrupt, or not safetensors + JSON."""


class TrainingError(RecScopeError):
    """Training cannot continue (e.g. non-finite loss)."""
