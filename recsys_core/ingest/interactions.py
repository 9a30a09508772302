"""Reading and cleaning the interactions file (vectorised; no Python loops over rows)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL
from ..errors import DataError
from .columns import map_interaction_columns
from .readers import (
    CHUNK_ROWS,
    NULL_TOKENS,
    Source,
    TableChunk,
    describe_format,
    iter_table,
    sniff_table,
)
from .report import POLICIES, FileReport, IngestionReport
from .timestamps import parse_timestamps

INVALID_RATING_POLICIES = ("implicit", "drop")


def read_interactions(source: Source, report: IngestionReport, *, user_col: str | None = None,
                      item_col: str | None = None, rating_col: str | None = None,
                      time_col: str | None = None, invalid_ratings: str = "implicit",
                      max_rows: int, max_ids: int,
                      chunk_rows: int = CHUNK_ROWS) -> Interactions:
    """Read, map and clean an interactions file, recording everything in ``report``.

    The file is parsed ``chunk_rows`` rows at a time (:func:`~.readers.iter_table`): each
    chunk's ids are cleaned and mapped to integer codes (first-appearance order over the whole
    file), its ratings checked, and only codes and numbers are kept, so memory grows by a few
    bytes per row plus the distinct ids, not by two Python strings per row. Counts, examples
    and messages in ``report`` are those of reading the file whole.

    Args:
        source (Source): Path or ``(display_name, bytes | file-like)``.
        report (IngestionReport): Receives the file report, problems and warnings.
        user_col, item_col, rating_col, time_col (str, optional): Explicit column names.
        invalid_ratings (str): ``"implicit"`` keeps rows with a missing/non-numeric/non-finite
            rating as rating 1.0; ``"drop"`` drops them. Both are counted.
            (default: :obj:`"implicit"`)
        max_rows (int): Row limit, checked before parsing.
        max_ids (int): Limit on distinct users and on distinct items.
        chunk_rows (int): Rows parsed at a time. (default: :data:`~.readers.CHUNK_ROWS`)

    Returns:
        :class:`Interactions`: the frame (``user_id``, ``item_id`` as str, ``rating``,
        ``timestamp`` as float64) and its distinct user and item ids.
    """
    if invalid_ratings not in INVALID_RATING_POLICIES:
        raise ValueError(f"invalid_ratings must be one of {INVALID_RATING_POLICIES}")
    sniffed = sniff_table(source, role="interactions", max_rows=max_rows)
    name = sniffed.name
    if len(sniffed.columns) < 2:
        raise DataError(
            "only one column was found, so user and item ids cannot be told apart. Use a "
            "comma, tab, semicolon, '|' or '::' between fields (e.g. user_id,item_id,rating).",
            file=name)
    mapping = map_interaction_columns(sniffed.columns, sniffed.header, file=name,
                                      user_col=user_col, item_col=item_col,
                                      rating_col=rating_col, time_col=time_col)
    ucol, icol, rcol, tcol = (mapping[k] for k in ("user", "item", "rating", "timestamp"))
    state = _ChunkState(sniffed.header)
    for chunk in iter_table(sniffed, string_columns=[ucol, icol], chunk_rows=chunk_rows):
        state.add(chunk, ucol, icol, rcol, tcol, invalid_ratings)
    rows_read = state.rows + len(state.ragged)
    if rows_read == 0:
        raise DataError("the file has a header row but no data rows. Add at least one data "
                        "row below the header.", file=name)
    file_report = FileReport(
        role="interactions", name=name, format=describe_format(sniffed),
        encoding=sniffed.encoding, delimiter=sniffed.delimiter, header=sniffed.header,
        columns=list(sniffed.columns), mapping=dict(mapping), rows_read=rows_read)
    file_report.ignored_columns = {c: "not a user/item/rating/timestamp column"
                                   for c in sniffed.columns if c not in mapping.values()}
    report.files.append(file_report)
    report.warnings += [f"{name}: {n}" for n in sniffed.notes]
    report.add_problem("ragged_rows", name, len(state.ragged),
                       [f"line {n}" for n in state.ragged])
    report.add_problem("empty_ids", name, state.empty, state.empty_examples)

    keep = np.concatenate(state.keep) if state.keep else np.zeros(0, dtype=bool)
    if rcol is not None:
        bad = state.invalid
        report.add_problem("invalid_ratings", name, bad, state.invalid_examples,
                           policy=POLICIES[f"invalid_ratings_{invalid_ratings}"])
        if state.rating_min is not None:
            file_report.details["rating range"] = (f"{state.rating_min:g} to "
                                                   f"{state.rating_max:g}")
        if bad and bad >= 0.5 * state.with_ids:
            report.warnings.append(
                f"{name}: {bad:,} of {state.with_ids:,} values in the rating column '{rcol}' "
                "are not numbers; check the mapping (--rating-col) or drop the column for "
                "implicit feedback.")
    else:
        file_report.details["ratings"] = "no rating column: implicit feedback (rating 1.0)"

    seconds = np.full(int(keep.sum()), np.nan)
    if tcol is not None:
        parsed = parse_timestamps(_concat_column(state.times))
        state.times = []
        seconds = parsed.seconds[keep]
        file_report.details["timestamp format"] = parsed.kind
        report.add_problem("unparsed_timestamps", name, parsed.unparsed,
                           [repr(v) for v in parsed.examples])
        report.add_problem("missing_timestamps", name, parsed.missing)

    user_codes = _concat_codes(state.user_codes)
    item_codes = _concat_codes(state.item_codes)
    ratings = np.concatenate(state.ratings) if state.ratings else np.zeros(0)
    user_uniques = state.users.uniques()
    item_uniques = state.items.uniques()
    check_id_limit(len(user_uniques), "users", name, max_ids)
    check_id_limit(len(item_uniques), "items", name, max_ids)
    if not len(user_codes):
        raise DataError("no usable interactions remain: every row has an empty user or item "
                        f"id. Check the id columns ({ucol}, {icol}).", file=name)

    # Duplicates: order by (timestamp, file position), NaN times first, and keep the last.
    key = user_codes.astype(np.int64) * len(item_uniques) + item_codes
    position = np.arange(len(key))
    order = np.lexsort((position, np.where(np.isnan(seconds), -np.inf, seconds)))
    dup_sorted = pd.Series(key[order]).duplicated(keep="last").to_numpy()
    kept = np.sort(order[~dup_sorted])
    del key, position
    n_dup = len(order) - len(kept)
    if n_dup:
        dup_pos = np.sort(order[dup_sorted])[:5]
        report.add_problem("duplicate_pairs", name, n_dup,
                           [f"({user_uniques[user_codes[p]]}, {item_uniques[item_codes[p]]})"
                            for p in dup_pos])
    del order, dup_sorted
    result = pd.DataFrame({
        USER_COL: user_uniques[user_codes[kept]],
        ITEM_COL: item_uniques[item_codes[kept]],
        RATING_COL: ratings[kept].astype(np.float64),
        TIME_COL: seconds[kept].astype(np.float64),
    })
    file_report.rows_kept = len(result)
    per_user = np.bincount(user_codes[kept], minlength=len(user_uniques))
    single = np.flatnonzero(per_user == 1)
    report.add_problem("single_interaction_users", name, len(single),
                       [user_uniques[k] for k in single[:5]])
    # Deduplication keeps one row per pair, so every distinct id survives.
    return Interactions(result, _object_index(user_uniques), _object_index(item_uniques))


class _Codes:
    """Distinct ids in first-appearance order, growing chunk by chunk."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def encode(self, values: pd.Series) -> np.ndarray:
        codes, uniques = pd.factorize(values)
        index = self.index
        lookup = np.fromiter((index.setdefault(u, len(index)) for u in uniques.tolist()),
                             dtype=np.int64, count=len(uniques))
        return lookup[codes] if len(codes) else np.zeros(0, dtype=np.int64)

    def uniques(self) -> np.ndarray:
        return np.asarray(list(self.index), dtype=object)


class _ChunkState:
    """What :func:`read_interactions` keeps of the chunks read so far."""

    def __init__(self, header: bool) -> None:
        self.header = header
        self.rows = 0
        self.ragged: list[int] = []
        self.empty = 0
        self.empty_examples: list[str] = []
        self.invalid = 0
        self.invalid_examples: list[str] = []
        self.with_ids = 0
        self.rating_min: float | None = None
        self.rating_max: float | None = None
        self.keep: list[np.ndarray] = []
        self.times: list[pd.Series] = []
        self.ratings: list[np.ndarray] = []
        self.user_codes: list[np.ndarray] = []
        self.item_codes: list[np.ndarray] = []
        self.users, self.items = _Codes(), _Codes()

    def add(self, chunk: TableChunk, ucol: str, icol: str, rcol: str | None,
            tcol: str | None, invalid_ratings: str) -> None:
        frame, start = chunk.frame, chunk.start
        self.rows += len(frame)
        self.ragged += chunk.ragged_lines
        users, empty_u = clean_ids(frame[ucol])
        items, empty_i = clean_ids(frame[icol])
        empty = empty_u | empty_i
        self.empty += int(empty.sum())
        if len(self.empty_examples) < 5:
            self.empty_examples += _row_examples(empty, self.header, start)[
                :5 - len(self.empty_examples)]
        keep = ~empty
        ratings = np.ones(len(frame))
        if rcol is not None:
            ratings = _numeric(frame[rcol])
            invalid = ~np.isfinite(ratings) & keep
            self.invalid += int(invalid.sum())
            self.with_ids += int(keep.sum())
            if len(self.invalid_examples) < 5:
                room = 5 - len(self.invalid_examples)
                self.invalid_examples += [
                    f"line {r}: {v!r}" for r, v in
                    zip(_row_numbers(invalid, self.header, start)[:room],
                        frame[rcol][invalid].head(room), strict=True)]
            if invalid_ratings == "drop":
                keep &= ~invalid
            ratings = np.where(np.isfinite(ratings), ratings, 1.0)
            valid = ratings[keep & ~invalid]
            if len(valid):
                low, high = float(valid.min()), float(valid.max())
                self.rating_min = low if self.rating_min is None else min(self.rating_min, low)
                self.rating_max = high if self.rating_max is None else max(self.rating_max,
                                                                           high)
        if tcol is not None:
            self.times.append(frame[tcol])
        self.keep.append(keep)
        self.ratings.append(ratings[keep])
        self.user_codes.append(self.users.encode(users[keep]))
        self.item_codes.append(self.items.encode(items[keep]))


def _concat_codes(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts)


def _concat_column(parts: list[pd.Series]) -> pd.Series:
    """The chunks of one column as one column (object when the chunks' dtypes differ, as
    pandas would have read the whole column)."""
    if not parts:
        return pd.Series([], dtype=object)
    dtypes = {str(part.dtype) for part in parts}
    if len(dtypes) > 1:
        parts = [part.astype(object) for part in parts]
    return pd.concat(parts, ignore_index=True)


class Interactions(NamedTuple):
    """Clean interactions plus their distinct user and item ids (first-appearance order)."""

    frame: pd.DataFrame
    user_ids: pd.Index
    item_ids: pd.Index


def _object_index(values) -> pd.Index:
    return pd.Index(np.asarray(values, dtype=object), dtype=object)


def clean_ids(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Ids as stripped strings plus a mask of empty/null-like ones.

    Integral floats (``1.0`` from a float column) become ``"1"`` so ids match across files.
    """
    series = values.reset_index(drop=True)
    if pd.api.types.is_float_dtype(series):
        finite = series.dropna()
        if len(finite) and (finite == np.floor(finite)).all():
            series = series.astype("Int64")
    text = series.astype("string").str.strip()
    empty = (text.isna() | text.str.lower().isin(NULL_TOKENS)).to_numpy(dtype=bool)
    return text.astype(str), empty


def _numeric(values: pd.Series) -> np.ndarray:
    """Ratings as float64 (NaN where unreadable); booleans are 1/0, ``4,5`` is 4.5."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(np.float64).to_numpy()
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(np.float64, na_value=np.nan)
    text = values.astype("string").str.strip()
    lowered = text.str.lower()
    text = text.mask(lowered == "true", "1").mask(lowered == "false", "0")
    decimal_comma = text.str.fullmatch(r"[+-]?\d+,\d+").fillna(False)
    if decimal_comma.any():
        text = text.mask(decimal_comma, text.str.replace(",", ".", regex=False))
    return pd.to_numeric(text, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def _row_numbers(mask: np.ndarray, header: bool, start: int = 0) -> list[int]:
    """1-based file line numbers of the first masked rows (exact unless blank lines precede);
    ``start`` is the position of the mask's first row in the whole file."""
    return [int(i) + 1 + int(header) + start for i in np.flatnonzero(mask)[:5]]


def _row_examples(mask: np.ndarray, header: bool, start: int = 0) -> list[str]:
    return [f"line {n}" for n in _row_numbers(mask, header, start)]


def check_id_limit(count: int, what: str, name: str, max_ids: int) -> None:
    """Refuse more than ``max_ids`` distinct users or items (embedding tables scale with it)."""
    if count > max_ids:
        raise DataError(f"the file has {count:,} distinct {what}, more than the limit of "
                        f"{max_ids:,}. Filter rare {what} first, or raise the limit (max_ids / "
                        "--max-ids) if this machine has the memory.", file=name)
