"""Reading and cleaning the interactions file (vectorised; no Python loops over rows)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL
from ..errors import DataError
from .columns import map_interaction_columns
from .readers import NULL_TOKENS, Source, describe_format, read_table, sniff_table
from .report import POLICIES, FileReport, IngestionReport
from .timestamps import parse_timestamps

INVALID_RATING_POLICIES = ("implicit", "drop")


def read_interactions(source: Source, report: IngestionReport, *, user_col: str | None = None,
                      item_col: str | None = None, rating_col: str | None = None,
                      time_col: str | None = None, invalid_ratings: str = "implicit",
                      max_rows: int, max_ids: int) -> Interactions:
    """Read, map and clean an interactions file, recording everything in ``report``.

    Args:
        source (Source): Path or ``(display_name, bytes | file-like)``.
        report (IngestionReport): Receives the file report, problems and warnings.
        user_col, item_col, rating_col, time_col (str, optional): Explicit column names.
        invalid_ratings (str): ``"implicit"`` keeps rows with a missing/non-numeric/non-finite
            rating as rating 1.0; ``"drop"`` drops them. Both are counted.
            (default: :obj:`"implicit"`)
        max_rows (int): Row limit, checked before parsing.
        max_ids (int): Limit on distinct users and on distinct items.

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
    table = read_table(sniffed, string_columns=[ucol, icol])
    frame = table.frame
    file_report = FileReport(
        role="interactions", name=name, format=describe_format(sniffed),
        encoding=sniffed.encoding, delimiter=sniffed.delimiter, header=sniffed.header,
        columns=list(sniffed.columns), mapping=dict(mapping), rows_read=table.rows_read)
    file_report.ignored_columns = {c: "not a user/item/rating/timestamp column"
                                   for c in sniffed.columns if c not in mapping.values()}
    report.files.append(file_report)
    report.warnings += [f"{name}: {n}" for n in sniffed.notes]
    report.add_problem("ragged_rows", name, len(table.ragged_lines),
                       [f"line {n}" for n in table.ragged_lines])

    users, empty_u = clean_ids(frame[ucol])
    items, empty_i = clean_ids(frame[icol])
    empty = empty_u | empty_i
    report.add_problem("empty_ids", name, int(empty.sum()), _row_examples(empty, sniffed.header))

    keep = ~empty
    ratings = np.ones(len(frame))
    if rcol is not None:
        ratings = _numeric(frame[rcol])
        invalid = ~np.isfinite(ratings) & keep
        bad, with_ids = int(invalid.sum()), int(keep.sum())
        examples = [f"line {r}: {v!r}" for r, v in
                    zip(_row_numbers(invalid, sniffed.header), frame[rcol][invalid].head(5),
                        strict=True)]
        report.add_problem("invalid_ratings", name, bad, examples,
                           policy=POLICIES[f"invalid_ratings_{invalid_ratings}"])
        if invalid_ratings == "drop":
            keep &= ~invalid
        ratings = np.where(np.isfinite(ratings), ratings, 1.0)
        valid = ratings[keep & ~invalid]
        if len(valid):
            file_report.details["rating range"] = f"{valid.min():g} to {valid.max():g}"
        if bad and bad >= 0.5 * with_ids:
            report.warnings.append(
                f"{name}: {bad:,} of {with_ids:,} values in the rating column '{rcol}' are "
                "not numbers; check the mapping (--rating-col) or drop the column for implicit "
                "feedback.")
    else:
        file_report.details["ratings"] = "no rating column: implicit feedback (rating 1.0)"

    seconds = np.full(len(frame), np.nan)
    if tcol is not None:
        parsed = parse_timestamps(frame[tcol])
        seconds = parsed.seconds
        file_report.details["timestamp format"] = parsed.kind
        report.add_problem("unparsed_timestamps", name, parsed.unparsed,
                           [repr(v) for v in parsed.examples])
        report.add_problem("missing_timestamps", name, parsed.missing)

    users, items = users[keep], items[keep]
    ratings, seconds = ratings[keep], seconds[keep]
    user_codes, user_uniques = pd.factorize(users)
    item_codes, item_uniques = pd.factorize(items)
    check_id_limit(len(user_uniques), "users", name, max_ids)
    check_id_limit(len(item_uniques), "items", name, max_ids)
    if not len(users):
        raise DataError("no usable interactions remain: every row has an empty user or item "
                        f"id. Check the id columns ({ucol}, {icol}).", file=name)

    # Duplicates: order by (timestamp, file position), NaN times first, and keep the last.
    key = user_codes.astype(np.int64) * len(item_uniques) + item_codes
    position = np.arange(len(key))
    order = np.lexsort((position, np.where(np.isnan(seconds), -np.inf, seconds)))
    dup_sorted = pd.Series(key[order]).duplicated(keep="last").to_numpy()
    kept = np.sort(order[~dup_sorted])
    n_dup = len(key) - len(kept)
    if n_dup:
        dup_pos = np.sort(order[dup_sorted])[:5]
        report.add_problem("duplicate_pairs", name, n_dup,
                           [f"({users.iloc[p]}, {items.iloc[p]})" for p in dup_pos])
    result = pd.DataFrame({
        USER_COL: users.iloc[kept].reset_index(drop=True),
        ITEM_COL: items.iloc[kept].reset_index(drop=True),
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


def _row_numbers(mask: np.ndarray, header: bool) -> list[int]:
    """1-based file line numbers of the first masked rows (exact unless blank lines precede)."""
    return [int(i) + 1 + int(header) for i in np.flatnonzero(mask)[:5]]


def _row_examples(mask: np.ndarray, header: bool) -> list[str]:
    return [f"line {n}" for n in _row_numbers(mask, header)]


def check_id_limit(count: int, what: str, name: str, max_ids: int) -> None:
    """Refuse more than ``max_ids`` distinct users or items (embedding tables scale with it)."""
    if count > max_ids:
        raise DataError(f"the file has {count:,} distinct {what}, more than the limit of "
                        f"{max_ids:,}. Filter rare {what} first, or raise the limit (max_ids / "
                        "--max-ids) if this machine has the memory.", file=name)
