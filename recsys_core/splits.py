"""Train / validation / test splits of an interactions DataFrame.

Pure, seeded functions: the input is never modified, and every output frame is a row subset of
it that keeps the original index and row order, so the splits partition the input exactly
(apart from rows a split documents as excluded). Column names default to the
:class:`~recsys_core.dataset.Dataset` constants and can be overridden by keyword, as in
Microsoft Recommenders.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .dataset import ITEM_COL, TIME_COL, USER_COL
from .errors import DataError

#: The protocol of ``../shared/BENCHMARK.md`` (next to the repository): seed, minimum
#: interactions per user, ratios.
BENCHMARK_SEED = 42
BENCHMARK_MIN_INTERACTIONS = 5
BENCHMARK_TEST_RATIO = 0.1
BENCHMARK_VALID_RATIO = 0.1
#: Cold-start protocol: fraction of items held out and its seed.
COLD_START_FRACTION = 0.1
COLD_START_SEED = 7

#: Share of the timestamps before a global time cut (the latest 10% are test).
DEFAULT_TIME_CUT_QUANTILE = 0.9
#: Split names of :func:`split_interactions` (the CLI's ``--split``, the Metrics page).
SPLIT_METHODS = ("random", "temporal", "time-cut")

_TRAIN, _VALID, _TEST, _EXCLUDED = 0, 1, 2, -1


class Split(NamedTuple):
    """``(train, valid, test)`` frames; ``valid`` may be empty."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


class ColdStartSplit(NamedTuple):
    """``(train, test)`` frames; ``test`` holds every interaction of the held-out items."""

    train: pd.DataFrame
    test: pd.DataFrame


def per_user_random_split(
    interactions: pd.DataFrame,
    *,
    test_ratio: float = BENCHMARK_TEST_RATIO,
    valid_ratio: float = BENCHMARK_VALID_RATIO,
    seed: int = BENCHMARK_SEED,
    min_interactions: int = BENCHMARK_MIN_INTERACTIONS,
    small_users: str = "exclude",
    col_user: str = USER_COL,
) -> Split:
    """Random per-user hold-out.

    Users are visited in ascending id order (numeric order when every id is an integer, else
    string order); one :func:`numpy.random.default_rng` generator draws, for each user with at
    least ``min_interactions`` interactions, a permutation of that user's interactions (in
    input order). The first ``max(1, round(test_ratio * n))`` go to test, the next
    ``max(1, round(valid_ratio * n))`` to validation (none when ``valid_ratio`` is 0), the rest
    to train; at least one interaction always stays in train. With the defaults this is the
    BENCHMARK.md protocol exactly.

    Args:
        interactions (pandas.DataFrame): Interactions with a user column.
        test_ratio (float): Share of each user's interactions in test. (default: :obj:`0.1`)
        valid_ratio (float): Share in validation; 0 for none. (default: :obj:`0.1`)
        seed (int): Generator seed. (default: :obj:`42`)
        min_interactions (int): Users with fewer interactions are not split.
            (default: :obj:`5`)
        small_users (str): What happens to those users: ``"exclude"`` (in no split, as in the
            protocol) or ``"train"``. (default: :obj:`"exclude"`)
        col_user (str): User column. (default: :obj:`"user_id"`)
    """
    _check_columns(interactions, [col_user])
    if not 0 < test_ratio < 1 or not 0 <= valid_ratio < 1 or test_ratio + valid_ratio >= 1:
        raise ValueError("need 0 < test_ratio < 1, 0 <= valid_ratio < 1 and their sum below 1")
    if small_users not in ("exclude", "train"):
        raise ValueError("small_users must be 'exclude' or 'train'")
    rows, starts, counts = _group_rows(interactions[col_user])
    labels = np.full(len(interactions), _TRAIN, dtype=np.int8)
    rng = np.random.default_rng(seed)
    for start, n in zip(starts.tolist(), counts.tolist(), strict=True):
        user_rows = rows[start:start + n]
        if n < min_interactions:
            if small_users == "exclude":
                labels[user_rows] = _EXCLUDED
            continue
        perm = user_rows[rng.permutation(n)]
        n_test = min(max(1, round(test_ratio * n)), n - 1)
        n_valid = min(max(1, round(valid_ratio * n)), n - 1 - n_test) if valid_ratio > 0 else 0
        labels[perm[:n_test]] = _TEST
        labels[perm[n_test:n_test + n_valid]] = _VALID
    return _split(interactions, labels)


def benchmark_split(interactions: pd.DataFrame, *, col_user: str = USER_COL) -> Split:
    """The BENCHMARK.md split: users with >= 5 interactions, seed 42, 10% test, 10% valid."""
    return per_user_random_split(interactions, col_user=col_user)


def temporal_leave_last_out(
    interactions: pd.DataFrame,
    *,
    n_test: int = 1,
    n_valid: int = 1,
    col_user: str = USER_COL,
    col_time: str = TIME_COL,
) -> Split:
    """Per user, the latest ``n_test`` interactions to test and the ``n_valid`` before to valid.

    Ties in time keep input order (later rows count as later). Unknown (``NaN``) times count as
    the oldest. Users with at most ``n_test + n_valid`` interactions stay entirely in train, so
    every evaluated user has training history.

    Args:
        interactions (pandas.DataFrame): Interactions with user and time columns.
        n_test (int): Test interactions per user. (default: :obj:`1`)
        n_valid (int): Validation interactions per user; 0 for none. (default: :obj:`1`)
        col_user (str): User column. (default: :obj:`"user_id"`)
        col_time (str): Time column (epoch seconds). (default: :obj:`"timestamp"`)

    Raises:
        DataError: The time column is missing or no interaction has a timestamp.
    """
    _check_columns(interactions, [col_user])
    times = _timestamps(interactions, col_time, "a temporal split")
    if n_test < 1 or n_valid < 0:
        raise ValueError("need n_test >= 1 and n_valid >= 0")
    codes, _ = pd.factorize(interactions[col_user].astype(str))
    order = np.lexsort((np.arange(len(times)), np.where(np.isnan(times), -np.inf, times), codes))
    counts = np.bincount(codes, minlength=codes.max() + 1 if len(codes) else 0)
    sorted_codes = codes[order]
    # Position from the end within each user's time-ordered interactions.
    ends = np.cumsum(counts)[sorted_codes]
    from_end = ends - 1 - np.arange(len(order))
    size = counts[sorted_codes]
    eligible = size > n_test + n_valid
    labels = np.full(len(times), _TRAIN, dtype=np.int8)
    labels[order[eligible & (from_end < n_test)]] = _TEST
    labels[order[eligible & (from_end >= n_test) & (from_end < n_test + n_valid)]] = _VALID
    return _split(interactions, labels)


def global_time_split(
    interactions: pd.DataFrame,
    *,
    quantile: float | None = DEFAULT_TIME_CUT_QUANTILE,
    cut=None,
    drop_new_users: bool = True,
    col_user: str = USER_COL,
    col_time: str = TIME_COL,
) -> Split:
    """One global time cut: interactions after it are test, the rest train.

    The cut is either an explicit time (``cut``: epoch seconds, or a date/time string or
    :class:`datetime.datetime`, read as UTC when it has no time zone) or the ``quantile`` of
    the interactions' timestamps (0.9: the latest 10% of interactions are test). Rows strictly
    after the cut go to test; rows at or before it, and rows without a timestamp (unknown
    times count as the oldest, as in :func:`temporal_leave_last_out`), go to train. Unlike the
    per-user splits this one never lets a model see the future: every training interaction
    precedes every test interaction. ``valid`` is empty.

    With ``drop_new_users`` the test rows of users without any training interaction are
    left out (in no split): no model can rank for a user it has never seen.

    Args:
        interactions (pandas.DataFrame): Interactions with user and time columns.
        quantile (float, optional): Share of the timestamps at or before the cut, strictly
            between 0 and 1; ignored when ``cut`` is given. (default: :obj:`0.9`)
        cut (float or str or datetime, optional): The cut itself. (default: :obj:`None`)
        drop_new_users (bool): Leave out test rows of users absent from train.
            (default: :obj:`True`)
        col_user (str): User column. (default: :obj:`"user_id"`)
        col_time (str): Time column (epoch seconds). (default: :obj:`"timestamp"`)

    Raises:
        DataError: The time column is missing or empty, the cut is not a time, or it leaves
            no interaction on one side.
    """
    _check_columns(interactions, [col_user])
    times = _timestamps(interactions, col_time, "a global time cut")
    known = times[~np.isnan(times)]
    if cut is None:
        if quantile is None or not 0 < quantile < 1:
            raise ValueError("quantile must be strictly between 0 and 1 (e.g. 0.9)")
        cut_seconds = float(np.quantile(known, quantile, method="lower"))
        what = f"the {quantile:g} quantile of the timestamps ({_describe_time(cut_seconds)})"
    else:
        cut_seconds = parse_time_cut(cut, column=col_time)
        what = f"the cut {_describe_time(cut_seconds)}"
    after = np.nan_to_num(times, nan=-np.inf) > cut_seconds
    if not after.any() or after.all():
        side = "after" if not after.any() else "at or before"
        raise DataError(
            f"no interaction is {side} {what}; timestamps run from "
            f"{_describe_time(known.min())} to {_describe_time(known.max())}. Choose a cut "
            "inside that range.", column=col_time)
    labels = np.where(after, _TEST, _TRAIN).astype(np.int8)
    if drop_new_users:
        users = interactions[col_user].astype(str).to_numpy(dtype=object)
        seen = pd.Index(pd.unique(users[~after])).get_indexer(users) >= 0
        labels[after & ~seen] = _EXCLUDED
    return _split(interactions, labels)


def parse_time_cut(cut, *, column: str = TIME_COL) -> float:
    """A time cut in epoch seconds: a number is taken as epoch seconds, a string or
    datetime is parsed by :class:`pandas.Timestamp` (UTC when it has no time zone).

    Raises:
        DataError: ``cut`` is not a time.
    """
    if isinstance(cut, (int, float, np.integer, np.floating)) and not isinstance(cut, bool):
        value = float(cut)
    else:
        try:
            stamp = pd.Timestamp(cut)
        except (TypeError, ValueError) as exc:
            raise DataError(f"the time cut {str(cut)[:60]!r} is not a date or time ({exc}); "
                            "give a date like 2020-01-31 or epoch seconds.",
                            column=column) from None
        if stamp is pd.NaT:
            raise DataError("the time cut is empty; give a date like 2020-01-31 or epoch "
                            "seconds.", column=column)
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        value = stamp.timestamp()
    if not np.isfinite(value):
        raise DataError("the time cut must be a finite time.", column=column)
    return value


def split_interactions(
    interactions: pd.DataFrame,
    method: str = "random",
    *,
    seed: int = BENCHMARK_SEED,
    test_ratio: float = BENCHMARK_TEST_RATIO,
    valid_ratio: float = 0.0,
    min_interactions: int = BENCHMARK_MIN_INTERACTIONS,
    n_test: int = 1,
    quantile: float | None = DEFAULT_TIME_CUT_QUANTILE,
    cut=None,
    col_user: str = USER_COL,
    col_time: str = TIME_COL,
) -> Split:
    """One of :data:`SPLIT_METHODS` by name, for the CLI and the app.

    * ``"random"``: :func:`per_user_random_split` (``seed``, ``test_ratio``, ``valid_ratio``,
      ``min_interactions``);
    * ``"temporal"``: :func:`temporal_leave_last_out` (each user's latest ``n_test``
      interactions, no validation);
    * ``"time-cut"``: :func:`global_time_split` (``quantile`` or ``cut``).

    Args:
        interactions (pandas.DataFrame): Interactions.
        method (str): The split. (default: :obj:`"random"`)

    Raises:
        DataError: A time split without timestamps, or a cut outside the data.
        ValueError: An unknown ``method``.
    """
    if method == "random":
        return per_user_random_split(interactions, test_ratio=test_ratio,
                                     valid_ratio=valid_ratio, seed=seed,
                                     min_interactions=min_interactions, col_user=col_user)
    if method == "temporal":
        return temporal_leave_last_out(interactions, n_test=n_test, n_valid=0,
                                       col_user=col_user, col_time=col_time)
    if method == "time-cut":
        return global_time_split(interactions, quantile=quantile, cut=cut, col_user=col_user,
                                 col_time=col_time)
    raise ValueError(f"unknown split {method!r}; choose one of {list(SPLIT_METHODS)}")


def describe_split(method: str, *, quantile: float | None = DEFAULT_TIME_CUT_QUANTILE,
                   cut=None, test_ratio: float = BENCHMARK_TEST_RATIO,
                   seed: int = BENCHMARK_SEED, n_test: int = 1) -> str:
    """One line saying what :func:`split_interactions` does with these settings."""
    if method == "random":
        return (f"random per user: {test_ratio:.0%} of each user's interactions held out "
                f"(seed {seed}; users with fewer than {BENCHMARK_MIN_INTERACTIONS} "
                "interactions left out)")
    if method == "temporal":
        return (f"temporal leave-last-out: each user's latest {n_test} interaction(s) held "
                "out, everything before it for training")
    if method == "time-cut":
        where = (f"after {_describe_time(parse_time_cut(cut))}" if cut is not None
                 else f"after the {quantile:g} quantile of the timestamps (the latest "
                      f"{1 - quantile:.0%} of interactions)")
        return (f"global time cut: interactions {where} held out, everything before for "
                "training (test users without training history left out)")
    raise ValueError(f"unknown split {method!r}; choose one of {list(SPLIT_METHODS)}")


def cold_start_item_split(
    interactions: pd.DataFrame,
    *,
    fraction: float = COLD_START_FRACTION,
    seed: int = COLD_START_SEED,
    col_item: str = ITEM_COL,
) -> ColdStartSplit:
    """Hold out a random fraction of items entirely.

    The interacted items, in ascending id order (numeric when all ids are integers), are
    sampled without replacement by ``numpy.random.default_rng(seed).choice`` (``round(fraction
    * n_items)`` of them, at least 1 and at most ``n_items - 1``); all their interactions go to
    test and none to train. With the defaults this is the BENCHMARK.md cold-start protocol.

    Args:
        interactions (pandas.DataFrame): Interactions with an item column.
        fraction (float): Share of items held out. (default: :obj:`0.1`)
        seed (int): Generator seed. (default: :obj:`7`)
        col_item (str): Item column. (default: :obj:`"item_id"`)
    """
    _check_columns(interactions, [col_item])
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
    items = interactions[col_item].astype(str)
    universe = natural_order(pd.unique(items))
    if len(universe) < 2:
        raise DataError("a cold-start split needs at least two items with interactions.",
                        column=col_item)
    n_hold = min(max(1, round(fraction * len(universe))), len(universe) - 1)
    held = np.random.default_rng(seed).choice(universe, size=n_hold, replace=False)
    cold = items.isin(held).to_numpy()
    labels = np.where(cold, _TEST, _TRAIN).astype(np.int8)
    train, _, test = _split(interactions, labels)
    return ColdStartSplit(train, test)


def natural_order(ids) -> np.ndarray:
    """Ids (as strings) sorted numerically when all are integers, else as strings."""
    ids = np.asarray(pd.Series(ids, dtype=object).astype(str).to_numpy(), dtype=object)
    if not len(ids):
        return ids
    numeric = pd.Series(ids).str.fullmatch(r"[+-]?\d{1,18}").all()
    if numeric:
        order = np.lexsort((ids.astype(str), ids.astype(np.int64)))
    else:
        order = np.argsort(ids.astype(str), kind="stable")
    return ids[order]


# ---------------------------------------------------------------------- internals
def _timestamps(interactions: pd.DataFrame, col_time: str, what: str) -> np.ndarray:
    """The time column as float epoch seconds (``NaN`` where unknown).

    Raises:
        DataError: The column is missing or holds no timestamp at all.
    """
    if col_time not in interactions.columns:
        raise DataError(
            f"{what} needs a timestamp column, but the interactions have none (columns: "
            f"{', '.join(map(str, interactions.columns))}). Map the time column when loading "
            "(--time-col NAME on the command line, the time column on the Data page) or use "
            "the random per-user split.", column=col_time)
    times = pd.to_numeric(interactions[col_time], errors="coerce").to_numpy(np.float64)
    if len(times) and np.isnan(times).all():
        raise DataError(f"{what} needs timestamps, but no interaction has one. Map the time "
                        "column (--time-col NAME) or use the random per-user split.",
                        column=col_time)
    return times


def _describe_time(seconds: float) -> str:
    try:
        stamp = pd.Timestamp(float(seconds), unit="s", tz="UTC")
        return f"{stamp.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    except (ValueError, OverflowError, NotImplementedError, pd.errors.OutOfBoundsDatetime):
        return f"{float(seconds):g} s (epoch)"  # outside the calendar pandas can print


def _group_rows(users: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions grouped by user (users in natural id order, rows in input order)."""
    text = users.astype(str).to_numpy(dtype=object)
    ordered = natural_order(pd.unique(text))
    rank = pd.Index(ordered).get_indexer(text)
    rows = np.lexsort((np.arange(len(text)), rank))
    counts = np.bincount(rank, minlength=len(ordered))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
    return rows, starts, counts


def _split(frame: pd.DataFrame, labels: np.ndarray) -> Split:
    return Split(frame[labels == _TRAIN], frame[labels == _VALID], frame[labels == _TEST])


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {missing}; found {list(frame.columns)}")
