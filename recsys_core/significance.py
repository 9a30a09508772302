"""Uncertainty of offline metrics: per-user bootstrap confidence intervals and paired tests.

Pure functions over DataFrames, in the style of Microsoft Recommenders'
``python_evaluation.py``. A ranking metric is a mean over test users, so its uncertainty is
the uncertainty of that mean over the population of users the test split samples:

* :func:`per_user_metrics` gives one row per test user (``recall``, ``precision``, ``ndcg``,
  ``map``, ``hit``; a user without predictions counts as 0 everywhere);
* :func:`bootstrap_ci` resamples those users with replacement (the percentile bootstrap of
  :func:`scipy.stats.bootstrap`) and returns the interval that holds the central
  ``confidence`` share of the resampled means;
* :func:`metrics_with_ci` does that for every metric column;
* :func:`paired_test` compares two models scored on the *same* users: it joins their per-user
  tables on the user column and tests the per-user differences, by a paired bootstrap or by
  the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`).

Every draw comes from a :func:`numpy.random.default_rng` generator seeded by the caller
(:func:`recsys_core.rng.numpy_generator`); nothing touches NumPy's global generator, so the same
inputs and seed give the same intervals and p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from . import metrics as _metrics
from .metrics import (
    DEFAULT_ITEM_COL,
    DEFAULT_K,
    DEFAULT_PREDICTION_COL,
    DEFAULT_RANK_COL,
    DEFAULT_USER_COL,
    ColumnMismatchError,
    EmptyInputError,
    MetricInputError,
)
from .rng import numpy_generator

#: Per-user metric columns of :func:`per_user_metrics`, in display order.
METRICS = ("recall", "precision", "ndcg", "map", "hit")
#: :func:`recsys_core.metrics.per_user_metrics` column behind each of :data:`METRICS`.
SOURCE_COLUMNS = {"recall": "recall", "precision": "precision", "ndcg": "ndcg",
                  "map": "average_precision", "hit": "hit"}
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
#: Methods of :func:`paired_test`.
PAIRED_METHODS = ("bootstrap", "wilcoxon")


class SignificanceInputError(MetricInputError):
    """The inputs of an interval or a test are unusable (no users in common, non-finite
    values, a bad confidence level or method)."""


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate (the mean) with its bootstrap interval.

    Args:
        estimate (float): Mean of the values.
        low (float): Lower bound of the interval.
        high (float): Upper bound of the interval.
        confidence (float): Coverage the interval aims at, e.g. 0.95.
        n (int): Number of values (users) it rests on.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's width (a "±" figure)."""
        return (self.high - self.low) / 2.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """Outcome of :func:`paired_test`.

    Args:
        metric (str): The per-user column compared.
        mean_a (float): Mean of model A over the common users.
        mean_b (float): Mean of model B over the common users.
        difference (float): ``mean_a - mean_b``.
        low (float): Lower bound of the paired-bootstrap interval of the difference.
        high (float): Upper bound of that interval.
        p_value (float): Two-sided p-value of "no difference" under ``method``.
        n_users (int): Users in both tables (the pairs tested).
        method (str): ``"bootstrap"`` or ``"wilcoxon"``.
        confidence (float): Coverage of ``[low, high]``.
        n_dropped_a (int): Users of A's table missing from B's (left out).
        n_dropped_b (int): Users of B's table missing from A's (left out).
    """

    metric: str
    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    p_value: float
    n_users: int
    method: str
    confidence: float = DEFAULT_CONFIDENCE
    n_dropped_a: int = 0
    n_dropped_b: int = 0

    @property
    def n_dropped(self) -> int:
        """Users present in only one of the two tables."""
        return self.n_dropped_a + self.n_dropped_b

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return self.p_value < alpha

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------- per user
def per_user_metrics(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> pd.DataFrame:
    """The top-``k`` ranking metrics of every test user, the sample the intervals resample.

    The definitions are those of :func:`recsys_core.metrics.per_user_metrics` (binary gains,
    ``precision`` divided by ``k``, ``map`` normalised by :math:`\\min(|T_u|, k)`); a user of
    ``rating_true`` without any row in ``rating_pred`` gets 0 for every metric, so a model is
    not rewarded for skipping users.

    Args:
        rating_true (pandas.DataFrame): Test interactions with ``col_user`` and ``col_item``.
        rating_pred (pandas.DataFrame): Recommendations with ``col_user``, ``col_item`` and
            ``col_prediction`` (higher is better) or ``col_rank`` (1 is best).
        k (int): Cut-off of each user's list. (default: :obj:`20`)
        col_user (str): User id column. (default: :obj:`"user_id"`)
        col_item (str): Item id column. (default: :obj:`"item_id"`)
        col_prediction (str): Score column of ``rating_pred``. (default: :obj:`"score"`)
        col_rank (str): Rank column, used only without a score column. (default: :obj:`"rank"`)

    Returns:
        pandas.DataFrame: ``col_user`` then :data:`METRICS`, one row per user of
        ``rating_true`` (first-appearance order).

    Raises:
        ColumnMismatchError, ColumnTypeMismatchError, EmptyInputError, MetricInputError:
        Unusable input.
    """
    return metric_columns(
        _metrics.per_user_metrics(rating_true, rating_pred, k=k, col_user=col_user,
                                  col_item=col_item, col_prediction=col_prediction,
                                  col_rank=col_rank),
        col_user=col_user)


def metric_columns(per_user: pd.DataFrame, col_user: str = DEFAULT_USER_COL) -> pd.DataFrame:
    """A table of :func:`recsys_core.metrics.per_user_metrics` in the columns of
    :func:`per_user_metrics` (``col_user`` then :data:`METRICS` as floats, e.g.
    ``average_precision`` -> ``map``), the sample the intervals and tests resample.

    Args:
        per_user (pandas.DataFrame): ``col_user`` and the :data:`SOURCE_COLUMNS` values.
        col_user (str): User id column. (default: :obj:`"user_id"`)
    """
    out = pd.DataFrame({col_user: per_user[col_user].to_numpy()})
    for name in METRICS:
        out[name] = per_user[SOURCE_COLUMNS[name]].to_numpy(dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------- intervals
def bootstrap_ci(
    values,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of the mean of ``values``.

    ``n_resamples`` samples of ``len(values)`` values are drawn with replacement (by
    :func:`scipy.stats.bootstrap` with ``method="percentile"``, from a generator seeded with
    ``seed``); the interval runs from the :math:`(1-c)/2` to the :math:`(1+c)/2` quantile of
    their means, :math:`c` being ``confidence``. With one value every resample equals it, so
    the interval is that value.

    Args:
        values (array-like): One number per user (e.g. a column of
            :func:`per_user_metrics`).
        confidence (float): Coverage, strictly between 0 and 1. (default: :obj:`0.95`)
        n_resamples (int): Bootstrap resamples. (default: :obj:`1000`)
        seed (int): Seed of the resampling generator. (default: :obj:`0`)

    Returns:
        ConfidenceInterval: The mean and its interval.

    Raises:
        EmptyInputError: ``values`` is empty.
        SignificanceInputError: A value is not finite, or a bad ``confidence`` /
            ``n_resamples``.
    """
    x = _finite_array(values, "values")
    _check_settings(confidence, n_resamples)
    estimate = float(x.mean())
    if len(x) == 1 or np.all(x == x[0]):
        return ConfidenceInterval(estimate, estimate, estimate, float(confidence), len(x))
    low, high, _ = _bootstrap_mean(x, confidence, n_resamples, seed)
    return ConfidenceInterval(estimate, low, high, float(confidence), len(x))


def metrics_with_ci(
    per_user: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Every metric's mean over users with its :func:`bootstrap_ci` interval.

    All metrics use the same ``seed``, so they are resampled over the same user draws.

    Args:
        per_user (pandas.DataFrame): One row per user, e.g. :func:`per_user_metrics`.
        metrics (sequence of str, optional): Columns to summarise; by default the columns of
            :data:`METRICS` present in ``per_user``. (default: :obj:`None`)
        confidence (float): Coverage. (default: :obj:`0.95`)
        n_resamples (int): Bootstrap resamples. (default: :obj:`1000`)
        seed (int): Seed of the resampling generator. (default: :obj:`0`)

    Returns:
        pandas.DataFrame: Columns ``metric``, ``value``, ``low``, ``high`` (one row per metric,
        in order), plus ``confidence`` and ``n_users``.

    Raises:
        ColumnMismatchError: A requested column is missing, or none of :data:`METRICS` is
            present.
        EmptyInputError, SignificanceInputError: As :func:`bootstrap_ci`.
    """
    if not isinstance(per_user, pd.DataFrame):
        raise MetricInputError(
            f"per_user must be a pandas DataFrame, got {type(per_user).__name__}.")
    if metrics is None:
        metrics = [m for m in METRICS if m in per_user.columns]
        if not metrics:
            raise ColumnMismatchError(
                f"per_user has none of the metric columns {list(METRICS)}; it has "
                f"{list(map(str, per_user.columns))}. Pass metrics=[...] to name them.")
    missing = [m for m in metrics if m not in per_user.columns]
    if missing:
        raise ColumnMismatchError(
            f"per_user is missing metric column(s) {missing}; it has "
            f"{list(map(str, per_user.columns))}.")
    rows = []
    for name in metrics:
        ci = bootstrap_ci(per_user[name], confidence, n_resamples, seed)
        rows.append({"metric": name, "value": ci.estimate, "low": ci.low, "high": ci.high,
                     "confidence": ci.confidence, "n_users": ci.n})
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high", "confidence",
                                       "n_users"])


# ---------------------------------------------------------------------------------- paired tests
def paired_test(
    per_user_a: pd.DataFrame,
    per_user_b: pd.DataFrame,
    metric: str,
    method: str = "bootstrap",
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    col_user: str = DEFAULT_USER_COL,
) -> PairedTest:
    """Is model A's mean ``metric`` different from model B's on the same users?

    The two per-user tables are joined on ``col_user`` (users in only one table are left out
    and counted in ``n_dropped_a`` / ``n_dropped_b``); with :math:`d_u = a_u - b_u` over the
    :math:`n` common users and :math:`\\bar d` their mean:

    * ``low``, ``high``: percentile bootstrap interval of :math:`\\bar d`, users resampled in
      pairs (both methods report it);
    * ``method="bootstrap"``: the two-sided p-value of the paired bootstrap, the share of
      resampled means at least as far from :math:`\\bar d` as :math:`\\bar d` is from 0
      (the bootstrap distribution shifted to the null),
      :math:`p = (1 + \\#\\{b : |\\bar d^*_b - \\bar d| \\ge |\\bar d|\\}) / (1 + B)`;
    * ``method="wilcoxon"``: the p-value of :func:`scipy.stats.wilcoxon` on the :math:`d_u`
      (zero differences dropped, as its default ``zero_method="wilcox"``).

    When every difference is 0 there is nothing to test and the p-value is 1.

    Args:
        per_user_a (pandas.DataFrame): Model A's per-user table (:func:`per_user_metrics`).
        per_user_b (pandas.DataFrame): Model B's, over the same test users.
        metric (str): Column to compare, e.g. ``"ndcg"``.
        method (str): ``"bootstrap"`` or ``"wilcoxon"``. (default: :obj:`"bootstrap"`)
        confidence (float): Coverage of the difference's interval. (default: :obj:`0.95`)
        n_resamples (int): Bootstrap resamples. (default: :obj:`1000`)
        seed (int): Seed of the resampling generator. (default: :obj:`0`)
        col_user (str): User column joining the tables. (default: :obj:`"user_id"`)

    Returns:
        PairedTest: Means, difference, its interval, the p-value and the user counts.

    Raises:
        ColumnMismatchError: A table lacks ``col_user`` or ``metric``.
        SignificanceInputError: No user in common, repeated users, non-finite values or an
            unknown ``method``.
    """
    if method not in PAIRED_METHODS:
        raise SignificanceInputError(
            f"method must be one of {list(PAIRED_METHODS)}, got {method!r}.")
    _check_settings(confidence, n_resamples)
    for name, frame in (("per_user_a", per_user_a), ("per_user_b", per_user_b)):
        if not isinstance(frame, pd.DataFrame):
            raise MetricInputError(f"{name} must be a pandas DataFrame, got "
                                   f"{type(frame).__name__}.")
        missing = [c for c in (col_user, metric) if c not in frame.columns]
        if missing:
            raise ColumnMismatchError(
                f"{name} is missing column(s) {missing}; it has "
                f"{list(map(str, frame.columns))}.")
        repeated = int(frame[col_user].duplicated().sum())
        if repeated:
            raise SignificanceInputError(
                f"{name} has {repeated} repeated user(s) in column '{col_user}'; a per-user "
                "table needs one row per user.")
    a = per_user_a[[col_user, metric]].copy()
    b = per_user_b[[col_user, metric]].copy()
    # Join on the ids as text so that 7 and "7" are one user.
    a["_key"] = a[col_user].astype(str)
    b["_key"] = b[col_user].astype(str)
    joined = a[["_key", metric]].merge(b[["_key", metric]], on="_key", how="inner",
                                       suffixes=("_a", "_b"))
    n = len(joined)
    dropped_a, dropped_b = len(a) - n, len(b) - n
    if n == 0:
        raise SignificanceInputError(
            f"the two per-user tables have no user in common (column '{col_user}': "
            f"{len(a)} and {len(b)} users); a paired test needs both models scored on the "
            "same test users.")
    xa = _finite_array(joined[f"{metric}_a"], "per_user_a")
    xb = _finite_array(joined[f"{metric}_b"], "per_user_b")
    d = xa - xb
    diff = float(d.mean())
    if np.all(d == d[0]):
        # Every resample has the same mean: the interval is a point.
        low = high = diff
        p_value = 1.0 if diff == 0 else 1.0 / (n_resamples + 1)
        if method == "wilcoxon":
            p_value = 1.0 if diff == 0 else _wilcoxon_p(d)
    else:
        low, high, boot = _bootstrap_mean(d, confidence, n_resamples, seed)
        if method == "bootstrap":
            extreme = int(np.count_nonzero(np.abs(boot - diff) >= abs(diff)))
            p_value = min(1.0, (1 + extreme) / (1 + len(boot)))
        else:
            p_value = _wilcoxon_p(d)
    return PairedTest(metric=metric, mean_a=float(xa.mean()), mean_b=float(xb.mean()),
                      difference=diff, low=low, high=high, p_value=float(p_value),
                      n_users=n, method=method, confidence=float(confidence),
                      n_dropped_a=dropped_a, n_dropped_b=dropped_b)


def paired_tests(
    per_user_a: pd.DataFrame,
    per_user_b: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    method: str = "bootstrap",
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    col_user: str = DEFAULT_USER_COL,
) -> pd.DataFrame:
    """:func:`paired_test` for several metrics, as a table (one row per metric).

    Args:
        per_user_a (pandas.DataFrame): Model A's per-user table.
        per_user_b (pandas.DataFrame): Model B's.
        metrics (sequence of str, optional): Columns to compare; by default those of
            :data:`METRICS` present in both tables. (default: :obj:`None`)
        method (str): ``"bootstrap"`` or ``"wilcoxon"``. (default: :obj:`"bootstrap"`)
        confidence (float): Coverage. (default: :obj:`0.95`)
        n_resamples (int): Bootstrap resamples. (default: :obj:`1000`)
        seed (int): Seed. (default: :obj:`0`)
        col_user (str): User column. (default: :obj:`"user_id"`)

    Returns:
        pandas.DataFrame: The fields of :class:`PairedTest`, one row per metric.
    """
    if metrics is None:
        metrics = [m for m in METRICS if m in per_user_a.columns and m in per_user_b.columns]
        if not metrics:
            raise ColumnMismatchError(
                f"the per-user tables share none of the metric columns {list(METRICS)}.")
    rows = [paired_test(per_user_a, per_user_b, m, method=method, confidence=confidence,
                        n_resamples=n_resamples, seed=seed, col_user=col_user).as_dict()
            for m in metrics]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- internals
def _bootstrap_mean(x: np.ndarray, confidence: float, n_resamples: int,
                    seed: int) -> tuple[float, float, np.ndarray]:
    """Percentile interval and bootstrap distribution of the mean of ``x`` (len >= 2)."""
    result = stats.bootstrap((x,), np.mean, n_resamples=int(n_resamples), vectorized=True,
                             confidence_level=confidence, method="percentile",
                             rng=numpy_generator(seed))
    interval = result.confidence_interval
    return float(interval.low), float(interval.high), np.asarray(result.bootstrap_distribution)


def _wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the differences ``d``; 1 when all are 0."""
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def _finite_array(values, name: str) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise SignificanceInputError(f"{name} must hold numbers: {exc}.") from None
    if x.size == 0:
        raise EmptyInputError(f"{name} is empty; an interval needs at least one user.")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise SignificanceInputError(
            f"{name} has {bad} missing or non-finite value(s); give every user a number "
            "(a user without predictions scores 0).")
    return x


def _check_settings(confidence: float, n_resamples: int) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)) \
            or not 0 < confidence < 1 or math.isnan(confidence):
        raise SignificanceInputError(
            f"confidence must be strictly between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
            or n_resamples < 1:
        raise SignificanceInputError(
            f"n_resamples must be a positive integer, got {n_resamples!r}.")


__all__ = [
    "ConfidenceInterval", "METRICS", "PAIRED_METHODS", "PairedTest", "SignificanceInputError",
    "bootstrap_ci", "metric_columns", "metrics_with_ci", "paired_test", "paired_tests",
    "per_user_metrics",
]
