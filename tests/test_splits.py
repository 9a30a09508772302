"""Splits: the BENCHMARK.md protocol exactly, no leakage, determinism, temporal and cold start."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_core.dataset import ITEM_COL, TIME_COL, USER_COL
from recsys_core.errors import DataError
from recsys_core.splits import (
    SPLIT_METHODS,
    benchmark_split,
    cold_start_item_split,
    describe_split,
    global_time_split,
    natural_order,
    parse_time_cut,
    per_user_random_split,
    split_interactions,
    temporal_leave_last_out,
)


def random_interactions(seed: int = 0, users: int = 40, items: int = 60,
                        rows: int = 900) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({USER_COL: rng.integers(1, users + 1, rows).astype(str),
                          ITEM_COL: rng.integers(1, items + 1, rows).astype(str),
                          "rating": rng.integers(1, 6, rows).astype(float),
                          TIME_COL: rng.integers(0, 10_000, rows).astype(float)})
    return frame.drop_duplicates([USER_COL, ITEM_COL]).reset_index(drop=True)


def pair_set(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame[USER_COL], frame[ITEM_COL], strict=True))


def reference_protocol(frame: pd.DataFrame, seed: int = 42):
    """BENCHMARK.md written out naively: users by integer id, one generator, per-user perms."""
    rng = np.random.default_rng(seed)
    test, valid = set(), set()
    for user in sorted(frame[USER_COL].unique(), key=int):
        rows = frame[frame[USER_COL] == user]
        n = len(rows)
        if n < 5:
            continue
        perm = rng.permutation(n)
        n_test, n_valid = max(1, round(0.1 * n)), max(1, round(0.1 * n))
        items = rows[ITEM_COL].to_numpy()
        test |= {(user, i) for i in items[perm[:n_test]]}
        valid |= {(user, i) for i in items[perm[n_test:n_test + n_valid]]}
    return test, valid


def assert_partition(frame, parts, excluded=0):
    index = np.concatenate([p.index.to_numpy() for p in parts])
    assert len(index) == len(set(index)) == len(frame) - excluded
    sets = [pair_set(p) for p in parts]
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            assert not sets[a] & sets[b], "a (user, item) pair is in two splits"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benchmark_split_matches_protocol(seed):
    frame = random_interactions(seed)
    train, valid, test = benchmark_split(frame)
    ref_test, ref_valid = reference_protocol(frame)
    assert pair_set(test) == ref_test and pair_set(valid) == ref_valid
    small = frame[USER_COL].map(frame[USER_COL].value_counts()) < 5
    assert_partition(frame, (train, valid, test), excluded=int(small.sum()))
    assert not set(frame[USER_COL][small]) & set(pd.concat([train, valid, test])[USER_COL])


def test_numeric_user_order_not_string_order():
    assert natural_order(["10", "9", "100", "1"]).tolist() == ["1", "9", "10", "100"]
    assert natural_order(["b", "a10", "a9"]).tolist() == ["a10", "a9", "b"]
    assert natural_order(["01", "1", "2"]).tolist() == ["01", "1", "2"]


def test_per_user_ratios_and_counts():
    frame = pd.DataFrame({USER_COL: ["1"] * 25 + ["2"] * 5 + ["3"] * 4,
                          ITEM_COL: [str(i) for i in range(34)]})
    train, valid, test = per_user_random_split(frame, test_ratio=0.2, valid_ratio=0.1, seed=3)
    sizes = lambda f: f[USER_COL].value_counts().to_dict()  # noqa: E731
    assert sizes(test) == {"1": 5, "2": 1} and sizes(valid) == {"1": 2, "2": 1}
    assert sizes(train) == {"1": 18, "2": 3}
    train, valid, test = per_user_random_split(frame, small_users="train")
    assert (train[USER_COL] == "3").sum() == 4


def test_no_valid_split_and_train_never_empty():
    frame = pd.DataFrame({USER_COL: ["a"] * 2, ITEM_COL: ["x", "y"]})
    train, valid, test = per_user_random_split(frame, valid_ratio=0.0, min_interactions=2)
    assert len(valid) == 0 and len(test) == 1 and len(train) == 1


def test_split_is_deterministic_and_pure():
    frame = random_interactions(5)
    before = frame.copy()
    a = per_user_random_split(frame, seed=11)
    b = per_user_random_split(frame, seed=11)
    c = per_user_random_split(frame, seed=12)
    pd.testing.assert_frame_equal(frame, before)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert pair_set(a.test) != pair_set(c.test)
    assert a.train.index.is_monotonic_increasing  # input order and index kept


def test_invalid_arguments():
    frame = random_interactions()
    with pytest.raises(ValueError):
        per_user_random_split(frame, test_ratio=0.6, valid_ratio=0.5)
    with pytest.raises(ValueError, match="lack column"):
        per_user_random_split(frame.rename(columns={USER_COL: "u"}))


# ---------------------------------------------------------------------- temporal
def test_temporal_leave_last_out():
    frame = random_interactions(3)
    train, valid, test = temporal_leave_last_out(frame)
    assert_partition(frame, (train, valid, test))
    counts = frame[USER_COL].value_counts()
    eligible = set(counts[counts > 2].index)
    assert set(test[USER_COL]) == eligible and test[USER_COL].is_unique
    last = frame.groupby(USER_COL)[TIME_COL].max()
    assert (test.set_index(USER_COL)[TIME_COL] == last[test[USER_COL]].to_numpy()).all()
    merged = valid.merge(test, on=USER_COL, suffixes=("_v", "_t"))
    assert (merged[f"{TIME_COL}_v"] <= merged[f"{TIME_COL}_t"]).all()
    latest_train = train.groupby(USER_COL)[TIME_COL].max()
    earliest_held = pd.concat([valid, test]).groupby(USER_COL)[TIME_COL].min()
    assert (latest_train[earliest_held.index] <= earliest_held).all()


def test_temporal_ties_nan_and_small_users():
    frame = pd.DataFrame({USER_COL: ["a", "a", "a", "a", "b", "b"],
                          ITEM_COL: ["1", "2", "3", "4", "1", "2"],
                          TIME_COL: [5.0, np.nan, 5.0, 1.0, 1.0, 2.0]})
    train, valid, test = temporal_leave_last_out(frame)
    assert test[ITEM_COL].tolist() == ["3"]  # tie at t=5: the later row is "later"
    assert valid[ITEM_COL].tolist() == ["1"]
    assert set(train[ITEM_COL][train[USER_COL] == "a"]) == {"2", "4"}  # NaN counts as oldest
    assert (train[USER_COL] == "b").sum() == 2  # too few interactions: all in train
    train, valid, test = temporal_leave_last_out(frame, n_test=2, n_valid=0)
    assert len(valid) == 0 and test[ITEM_COL].tolist() == ["1", "3"]


def test_temporal_needs_timestamps():
    frame = pd.DataFrame({USER_COL: ["a", "a"], ITEM_COL: ["1", "2"], TIME_COL: [np.nan] * 2})
    with pytest.raises(DataError, match="needs timestamps"):
        temporal_leave_last_out(frame)


def test_temporal_names_the_missing_time_column():
    frame = random_interactions(3).drop(columns=[TIME_COL])
    with pytest.raises(DataError, match="column 'timestamp'.*--time-col"):
        temporal_leave_last_out(frame)
    with pytest.raises(DataError, match="column 'when'"):
        global_time_split(frame, col_time="when")


# ---------------------------------------------------------------------- global time cut
def test_global_time_cut_by_quantile_hand_computed():
    frame = pd.DataFrame({USER_COL: ["a", "a", "b", "b", "c", "a", "b", "d"],
                          ITEM_COL: list("12345678"),
                          TIME_COL: [10, 20, 30, 40, 50, 60, 70, 80]})
    # The lower 0.75 quantile of the 8 times is 60: rows at 70 and 80 are after the cut; user
    # d has no training interaction and is left out.
    train, valid, test = global_time_split(frame, quantile=0.75)
    assert list(train.index) == [0, 1, 2, 3, 4, 5] and valid.empty
    assert list(test.index) == [6]
    assert_partition(frame, (train, valid, test), excluded=1)
    _, _, kept = global_time_split(frame, quantile=0.75, drop_new_users=False)
    assert list(kept.index) == [6, 7]
    assert test[TIME_COL].min() > train[TIME_COL].max()  # never trains on the future


def test_global_time_cut_by_date_and_epoch():
    day = 86_400.0
    base = pd.Timestamp("2021-03-01", tz="UTC").timestamp()
    frame = pd.DataFrame({USER_COL: ["a", "a", "a", "b", "b"], ITEM_COL: list("12345"),
                          TIME_COL: [base, base + day, base + 3 * day, base, base + 2 * day]})
    by_date = global_time_split(frame, cut="2021-03-02")
    assert list(by_date.test.index) == [2, 4]
    assert parse_time_cut("2021-03-02") == base + day
    assert list(global_time_split(frame, cut=base + day).test.index) == [2, 4]
    # NaN times count as the oldest: train
    frame.loc[1, TIME_COL] = np.nan
    assert 1 in global_time_split(frame, cut="2021-03-02").train.index


def test_global_time_cut_errors():
    frame = random_interactions(2)
    with pytest.raises(DataError, match="no interaction is after"):
        global_time_split(frame, cut=1e12)
    with pytest.raises(DataError, match="not a date"):
        global_time_split(frame, cut="next tuesday-ish")
    with pytest.raises(ValueError):
        global_time_split(frame, quantile=1.0)
    frame[TIME_COL] = np.nan
    with pytest.raises(DataError, match="no interaction has one"):
        global_time_split(frame)


@pytest.mark.parametrize("method", SPLIT_METHODS)
def test_split_interactions_by_name(method):
    frame = random_interactions(5)
    split = split_interactions(frame, method, seed=3)
    again = split_interactions(frame, method, seed=3)
    for part, same in zip(split, again, strict=True):
        assert part.index.equals(same.index)
    assert not split.test.empty and not split.train.empty
    assert not pair_set(split.train) & pair_set(split.test)
    assert describe_split(method)
    with pytest.raises(ValueError, match="unknown split"):
        split_interactions(frame, "by-moon-phase")


# ---------------------------------------------------------------------- cold start
def test_cold_start_items_absent_from_train():
    frame = random_interactions(4)
    train, test = cold_start_item_split(frame)
    cold = set(test[ITEM_COL])
    assert not cold & set(train[ITEM_COL])
    assert len(cold) == round(0.1 * frame[ITEM_COL].nunique())
    assert len(train) + len(test) == len(frame)
    assert_partition(frame, (train, test))
    # every interaction of a held-out item is in test
    assert len(test) == frame[ITEM_COL].isin(cold).sum()


def test_cold_start_protocol_choice_and_seed():
    frame = random_interactions(6)
    universe = natural_order(frame[ITEM_COL].unique())
    expected = set(np.random.default_rng(7).choice(universe, size=round(0.1 * len(universe)),
                                                   replace=False))
    assert set(cold_start_item_split(frame).test[ITEM_COL]) == expected
    other = set(cold_start_item_split(frame, seed=8).test[ITEM_COL])
    assert other != expected


def test_cold_start_on_tiny_dataset(tiny_dataset):
    train, test = cold_start_item_split(tiny_dataset.interactions, fraction=0.3, seed=0)
    assert len(set(test[ITEM_COL])) == 3
    assert not set(test[ITEM_COL]) & set(train[ITEM_COL])
    sub = tiny_dataset.subset_interactions(train)
    assert sub.num_items == tiny_dataset.num_items  # ids stay stable for cold items
