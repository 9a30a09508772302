"""Timestamp parsing to float64 epoch seconds (``NaN`` when unknown).

Numeric columns are epoch times whose unit is chosen once per column from the median
magnitude (seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, else
nanoseconds); ``YYYYMMDD`` integers and bare years are recognised. Text columns are parsed with
the first format (ISO 8601, then common day/month orders) that reads the most of a sample, so a
column is never parsed with a mix of day-first and month-first guesses. Naive times are UTC.
Times outside the years 1-9999 count as unparsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Explicit formats tried on text timestamps, in order (ties go to the earlier one).
DATE_FORMATS = (
    "ISO8601", "%d/%m/%Y", "%m/%d/%Y", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y", "%d.%m.%Y %H:%M", "%d-%b-%Y",
    "%d %b %Y", "%b %d, %Y", "%B %d, %Y", "%m %d, %Y", "%Y/%m/%d", "%Y/%m/%d %H:%M:%S",
    "%d-%m-%Y", "%m-%d-%Y", "%a, %d %b %Y %H:%M:%S %z",
)
_EPOCH_UNITS = ((1e11, 1.0, "epoch seconds"), (1e14, 1e3, "epoch milliseconds"),
                (1e17, 1e6, "epoch microseconds"), (np.inf, 1e9, "epoch nanoseconds"))
_SAMPLE = 2000
_NULLS = ("", "nan", "nat", "null", "none", "na", "n/a", "<na>")
#: Longer text cells are not timestamps; parsing them (dateutil for mixed formats) is slow.
_MAX_TIME_CHARS = 64
#: Accepted range of parsed times: 0001-01-01 to 9999-12-31 23:59:59 UTC, in epoch seconds.
_MIN_SECONDS, _MAX_SECONDS = -62135596800.0, 253402300799.0


@dataclass
class ParsedTimestamps:
    """Result of :func:`parse_timestamps`.

    Attributes:
        seconds (numpy.ndarray): ``float64`` epoch seconds, ``NaN`` where missing or unparsed.
        kind (str): What was detected, e.g. ``"epoch milliseconds"`` or ``"date %d/%m/%Y"``.
        missing (int): Empty cells.
        unparsed (int): Non-empty cells that could not be read as a time.
        examples (list[str]): Up to five unparsed values, as found.
    """

    seconds: np.ndarray
    kind: str
    missing: int = 0
    unparsed: int = 0
    examples: list[str] = field(default_factory=list)


def parse_timestamps(values) -> ParsedTimestamps:
    """Parse a column of timestamps (numbers, datetimes or text) to epoch seconds.

    Args:
        values (array-like): The raw column.

    Returns:
        ParsedTimestamps with one value per input row.
    """
    series = pd.Series(values).reset_index(drop=True)
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series):
        seconds = _to_seconds(pd.to_datetime(series, utc=True))
        return _finish(ParsedTimestamps(seconds, "datetime"), np.isnan(seconds), series)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        numbers = series.astype(np.float64)
        missing = numbers.isna().to_numpy()
        return _finish(_from_numbers(numbers, ~missing), missing, series)
    text = series.astype("string").str.strip()
    missing = (text.isna() | text.str.lower().isin(_NULLS)).to_numpy()
    present = ~missing
    numbers = pd.to_numeric(text.where(present), errors="coerce")
    numeric_share = numbers[present].notna().mean() if present.any() else 0.0
    if numeric_share >= 0.5:
        result = _from_numbers(numbers.astype(np.float64), present)
    else:
        result = _from_text(text, present)
    return _finish(result, missing, series)


def _finish(result: ParsedTimestamps, missing: np.ndarray, raw: pd.Series) -> ParsedTimestamps:
    # Times outside years 1-9999 (e.g. -1e300 read as epoch nanoseconds) are not dates any
    # tool downstream can represent: they count as unparsed instead of crashing a plot later.
    plausible = (result.seconds >= _MIN_SECONDS) & (result.seconds <= _MAX_SECONDS)
    result.seconds = np.where(plausible, result.seconds, np.nan)
    unparsed = np.isnan(result.seconds) & ~missing
    result.missing = int(missing.sum())
    result.unparsed = int(unparsed.sum())
    result.examples = [str(v) for v in raw[unparsed].head(5).tolist()]
    return result


def _from_numbers(numbers: pd.Series, present: np.ndarray) -> ParsedTimestamps:
    values = numbers.to_numpy(np.float64, na_value=np.nan)
    values = np.where(np.isfinite(values), values, np.nan)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return ParsedTimestamps(np.full(len(values), np.nan), "none")
    integral = bool(np.all(finite == np.floor(finite)))
    if integral and finite.min() >= 19000101 and finite.max() <= 21001231:
        # YYYYMMDD stored as a number.
        as_text = pd.Series(values).map(lambda v: f"{v:.0f}" if v == v else None)
        parsed = pd.to_datetime(as_text, format="%Y%m%d", errors="coerce", utc=True)
        if parsed[present].notna().mean() >= 0.9:
            return ParsedTimestamps(_to_seconds(parsed), "date %Y%m%d")
    if integral and finite.min() >= 1000 and finite.max() <= 2100:
        years = pd.to_datetime(pd.Series(values).map(lambda v: f"{v:.0f}" if v == v else None),
                               format="%Y", errors="coerce", utc=True)
        return ParsedTimestamps(_to_seconds(years), "year")
    magnitude = float(np.median(np.abs(finite)))
    for limit, factor, kind in _EPOCH_UNITS:
        if magnitude < limit:
            return ParsedTimestamps(values / factor, kind)
    raise AssertionError("unreachable")  # the last limit is infinite


def _from_text(text: pd.Series, present: np.ndarray) -> ParsedTimestamps:
    present = present & (text.str.len() <= _MAX_TIME_CHARS).fillna(False).to_numpy(bool)
    values = text[present]
    sample = values.head(_SAMPLE)
    best_format, best_hits = None, -1
    with np.errstate(all="ignore"):
        for fmt in DATE_FORMATS:
            hits = int(_parse(sample, fmt).notna().sum())
            if hits > best_hits:
                best_format, best_hits = fmt, hits
            if hits == len(sample):
                break
        if best_hits < 0.9 * len(sample):
            mixed_hits = int(_parse(sample, "mixed").notna().sum())
            if mixed_hits > best_hits:
                best_format, best_hits = "mixed", mixed_hits
    seconds = np.full(len(text), np.nan)
    if best_hits > 0:
        seconds[present] = _to_seconds(_parse(values, best_format))
        kind = "date (mixed formats)" if best_format == "mixed" else f"date {best_format}"
    else:
        kind = "none"
    return ParsedTimestamps(seconds, kind)


def _parse(values: pd.Series, fmt: str) -> pd.Series:
    try:
        return pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")


def _to_seconds(times: pd.Series) -> np.ndarray:
    """Epoch seconds of tz-aware datetimes, independent of their storage resolution.

    Works on the integer ticks of the stored unit: subtracting a nanosecond ``Timestamp``
    would cast years outside 1677-2262 (stored as ``s``/``us`` by pandas 3) to nanoseconds
    and overflow.
    """
    times = pd.Series(times)
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        times = pd.to_datetime(times, utc=True, errors="coerce")
    ticks = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    unit = np.datetime_data(ticks.dtype)[0]
    seconds = ticks.view(np.int64).astype(np.float64) / (np.timedelta64(1, "s")
                                                         / np.timedelta64(1, unit))
    seconds[np.isnat(ticks)] = np.nan
    return seconds
