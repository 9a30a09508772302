"""Reading raw tabular files: sources, encodings, delimiters and header rows.

A *source* is either a filesystem path or a ``(display_name, data)`` pair where ``data`` is
``bytes`` or a file-like object (e.g. a Streamlit upload). The display name of a pair is only
shown in messages, never opened. Reading happens in two steps so the caller can decide which
columns hold ids (read as exact strings) after seeing the header: :func:`sniff_table` detects
format, encoding, delimiter and header from the bytes, :func:`read_table` parses the whole file
and :func:`iter_table` parses it a block of rows at a time (large interaction files).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pandas as pd

from ..errors import DataError
from .columns import is_known_column_name
from .movielens import movielens_layout

Source = str | os.PathLike | tuple[str, bytes | IO]

#: Candidate delimiters in tie-break order (``::`` first: it also contains ``:``).
DELIMITERS = ("::", "\t", ",", ";", "|")
#: Tokens that mean "no value" in an id or attribute cell (compared lower-case).
NULL_TOKENS = frozenset({"", "nan", "null", "none", "na", "n/a", "<na>", "nil"})

_EXTENSION_DELIMITER = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".psv": "|"}
_BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook is one); export the sheet as CSV",
    b"\x1f\x8b": "gzip-compressed; decompress it first",
    b"%PDF": "a PDF document",
    b"SQLite format 3": "an SQLite database; export the table as CSV",
    b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook; export the sheet as CSV",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
}
_PARQUET_MAGIC = b"PAR1"
_SAMPLE_BYTES = 1 << 16
_SAMPLE_LINES = 200
#: Refuse wider files up front: detection and attribute handling cost time per column, and
#: no interactions or metadata file needs this many (drop unused columns instead).
MAX_COLUMNS = 512
_CHUNK = 1 << 24


@dataclass
class SniffedTable:
    """What was learnt about a file before parsing it fully.

    Attributes:
        name (str): Display name (never a path to open).
        format (str): ``"parquet"`` or ``"delimited"``.
        columns (list[str]): Column names; ``column_1`` ... for files without a header row.
        header (bool): Whether the first line is a header row.
        encoding (str, optional): Text encoding used (``None`` for Parquet).
        delimiter (str, optional): Field separator (``None`` for Parquet or single-column files).
        sample (pandas.DataFrame): Up to 200 first data rows as strings, for column detection.
        notes (list[str]): Facts worth a warning (e.g. an encoding fallback).
        layout (str, optional): A recognised MovieLens layout (e.g. ``"movielens u.item"``);
            header-less files of a known layout get its documented column names.
    """

    name: str
    format: str
    columns: list[str]
    header: bool
    encoding: str | None
    delimiter: str | None
    sample: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    layout: str | None = None
    _data: bytes | None = field(default=None, repr=False)  # UTF-8 text, no BOM
    _raw: bytes | None = field(default=None, repr=False)


@dataclass
class RawTable:
    """A fully parsed file before any cleaning.

    Attributes:
        frame (pandas.DataFrame): One row per data row; id columns as strings.
        sniffed (SniffedTable): Detection results.
        rows_read (int): Data rows found, including rows skipped as ragged.
        ragged_lines (list[int]): File line numbers of rows skipped for having more fields than
            the header.
    """

    frame: pd.DataFrame
    sniffed: SniffedTable
    rows_read: int
    ragged_lines: list[int]


def source_name(source: Source) -> str:
    """Display name of a source."""
    if isinstance(source, tuple):
        return str(source[0])
    return os.fspath(source)


def sniff_table(source: Source, *, role: str, max_rows: int) -> SniffedTable:
    """Detect the format, encoding, delimiter and header of a file.

    Args:
        source (Source): A path or a ``(display_name, bytes | file-like)`` pair.
        role (str): What the file is for (``"interactions"``, ``"items"`` ...); used in messages.
        max_rows (int): Refuse files with more data rows than this, before parsing them.

    Raises:
        DataError: The file is missing, unreadable, binary, empty, or too large.
    """
    name = source_name(source)
    raw = _open(source, name, role, max_rows)
    if raw[:4] == _PARQUET_MAGIC:
        return _sniff_parquet(name, raw, role, max_rows)
    _reject_binary(raw, name, role)
    data, encoding, notes = _to_utf8(raw, name)
    del raw
    if not data.strip():
        raise DataError(f"the {role} file is empty. Upload a file with a header row and at "
                        "least one data row.", file=name)
    _check_row_limit(data.count(b"\n") + (not data.endswith(b"\n")) - 1, name, role, max_rows)
    head = _head_lines(data)
    delimiter = sniff_delimiter(head, name)
    try:
        sample = _parse_text(("\n".join(head) + "\n").encode(), delimiter, header=False,
                             nrows=_SAMPLE_LINES)
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        raise _unparseable(exc, name) from exc
    # A first line longer than the 64 KB sample is cut: its field count is a lower bound.
    cut = len(data) > _SAMPLE_BYTES and len(data[:_SAMPLE_BYTES].splitlines()) <= 1
    _check_column_limit(sample.shape[1], name, role, at_least=cut)
    header = detect_header(sample)
    if header:
        columns = _unique_names([str(c).strip() for c in sample.iloc[0].tolist()])
        sample = sample.iloc[1:].reset_index(drop=True)
    else:
        columns = [f"column_{j + 1}" for j in range(sample.shape[1])]
    sample.columns = columns
    layout = movielens_layout(role, delimiter, header, columns, sample, name)
    if layout is not None:
        columns = sample.columns = layout[1]
    return SniffedTable(name=name, format="delimited", columns=list(columns), header=header,
                        encoding=encoding, delimiter=delimiter, sample=sample, notes=notes,
                        layout=layout and layout[0], _data=data)


def read_table(sniffed: SniffedTable, string_columns: list[str] | None = None) -> RawTable:
    """Parse a sniffed file completely.

    Args:
        sniffed (SniffedTable): Result of :func:`sniff_table`.
        string_columns (list[str], optional): Columns to read as exact strings (ids); the
            others get pandas' type inference. ``None`` reads every column as strings.
            (default: :obj:`None`)

    Raises:
        DataError: The file cannot be parsed, or it has a header row but no data rows.
    """
    name = sniffed.name
    if sniffed.format == "parquet":
        frame = _read_parquet(sniffed)
        rows_read, ragged = len(frame), []
    else:
        dtype = str if string_columns is None else dict.fromkeys(string_columns, str)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                frame = _parse_text(sniffed._data, sniffed.delimiter, header=sniffed.header,
                                    dtype=dtype, names=sniffed.columns)
            except (pd.errors.ParserError, ValueError, csv.Error) as exc:
                raise _unparseable(exc, name) from exc
        ragged = _ragged_lines(caught)
        rows_read = len(frame) + len(ragged)
    if rows_read == 0:
        raise DataError("the file has a header row but no data rows. Add at least one data "
                        "row below the header.", file=name)
    return RawTable(frame=frame, sniffed=sniffed, rows_read=rows_read, ragged_lines=ragged)


@dataclass
class TableChunk:
    """One block of rows of a file, parsed by :func:`iter_table`.

    Attributes:
        frame (pandas.DataFrame): The rows (id columns as strings), indexed from 0 within the
            chunk.
        start (int): Position of the chunk's first row among all parsed rows (ragged rows
            excluded), so ``start + i`` is row ``i``'s position in :func:`read_table`'s frame.
        ragged_lines (list[int]): File line numbers of rows skipped in this chunk for having
            more fields than the header.
    """

    frame: pd.DataFrame
    start: int
    ragged_lines: list[int]


#: Rows parsed at a time by :func:`iter_table` (bounded memory for files of tens of millions
#: of rows: only one chunk of rows exists as Python strings at a time).
CHUNK_ROWS = 1_000_000


def iter_table(sniffed: SniffedTable, string_columns: list[str] | None = None,
               chunk_rows: int = CHUNK_ROWS) -> Iterator[TableChunk]:
    """Parse a sniffed file a block of rows at a time.

    The chunks, concatenated, are the frame :func:`read_table` returns (same values, same
    dtypes per chunk where pandas' type inference sees the same values), and their ragged
    lines are its ragged lines. Delimited text is parsed by pandas' C parser in chunks;
    Parquet is read a record batch at a time (pyarrow).

    Args:
        sniffed (SniffedTable): Result of :func:`sniff_table`.
        string_columns (list[str], optional): Columns read as exact strings (see
            :func:`read_table`). (default: :obj:`None`, every column)
        chunk_rows (int): Rows per chunk. (default: :data:`CHUNK_ROWS`)

    Raises:
        DataError: The file cannot be parsed.
    """
    chunk_rows = max(1, int(chunk_rows))
    name = sniffed.name
    if sniffed.format == "parquet":
        yield from _iter_parquet(sniffed, chunk_rows)
        return
    dtype = str if string_columns is None else dict.fromkeys(string_columns, str)
    try:
        reader = _parse_text(sniffed._data, sniffed.delimiter, header=sniffed.header,
                             dtype=dtype, names=sniffed.columns, chunksize=chunk_rows)
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        raise _unparseable(exc, name) from exc
    start = 0
    with reader:
        while True:
            # Warnings are caught while parsing only, never while the caller runs.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    frame = next(reader)
                except StopIteration:
                    return
                except (pd.errors.ParserError, ValueError, csv.Error) as exc:
                    raise _unparseable(exc, name) from exc
            yield TableChunk(frame.reset_index(drop=True), start, _ragged_lines(caught))
            start += len(frame)


def _iter_parquet(sniffed: SniffedTable, chunk_rows: int) -> Iterator[TableChunk]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(io.BytesIO(sniffed._raw))
        batches = handle.iter_batches(batch_size=chunk_rows)
        start = 0
        for batch in batches:
            frame = _clean_parquet_frame(batch.to_pandas())
            yield TableChunk(frame, start, [])
            start += len(frame)
    except DataError:
        raise
    except Exception as exc:  # see _sniff_parquet
        raise DataError(f"the Parquet file cannot be read ({_short(exc)}). Re-export it (with "
                        "unique column names), or upload it as CSV.", file=sniffed.name) from exc


def describe_format(sniffed: SniffedTable) -> str:
    """Short format name for reports (``"csv"``, ``"tsv"``, ``"movielens u.item"`` ...)."""
    if sniffed.layout:
        return sniffed.layout
    if sniffed.format == "parquet":
        return "parquet"
    if sniffed.header and {"userId", "movieId"} <= set(sniffed.columns):
        return "movielens ratings.csv"
    if sniffed.header and {"movieId", "title", "genres"} <= set(sniffed.columns):
        return "movielens movies.csv"
    return {"\t": "tsv", ",": "csv", ";": "csv (;)", "|": "pipe-separated",
            "::": "'::'-separated", " ": "whitespace-separated",
            None: "single column"}[sniffed.delimiter]


# ---------------------------------------------------------------------- detection helpers
def sniff_delimiter(lines: list[str], name: str = "") -> str | None:
    """The field separator that splits ``lines`` most consistently.

    Consistency is the share of lines with the most common count (quoted sections ignored).
    Among equally consistent candidates the file extension (``.csv``, ``.tsv``) decides. Returns
    ``None`` for single-column files and ``" "`` for whitespace-separated ones.
    """
    stripped = [re.sub(r'"[^"]*"', '""', line) for line in lines if line.strip()]
    if not stripped:
        return None
    scores = {}
    for cand in DELIMITERS:
        counts = [line.count(cand) for line in stripped]
        mode, hits = Counter(counts).most_common(1)[0]
        if mode > 0:
            scores[cand] = hits / len(counts)
    if scores:
        # Highest consistency; ties go to the extension's delimiter, then DELIMITERS order.
        hinted = _EXTENSION_DELIMITER.get(Path(name).suffix.lower())
        return max(scores, key=lambda c: (scores[c], c == hinted, -DELIMITERS.index(c)))
    if all(len(line.split()) > 1 for line in stripped):
        counts = Counter(len(line.split()) for line in stripped)
        if counts.most_common(1)[0][1] / len(stripped) >= 0.9:
            return " "
    return None


def detect_header(sample: pd.DataFrame) -> bool:
    """Whether the first row of ``sample`` (all strings, no header applied) is a header row.

    Evidence, strongest first: a numeric cell (header names are not numbers); a cell naming a
    known column (``userId``, ``rating`` ...); a non-numeric cell on top of an otherwise numeric
    column; a first-row value repeated further down its column (data repeats, names do not).
    Without evidence a header is assumed, as in most exported tables.
    """
    if sample.empty:
        return False
    first = [str(v).strip() for v in sample.iloc[0].tolist()]
    if any(_is_number(v) for v in first if v):
        return False
    if any(is_known_column_name(v) for v in first if v):
        return True
    rest = sample.iloc[1:]
    for j, value in enumerate(first):
        if not value:
            continue
        col = rest.iloc[:, j].astype(str).str.strip()
        col = col[col != ""]
        if len(col) and pd.to_numeric(col, errors="coerce").notna().mean() >= 0.9:
            return True
    for j, value in enumerate(first):
        if value and (rest.iloc[:, j].astype(str).str.strip() == value).any():
            return False
    return True


# ---------------------------------------------------------------------- internals
def _open(source: Source, name: str, role: str, max_rows: int) -> bytes:
    """The source's bytes, refusing oversized text files before reading them whole."""
    if isinstance(source, tuple):
        if len(source) != 2:
            raise DataError("an uploaded source must be a (display_name, data) pair.", file=name)
        data = source[1]
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        if hasattr(data, "seek"):
            try:
                data.seek(0)
            except (OSError, ValueError):
                pass
        if not hasattr(data, "read"):
            raise DataError(f"unsupported upload of type {type(data).__name__}; pass bytes or "
                            "a binary file-like object.", file=name)
        content = data.read()
        if isinstance(content, str):
            content = content.encode("utf-8")
        return bytes(content)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise DataError(f"the {role} file does not exist. Check the path.", file=name)
    if os.path.isdir(path):
        raise DataError(f"this is a directory, not a {role} file. Pass the file inside it "
                        "(e.g. u.data or ratings.csv).", file=name)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
            if magic != _PARQUET_MAGIC:
                _count_lines_streaming(handle, name, role, max_rows)
            handle.seek(0)
            return handle.read()
    except OSError as exc:
        raise DataError(f"the {role} file cannot be read ({exc.strerror or exc}). Check that "
                        "it exists and that you have permission to read it.", file=name) from exc


def _count_lines_streaming(handle, name: str, role: str, max_rows: int) -> None:
    """Stop reading as soon as the line count passes the limit (never loads huge files)."""
    handle.seek(0)
    lines = 0
    while chunk := handle.read(_CHUNK):
        lines += chunk.count(b"\n")
        if lines - 1 > max_rows:
            _check_row_limit(lines - 1, name, role, max_rows, at_least=True)


def _check_row_limit(rows: int, name: str, role: str, max_rows: int, at_least: bool = False) -> None:
    if rows > max_rows:
        more = "at least " if at_least else ""
        raise DataError(f"the {role} file has {more}{rows:,} rows, more than the limit of "
                        f"{max_rows:,}. Sample or filter it first, or raise the limit "
                        "(max_rows / --max-rows) if this machine has the memory.", file=name)


def _check_column_limit(count: int, name: str, role: str, at_least: bool = False) -> None:
    if count > MAX_COLUMNS:
        more = "at least " if at_least else ""
        raise DataError(f"the {role} file has {more}{count:,} columns, more than the limit of "
                        f"{MAX_COLUMNS:,}. Keep only the columns RecScope uses (ids, rating, "
                        "timestamp, title, text and category columns), or check that the "
                        "delimiter is right.", file=name)


def _reject_binary(raw: bytes, name: str, role: str) -> None:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    for magic, what in _BINARY_MAGIC.items():
        if raw.startswith(magic):
            raise DataError(f"this is not a text table: it looks like {what}. The {role} file "
                            "must be CSV, TSV or Parquet.", file=name)
    head = raw[:_SAMPLE_BYTES]
    control = sum(head.count(bytes([b])) for b in (*range(0, 9), *range(14, 32)))
    if b"\x00" in head or control > 0.01 * max(len(head), 1):
        raise DataError(f"this looks like a binary file, not a text table. The {role} file "
                        "must be CSV, TSV or Parquet (UTF-8 or latin-1 text).", file=name)


def _to_utf8(raw: bytes, name: str) -> tuple[bytes, str, list[str]]:
    """UTF-8 bytes without BOM, the detected encoding, and notes.

    UTF-8 (with or without BOM) is used as is (no copy beyond the BOM strip); UTF-16 with a BOM
    and the 1-byte fallbacks (cp1252 when its 0x80-0x9F characters occur, else latin-1) are
    re-encoded once. Parsing bytes rather than a Python string keeps memory near the file size.
    """
    if raw.startswith(codecs.BOM_UTF8):
        data = raw[len(codecs.BOM_UTF8):]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError("the file starts with a UTF-8 byte-order mark but is not valid "
                            "UTF-8. Re-save it as UTF-8 CSV.", file=name) from exc
        return data, "utf-8-sig", []
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16").encode("utf-8"), "utf-16", []
        except UnicodeDecodeError as exc:
            raise DataError("the file starts with a UTF-16 byte-order mark but is not valid "
                            "UTF-16. Re-save it as UTF-8 CSV.", file=name) from exc
    if _valid_utf8(raw):
        return raw, "utf-8", []
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
    # cp1252 differs from latin-1 only in 0x80-0x9F (curly quotes, euro sign ...).
    encoding = "latin-1"
    if re.search(rb"[\x80-\x9f]", raw):
        try:
            text = raw.decode("cp1252")
            encoding = "cp1252"
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    else:
        text = raw.decode("latin-1")
    note = (f"not valid UTF-8 (first invalid byte on line {line}); decoded as {encoding}. "
            "Check accented characters, or re-save the file as UTF-8.")
    return text.encode("utf-8"), encoding, [note]


def _valid_utf8(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-8, checked a block at a time (no copy of a large file as text)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    try:
        for start in range(0, len(raw), _CHUNK):
            decoder.decode(view[start:start + _CHUNK], final=False)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _head_lines(data: bytes) -> list[str]:
    head = data[:_SAMPLE_BYTES].decode("utf-8", errors="ignore")  # may cut a character
    lines = head.splitlines()
    if len(data) > _SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut
    return [line for line in lines if line.strip()][:_SAMPLE_LINES + 1]


def _parse_text(data: bytes, delimiter: str | None, *, header: bool, dtype=str,
                nrows: int | None = None, names: list[str] | None = None,
                chunksize: int | None = None):
    # With ``names`` the header row (if any) is skipped and our cleaned names are used, so
    # ``dtype`` can be keyed by them and rows longer than the header count as ragged.
    kwargs = dict(header=0 if header else None, names=names, dtype=dtype, encoding="utf-8",
                  keep_default_na=False, skip_blank_lines=True, nrows=nrows, engine="c")
    if delimiter is None:
        # One column: a separator that never occurs keeps each line whole.
        kwargs.update(sep="\x1e", quoting=csv.QUOTE_NONE)
    elif delimiter == " ":
        kwargs.update(sep=r"\s+")
    elif delimiter in ("::", "|"):
        # MovieLens-style files do not quote fields; titles may contain quote characters.
        if delimiter == "::":
            sep = next(c for c in ("\x1f", "\x1d", "\x1c") if c.encode() not in data)
            data = data.replace(b"::", sep.encode())
        else:
            sep = "|"
        kwargs.update(sep=sep, quoting=csv.QUOTE_NONE)
    else:
        kwargs.update(sep=delimiter)
    kwargs["on_bad_lines"] = "skip" if nrows is not None else "warn"
    if chunksize is not None:
        kwargs["chunksize"] = chunksize  # a reader of frames
    return pd.read_csv(io.BytesIO(data), **kwargs)


def _ragged_lines(caught) -> list[int]:
    lines = []
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning):
            lines += [int(m) for m in re.findall(r"Skipping line (\d+)", str(w.message))]
    return lines


def _sniff_parquet(name: str, raw: bytes, role: str, max_rows: int) -> SniffedTable:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(raw))
        rows = meta.metadata.num_rows
        schema = meta.schema_arrow
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"the file starts like Parquet but cannot be read ({_short(exc)}). "
                        "Re-export it, or upload it as CSV.", file=name) from exc
    _check_row_limit(rows, name, role, max_rows)
    if rows == 0:
        raise DataError(f"the Parquet {role} file has no rows. Export a table with at least "
                        "one row.", file=name)
    columns = [str(c) for c in schema.names]
    _check_column_limit(len(columns), name, role)
    try:
        if meta.num_row_groups:
            sample = meta.read_row_group(0).slice(0, _SAMPLE_LINES).to_pandas()
        else:
            sample = pd.DataFrame(columns=columns)
    except Exception as exc:  # corrupt pages, or values pandas cannot hold (dates in year 0)
        raise DataError(f"the Parquet file cannot be read ({_short(exc)}). Re-export it, or "
                        "upload it as CSV.", file=name) from exc
    sample.columns = columns
    return SniffedTable(name=name, format="parquet", columns=columns, header=True, encoding=None,
                        delimiter=None, sample=sample, _raw=raw)


def _read_parquet(sniffed: SniffedTable) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(io.BytesIO(sniffed._raw))
    except Exception as exc:  # see _sniff_parquet
        raise DataError(f"the Parquet file cannot be read ({_short(exc)}). Re-export it (with "
                        "unique column names), or upload it as CSV.", file=sniffed.name) from exc
    return _clean_parquet_frame(frame)


def _clean_parquet_frame(frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [str(c) for c in frame.columns]
    for col in frame.columns:
        # Binary (bytes) cells would break every string operation downstream.
        values = frame[col]
        if values.dtype == object:
            is_bytes = values.map(lambda v: isinstance(v, (bytes, bytearray))).to_numpy(bool)
            if is_bytes.any():
                frame[col] = values.where(~is_bytes, values.map(
                    lambda v: bytes(v).decode("utf-8", errors="replace")
                    if isinstance(v, (bytes, bytearray)) else v))
    return frame


def _unique_names(names: list[str]) -> list[str]:
    seen: Counter = Counter()
    out = []
    for i, n in enumerate(names):
        n = n or f"column_{i + 1}"
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _unparseable(exc: Exception, name: str) -> DataError:
    return DataError(f"the file could not be parsed as a table ({_short(exc)}). Check that it "
                     "is a delimited text file (CSV/TSV) with one record per line and that every "
                     "opening quote (\") is closed.", file=name)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")
