"""recsys_core.significance against hand-computed cases, scipy, and under a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recsys_core.metrics import ColumnMismatchError, EmptyInputError
from recsys_core.significance import (
    METRICS,
    ConfidenceInterval,
    PairedTest,
    SignificanceInputError,
    bootstrap_ci,
    metrics_with_ci,
    paired_test,
    paired_tests,
    per_user_metrics,
)


# ---------------------------------------------------------------------------------- per user
def test_per_user_metrics_hand_computed():
    truth = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["1", "2", "3", "4"]})
    # a: list 1, 9 (one hit of two at rank 1); b: list 9, 3 (hit at rank 2); c: no predictions.
    pred = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["1", "9", "9", "3"],
                         "score": [2.0, 1.0, 2.0, 1.0]})
    out = per_user_metrics(truth, pred, k=2).set_index("user_id")
    assert list(out.columns) == list(METRICS)
    assert list(out.index) == ["a", "b", "c"]
    assert out.loc["a", "recall"] == pytest.approx(0.5)
    assert out.loc["a", "precision"] == pytest.approx(0.5)
    assert out.loc["a", "ndcg"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))
    assert out.loc["a", "map"] == pytest.approx(0.5)  # (1/1) / min(2, 2)
    assert out.loc["b", "recall"] == pytest.approx(1.0)
    assert out.loc["b", "ndcg"] == pytest.approx(1.0 / np.log2(3))
    assert out.loc["b", "map"] == pytest.approx(0.5)  # (1/2) / min(1, 2)
    assert out.loc["a", "hit"] == out.loc["b", "hit"] == 1.0
    assert (out.loc["c"] == 0).all()  # no predictions: zeros, not dropped


def test_per_user_metrics_named_columns():
    truth = pd.DataFrame({"u": ["x"], "i": ["1"]})
    pred = pd.DataFrame({"u": ["x"], "i": ["1"], "s": [1.0]})
    out = per_user_metrics(truth, pred, k=1, col_user="u", col_item="i", col_prediction="s")
    assert out.iloc[0].to_dict() == {"u": "x", "recall": 1.0, "precision": 1.0, "ndcg": 1.0,
                                     "map": 1.0, "hit": 1.0}
    with pytest.raises(ColumnMismatchError):
        per_user_metrics(truth, pred, k=1)


# ---------------------------------------------------------------------------------- bootstrap_ci
def test_constant_values_give_a_point_interval():
    ci = bootstrap_ci([0.25] * 7)
    assert ci == ConfidenceInterval(0.25, 0.25, 0.25, 0.95, 7)
    one = bootstrap_ci([3.0])
    assert (one.estimate, one.low, one.high, one.n) == (3.0, 3.0, 3.0, 1)


def test_two_values_interval_spans_both():
    # Resampled means of {0, 1} are 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4: the 2.5%
    # and 97.5% quantiles of 1000 of them are 0 and 1.
    ci = bootstrap_ci([0.0, 1.0], n_resamples=1000, seed=3)
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_interval_matches_normal_approximation():
    # 400 users, half hit: the mean's standard error is sqrt(0.25 / 400) = 0.025, so the 95%
    # interval is about 0.5 +- 1.96 * 0.025 = [0.451, 0.549].
    values = np.repeat([0.0, 1.0], 200)
    ci = bootstrap_ci(values, n_resamples=4000, seed=1)
    assert ci.estimate == 0.5
    assert ci.low == pytest.approx(0.451, abs=0.01)
    assert ci.high == pytest.approx(0.549, abs=0.01)
    narrow = bootstrap_ci(values, confidence=0.5, n_resamples=4000, seed=1)
    assert ci.low < narrow.low < 0.5 < narrow.high < ci.high  # ~0.5 +- 0.674 * 0.025


def test_bootstrap_is_deterministic_under_a_seed():
    values = np.random.default_rng(5).random(50)
    assert bootstrap_ci(values, seed=11) == bootstrap_ci(values, seed=11)
    assert bootstrap_ci(values, seed=11) != bootstrap_ci(values, seed=12)
    state = np.random.get_state()[1].copy()
    bootstrap_ci(values, seed=11)
    assert np.array_equal(np.random.get_state()[1], state)  # global generator untouched


@pytest.mark.parametrize("bad", [[], [1.0, np.nan], [np.inf]])
def test_bootstrap_refuses_empty_and_non_finite(bad):
    with pytest.raises((EmptyInputError, SignificanceInputError)):
        bootstrap_ci(bad)


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0}, {"n_resamples": 0}])
def test_bootstrap_refuses_bad_settings(kwargs):
    with pytest.raises(SignificanceInputError):
        bootstrap_ci([0.0, 1.0], **kwargs)


# ---------------------------------------------------------------------------------- metrics_with_ci
def test_metrics_with_ci_table():
    per_user = pd.DataFrame({"user_id": list("abcd"), "recall": [0.0, 1.0, 0.0, 1.0],
                             "ndcg": [0.5] * 4, "other": [9.0] * 4})
    table = metrics_with_ci(per_user, seed=4)
    assert list(table["metric"]) == ["recall", "ndcg"]
    assert list(table.columns[:4]) == ["metric", "value", "low", "high"]
    rec = table.set_index("metric").loc["recall"]
    assert rec["value"] == 0.5 and rec["low"] < 0.5 < rec["high"] and rec["n_users"] == 4
    ndcg = table.set_index("metric").loc["ndcg"]
    assert (ndcg["low"], ndcg["value"], ndcg["high"]) == (0.5, 0.5, 0.5)
    assert metrics_with_ci(per_user, seed=4).equals(table)
    with pytest.raises(ColumnMismatchError, match="missing"):
        metrics_with_ci(per_user, metrics=["map"])
    with pytest.raises(ColumnMismatchError):
        metrics_with_ci(per_user[["user_id", "other"]])


# ---------------------------------------------------------------------------------- paired tests
def _tables(a, b, users_a=None, users_b=None):
    users_a = users_a or [str(i) for i in range(len(a))]
    users_b = users_b or [str(i) for i in range(len(b))]
    return (pd.DataFrame({"user_id": users_a, "ndcg": a}),
            pd.DataFrame({"user_id": users_b, "ndcg": b}))


def test_identical_models_have_p_one():
    a, b = _tables([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    for method in ("bootstrap", "wilcoxon"):
        test = paired_test(a, b, "ndcg", method=method)
        assert (test.difference, test.low, test.high, test.p_value) == (0.0, 0.0, 0.0, 1.0)
        assert test.n_users == 3 and test.n_dropped == 0


def test_constant_improvement_bootstrap_p_is_minimal():
    # Every user gains exactly 0.25: all resampled mean differences equal 0.25, none is as far
    # from 0.25 as 0.25 is from 0, so p = 1 / (B + 1).
    a, b = _tables([0.5, 0.75, 1.0, 0.25], [0.25, 0.5, 0.75, 0.0])
    test = paired_test(a, b, "ndcg", n_resamples=999)
    assert test == PairedTest("ndcg", 0.625, 0.375, 0.25, 0.25, 0.25, 1 / 1000, 4, "bootstrap")


def test_paired_bootstrap_hand_checked():
    rng = np.random.default_rng(0)
    b = rng.random(200)
    a = b + 0.05 + rng.normal(0, 0.01, 200)  # a clear, consistent gain
    ta, tb = _tables(list(a), list(b))
    test = paired_test(ta, tb, "ndcg", n_resamples=2000, seed=2)
    assert test.difference == pytest.approx(float(np.mean(a - b)))
    assert test.low < test.difference < test.high
    assert test.low > 0.04 and test.high < 0.06
    assert test.p_value == pytest.approx(1 / 2001)
    # No real difference: noise around 0 gives a large p-value and an interval around 0.
    noise = rng.normal(0, 0.1, 200)
    ta, tb = _tables(list(b + noise - noise.mean()), list(b))
    null = paired_test(ta, tb, "ndcg", n_resamples=2000, seed=2)
    assert null.low < 0 < null.high and null.p_value > 0.5
    assert paired_test(ta, tb, "ndcg", n_resamples=2000, seed=2) == null


def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.random(30), rng.random(30)
    a[:4] = b[:4]  # some ties (zero differences) too
    ta, tb = _tables(list(a), list(b))
    test = paired_test(ta, tb, "ndcg", method="wilcoxon")
    assert test.p_value == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert test.method == "wilcoxon"
    assert test.mean_a == pytest.approx(a.mean()) and test.mean_b == pytest.approx(b.mean())


def test_paired_test_joins_on_common_users():
    a = pd.DataFrame({"user_id": [1, 2, 3, 4], "ndcg": [1.0, 0.0, 1.0, 0.5]})
    b = pd.DataFrame({"user_id": ["3", "2", "1", "9", "8"], "ndcg": [0.0, 0.0, 0.0, 1.0, 1.0]})
    test = paired_test(a, b, "ndcg", method="wilcoxon")
    assert (test.n_users, test.n_dropped_a, test.n_dropped_b) == (3, 1, 2)
    assert test.mean_a == pytest.approx(2 / 3) and test.mean_b == 0.0
    table = paired_tests(a, b)
    assert list(table["metric"]) == ["ndcg"] and table.loc[0, "n_users"] == 3


def test_paired_test_errors():
    a, b = _tables([0.1, 0.2], [0.3, 0.4], users_b=["x", "y"])
    with pytest.raises(SignificanceInputError, match="no user in common"):
        paired_test(a, b, "ndcg")
    a, b = _tables([0.1, 0.2], [0.3, 0.4])
    with pytest.raises(SignificanceInputError, match="method"):
        paired_test(a, b, "ndcg", method="t-test")
    with pytest.raises(ColumnMismatchError, match="recall"):
        paired_test(a, b, "recall")
    dup = pd.DataFrame({"user_id": ["0", "0"], "ndcg": [0.1, 0.2]})
    with pytest.raises(SignificanceInputError, match="repeated"):
        paired_test(dup, b, "ndcg")
