"""CSV output that is safe to open in a spreadsheet.

Spreadsheet programs execute a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` as a
formula (and some treat a leading tab or carriage return the same way), so an item title such as
``=HYPERLINK("http://evil", "click")`` in a downloaded file becomes a live link or worse. Every
text cell that starts with one of those characters is prefixed with a single quote, which makes
the spreadsheet show it as text (OWASP "CSV injection" guidance). Numbers are never changed: a
numeric column is written as is, and a text cell that is a plain number (``"-1.5"``, ``"+3"``,
``"2e-4"``) is not a formula and stays exactly as it is, so ids such as ``"-5"`` round-trip.
"""

from __future__ import annotations

import csv
import io
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

#: Leading characters that make a spreadsheet evaluate a cell.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def is_plain_number(text: str) -> bool:
    """``True`` when ``text`` is a decimal number such as ``-1.5``, ``+3`` or ``2e-4``."""
    return _NUMBER.fullmatch(text) is not None


def sanitize_cell(value: Any) -> Any:
    """Neutralise one cell: text starting with a formula character gets a leading ``'``.

    Non-string values (numbers, ``None``, ``NaN``) and strings that are plain numbers are
    returned unchanged.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not is_plain_number(value):
        return "'" + value
    return value


def sanitize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names are neutralised.

    Numeric, boolean and datetime columns are not touched; only columns that can hold strings
    (object, string and categorical dtypes) are mapped cell by cell.
    """
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        dtype = series.dtype
        if (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
                or isinstance(dtype, pd.CategoricalDtype)):
            out[col] = series.astype(object).map(sanitize_cell).astype(object)
    out.columns = [sanitize_cell(str(c)) for c in out.columns]
    return out


def to_csv_string(frame: pd.DataFrame) -> str:
    """The neutralised CSV text of ``frame`` (no index), e.g. for a download button.

    Every text cell is quoted: with minimal quoting a bare carriage return inside a cell is
    written unquoted, and a spreadsheet would start a new row there, so ``"x\r=1+1"`` would put
    an unneutralised formula at the start of a cell.
    """
    buffer = io.StringIO()
    sanitize_frame(frame).to_csv(buffer, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return buffer.getvalue()


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` as a neutralised CSV file, atomically (temp file + :func:`os.replace`).

    Args:
        frame (pandas.DataFrame): The table to write (no index is written).
        path (str or PathLike): Destination file; its folder is created if needed.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = to_csv_string(frame)
    # A named temp file (not mkstemp) so the result gets the usual umask permissions.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
