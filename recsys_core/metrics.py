"""Offline evaluation of top-k recommendations (in the style of Microsoft Recommenders'
``python_evaluation.py``).

Every metric is a pure function over DataFrames:

* ``rating_true`` holds the held-out (test) interactions, one row per relevant
  ``(user_id, item_id)`` pair (duplicates count once; other columns are ignored);
* ``rating_pred`` holds the recommendations: ``user_id``, ``item_id`` and a ``score`` (higher is
  better) or, when there is no score column, a ``rank`` (1 is best);
* ``train`` (beyond-accuracy metrics and slices) holds the training interactions.

Conventions shared by all ranking metrics:

* A user's top-k list is taken from ``rating_pred`` by score descending, ties broken by item id
  ascending so results are deterministic; ``NaN`` scores rank last. If an item appears several
  times for one user, only its best-scored row is kept (it can be a hit once).
* Averages are over the users in ``rating_true``. A user with no rows in ``rating_pred`` counts as
  0 for every ranking metric; users that only appear in ``rating_pred`` are ignored.
* Gains are binary (an item is relevant iff its pair is in ``rating_true``) and discounts use
  ``log2``.

Column names are keyword arguments defaulting to the module constants below.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .dataset import ITEM_COL, USER_COL
from .errors import RecScopeError

DEFAULT_USER_COL = USER_COL
DEFAULT_ITEM_COL = ITEM_COL
DEFAULT_PREDICTION_COL = "score"
DEFAULT_RANK_COL = "rank"
DEFAULT_K = 20
DEFAULT_HEAD_SHARE = 0.8
DEFAULT_LIGHT_USER_QUANTILE = 0.25

#: Columns of :func:`per_user_metrics` after the user column.
PER_USER_COLUMNS = ["n_test", "n_recommended", "hits", "precision", "recall", "ndcg", "hit",
                    "reciprocal_rank", "average_precision"]
#: Ranking metrics reported by :func:`slice_metrics` and :func:`evaluate_recommendations`,
#: mapped to the :func:`per_user_metrics` column they average.
RANKING_METRICS = {"recall": "recall", "precision": "precision", "ndcg": "ndcg",
                   "hit_rate": "hit", "mrr": "reciprocal_rank", "map": "average_precision"}

# Helper columns of the internal ordered/top-k frames.
_SCORE = "_score"
_USER_CODE = "_user_code"
_RANK = "_rank"


# ---------------------------------------------------------------------------------- errors
class MetricInputError(RecScopeError):
    """The inputs of a metric are unusable (wrong columns, types, empty, bad ``k``)."""


class ColumnMismatchError(MetricInputError):
    """A required column is missing from an input DataFrame."""


class ColumnTypeMismatchError(MetricInputError):
    """User or item ids have incompatible types across inputs (e.g. strings vs integers), so
    they could never match."""


class EmptyInputError(MetricInputError):
    """An input DataFrame has no rows."""


# ---------------------------------------------------------------------------------- top-k
def get_top_k_items(
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> pd.DataFrame:
    """Each user's top-``k`` items from ``rating_pred``.

    Items are ordered by ``col_prediction`` descending (or by ``col_rank`` ascending when the
    frame has no prediction column), ties by item id ascending, ``NaN`` scores last; repeated
    ``(user, item)`` pairs keep their best row only.

    Args:
        rating_pred (pandas.DataFrame): Recommendations with ``col_user``, ``col_item`` and
            ``col_prediction`` or ``col_rank``.
        k (int): List length per user (users with fewer candidates get shorter lists).
            (default: :obj:`20`)

    Returns:
        pandas.DataFrame: ``col_user``, ``col_item``, ``col_prediction`` (when present) and
        ``col_rank`` (1-based, recomputed), sorted by user (first appearance) then rank.

    Raises:
        ColumnMismatchError, EmptyInputError, MetricInputError: Unusable input.
    """
    _check_k(k)
    _check_pred(rating_pred, col_user, col_item, col_prediction, col_rank)
    top = _top(_order(rating_pred, col_user, col_item, col_prediction, col_rank), k)
    columns = [col_user, col_item] + ([col_prediction] if col_prediction in rating_pred else [])
    out = top[columns].copy()
    out[col_rank] = top[_RANK].to_numpy()
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------- ranking
def per_user_metrics(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> pd.DataFrame:
    r"""Ranking metrics of every user in ``rating_true``.

    With :math:`T_u` the user's test items, :math:`L_u` the top-:math:`k` list and
    :math:`\mathrm{rel}_r = 1` if the item at rank :math:`r` is in :math:`T_u`:

    * ``n_test`` :math:`= |T_u|`, ``n_recommended`` :math:`= |L_u| \le k`,
      ``hits`` :math:`= |L_u \cap T_u|`;
    * ``precision`` :math:`= \mathrm{hits} / k` (divided by :math:`k` even when the list is
      shorter, as in Spark and Microsoft Recommenders);
    * ``recall`` :math:`= \mathrm{hits} / |T_u|`;
    * ``ndcg`` :math:`= \mathrm{DCG} / \mathrm{IDCG}` with
      :math:`\mathrm{DCG} = \sum_{r \le k} \mathrm{rel}_r / \log_2(r + 1)` and the ideal DCG over
      :math:`\min(|T_u|, k)` positions;
    * ``hit`` :math:`= 1` if ``hits > 0`` else :math:`0`;
    * ``reciprocal_rank`` :math:`= 1 / r_1` for the first hit's rank :math:`r_1`, else :math:`0`;
    * ``average_precision`` :math:`= \frac{1}{\min(|T_u|, k)} \sum_{r \le k} \mathrm{rel}_r
      \cdot \mathrm{P@}r`.

    Users without any row in ``rating_pred`` get zeros.

    Args:
        rating_true (pandas.DataFrame): Test interactions with ``col_user`` and ``col_item``.
        rating_pred (pandas.DataFrame): Recommendations with ``col_user``, ``col_item`` and
            ``col_prediction`` (higher is better) or ``col_rank`` (1 is best).
        k (int): Cut-off of each user's list. (default: :obj:`20`)
        col_user (str): User id column. (default: :obj:`"user_id"`)
        col_item (str): Item id column. (default: :obj:`"item_id"`)
        col_prediction (str): Score column of ``rating_pred``. (default: :obj:`"score"`)
        col_rank (str): Rank column of ``rating_pred``, used only without a score column.
            (default: :obj:`"rank"`)

    Returns:
        pandas.DataFrame: One row per user of ``rating_true`` (first-appearance order) with
        ``col_user`` and :data:`PER_USER_COLUMNS`.

    Raises:
        ColumnMismatchError, ColumnTypeMismatchError, EmptyInputError, MetricInputError:
        Unusable input.
    """
    _check_ranking_inputs(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                          col_rank)
    ordered = _order(rating_pred, col_user, col_item, col_prediction, col_rank)
    return _per_user(rating_true, _top(ordered, k), k, col_user, col_item)


def recall_at_k(rating_true: pd.DataFrame, rating_pred: pd.DataFrame, k: int = DEFAULT_K,
                col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
                col_prediction: str = DEFAULT_PREDICTION_COL,
                col_rank: str = DEFAULT_RANK_COL) -> float:
    r"""Recall@k: mean over users of :math:`|L_u \cap T_u| / |T_u|` (see
    :func:`per_user_metrics`). Range [0, 1]; 1 is reachable even when :math:`|T_u| < k`."""
    return _mean_metric("recall", rating_true, rating_pred, k, col_user, col_item,
                        col_prediction, col_rank)


def precision_at_k(rating_true: pd.DataFrame, rating_pred: pd.DataFrame, k: int = DEFAULT_K,
                   col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
                   col_prediction: str = DEFAULT_PREDICTION_COL,
                   col_rank: str = DEFAULT_RANK_COL) -> float:
    r"""Precision@k: mean over users of :math:`|L_u \cap T_u| / k`. Range [0, 1]; the maximum
    is below 1 when users have fewer than ``k`` test items or recommendations."""
    return _mean_metric("precision", rating_true, rating_pred, k, col_user, col_item,
                        col_prediction, col_rank)


def ndcg_at_k(rating_true: pd.DataFrame, rating_pred: pd.DataFrame, k: int = DEFAULT_K,
              col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
              col_prediction: str = DEFAULT_PREDICTION_COL,
              col_rank: str = DEFAULT_RANK_COL) -> float:
    r"""NDCG@k with binary gains: mean over users of
    :math:`\sum_{r \le k} \mathrm{rel}_r / \log_2(r+1)` divided by the ideal DCG
    :math:`\sum_{r=1}^{\min(|T_u|, k)} 1 / \log_2(r+1)`. Range [0, 1]."""
    return _mean_metric("ndcg", rating_true, rating_pred, k, col_user, col_item,
                        col_prediction, col_rank)


def hit_rate_at_k(rating_true: pd.DataFrame, rating_pred: pd.DataFrame, k: int = DEFAULT_K,
                  col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
                  col_prediction: str = DEFAULT_PREDICTION_COL,
                  col_rank: str = DEFAULT_RANK_COL) -> float:
    """HitRate@k: fraction of users with at least one test item in their top-k list."""
    return _mean_metric("hit", rating_true, rating_pred, k, col_user, col_item,
                        col_prediction, col_rank)


def mrr_at_k(rating_true: pd.DataFrame, rating_pred: pd.DataFrame, k: int = DEFAULT_K,
             col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
             col_prediction: str = DEFAULT_PREDICTION_COL,
             col_rank: str = DEFAULT_RANK_COL) -> float:
    """MRR@k: mean over users of 1 / (rank of the first hit in the top-k list), 0 without a
    hit."""
    return _mean_metric("reciprocal_rank", rating_true, rating_pred, k, col_user, col_item,
                        col_prediction, col_rank)


def map_at_k(rating_true: pd.DataFrame, rating_pred: pd.DataFrame, k: int = DEFAULT_K,
             col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
             col_prediction: str = DEFAULT_PREDICTION_COL,
             col_rank: str = DEFAULT_RANK_COL) -> float:
    r"""MAP@k: mean over users of
    :math:`\frac{1}{\min(|T_u|, k)} \sum_{r \le k} \mathrm{rel}_r \cdot \mathrm{P@}r`
    (Spark's MAP@k normalisation). Range [0, 1]."""
    return _mean_metric("average_precision", rating_true, rating_pred, k, col_user, col_item,
                        col_prediction, col_rank)


def auc(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> float:
    r"""Per-user ROC AUC over the items scored in ``rating_pred``, averaged over users.

    For user :math:`u`, the positives :math:`P_u` are the test items (``rating_true``) and the
    negatives :math:`N_u` are the items scored for :math:`u` in ``rating_pred`` that are not
    test items. Then

    .. math::
        \mathrm{AUC}_u = \frac{1}{|P_u|\,|N_u|} \sum_{p \in P_u} \sum_{n \in N_u}
        \left( [s_p > s_n] + \tfrac12 [s_p = s_n] \right),

    where a positive missing from ``rating_pred`` counts as scored below every negative (it
    contributes 0). The result is the mean of :math:`\mathrm{AUC}_u` over users of
    ``rating_true`` with at least one negative; users without one (e.g. no predictions at all)
    are left out because AUC is undefined for them. All rows of ``rating_pred`` are used (no
    top-k cut): pass full score vectors, or the positives plus sampled negatives, for the usual
    full-ranking or sampled AUC. Repeated pairs keep their best score; ``NaN`` scores rank last.

    Returns:
        float: Mean AUC in [0, 1] (0.5 is random), or ``nan`` when no user has a negative.
    """
    _check_ranking_inputs(rating_true, rating_pred, 1, col_user, col_item, col_prediction,
                          col_rank)
    ordered = _order(rating_pred, col_user, col_item, col_prediction, col_rank)
    return _auc(rating_true, ordered, col_user, col_item)


# ---------------------------------------------------------------------------------- beyond accuracy
def catalog_coverage(
    train: pd.DataFrame | None,
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    num_items: int | None = None,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> float:
    """Catalog coverage: distinct items in all top-k lists / catalog size (Shani & Gunawardana,
    2010).

    Args:
        train (pandas.DataFrame, optional): Training interactions; with ``num_items=None`` the
            catalog is the items of ``train`` plus any recommended item.
        num_items (int, optional): Catalog size; takes precedence over ``train``.
            (default: :obj:`None`)

    Returns:
        float: Coverage in [0, 1].
    """
    _check_k(k)
    _check_pred(rating_pred, col_user, col_item, col_prediction, col_rank)
    if num_items is None:
        if train is None:
            raise MetricInputError("catalog_coverage needs the catalog size: pass num_items or "
                                   "the training interactions.")
        _check_frame(train, "train", [col_user, col_item])
        _check_same_kind(train, rating_pred, col_item, "train", "rating_pred")
    top = _top(_order(rating_pred, col_user, col_item, col_prediction, col_rank), k)
    return _coverage(train, top, num_items, col_item)


def novelty(
    train: pd.DataFrame,
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> float:
    r"""Mean self-information of recommended items (Castells et al., 2011, choice model).

    An item's novelty is :math:`-\log_2 p(i)` with :math:`p(i) = c(i) / |\mathrm{train}|`,
    :math:`c(i)` its number of training interactions. Items absent from ``train`` use
    :math:`c(i) = 1` (the rarest observable item) instead of an infinite value. The metric is
    the mean novelty of each user's top-k list, averaged over users with recommendations.

    Returns:
        float: Novelty in bits (higher means less popular recommendations).
    """
    top = _popularity_inputs(train, rating_pred, k, col_user, col_item, col_prediction,
                             col_rank)
    return _novelty(train, top, col_user, col_item)


def average_recommendation_popularity(
    train: pd.DataFrame,
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> float:
    r"""ARP (Abdollahpouri et al., 2019): mean over users of the mean number of training
    interactions of the items in their top-k list,
    :math:`\frac{1}{|U|} \sum_u \frac{1}{|L_u|} \sum_{i \in L_u} c(i)`.

    Returns:
        float: ARP in interactions per item (0 for items absent from ``train``).
    """
    top = _popularity_inputs(train, rating_pred, k, col_user, col_item, col_prediction,
                             col_rank)
    return _arp(train, top, col_user, col_item)


def popularity_bias(
    train: pd.DataFrame,
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    num_items: int | None = None,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> float:
    r"""Mean popularity percentile of recommended items, a scale-free popularity bias.

    An item's percentile is the mid-rank share of catalog items less popular than it,
    :math:`(|\{j: c(j) < c(i)\}| + \tfrac12 |\{j: c(j) = c(i)\}|) / M` (as
    ``scipy.stats.percentileofscore(kind="mean") / 100``), with :math:`c` the training
    interaction counts and :math:`M` the catalog size: ``num_items`` when given (items without
    training interactions have :math:`c = 0`), else the items of ``train`` plus any
    recommended item. The metric averages each user's list, then the users. A uniform random
    recommender scores about 0.5; always recommending the most popular items approaches 1.

    Returns:
        float: Mean percentile in [0, 1].
    """
    top = _popularity_inputs(train, rating_pred, k, col_user, col_item, col_prediction,
                             col_rank)
    return _popularity_percentile(train, top, num_items, col_user, col_item)


# ---------------------------------------------------------------------------------- slices
def head_items(train: pd.DataFrame, head_share: float = DEFAULT_HEAD_SHARE,
               col_item: str = DEFAULT_ITEM_COL) -> np.ndarray:
    """The popular head: the fewest most-interacted items that together hold at least
    ``head_share`` of the training interactions (ties by item id ascending).

    Args:
        train (pandas.DataFrame): Training interactions.
        head_share (float): Share of interactions held by the head, in (0, 1].
            (default: :obj:`0.8`)

    Returns:
        numpy.ndarray: Head item ids, most popular first. Every other item (including items
        absent from ``train``) is long tail.
    """
    if not 0.0 < head_share <= 1.0:
        raise MetricInputError(f"head_share must be in (0, 1], got {head_share}.")
    _check_frame(train, "train", [col_item])
    counts = _sorted_counts(train[col_item])
    cumulative = np.cumsum(counts.to_numpy()) / counts.sum()
    # First position whose cumulative share reaches head_share (tolerant to float rounding).
    n_head = int(np.searchsorted(cumulative, head_share - 1e-12, side="left")) + 1
    return counts.index[:n_head].to_numpy()


def cold_items(train: pd.DataFrame, rating_true: pd.DataFrame,
               col_item: str = DEFAULT_ITEM_COL) -> np.ndarray:
    """Test items with no training interaction (cold-start items), in first-appearance order."""
    _check_frame(train, "train", [col_item])
    _check_frame(rating_true, "rating_true", [col_item])
    test_items = pd.Index(pd.unique(rating_true[col_item]))
    return test_items[~test_items.isin(train[col_item])].to_numpy()


def light_users(train: pd.DataFrame, max_interactions: int | None = None,
                col_user: str = DEFAULT_USER_COL) -> np.ndarray:
    """Users with at most ``max_interactions`` training interactions.

    Args:
        train (pandas.DataFrame): Training interactions.
        max_interactions (int, optional): The threshold; ``None`` uses the lower quartile of
            the per-user interaction counts (floored), so the slice adapts to the dataset.
            (default: :obj:`None`)

    Returns:
        numpy.ndarray: User ids, in first-appearance order.
    """
    _check_frame(train, "train", [col_user])
    counts = train[col_user].value_counts(sort=False)
    if max_interactions is None:
        max_interactions = light_user_threshold(train, col_user=col_user)
    return counts.index[counts.to_numpy() <= max_interactions].to_numpy()


def light_user_threshold(train: pd.DataFrame, col_user: str = DEFAULT_USER_COL) -> int:
    """Default light-user threshold: the floored lower quartile of per-user train counts."""
    counts = train[col_user].value_counts(sort=False).to_numpy()
    return int(np.floor(np.quantile(counts, DEFAULT_LIGHT_USER_QUANTILE))) if len(counts) else 0


def slice_metrics(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    k: int = DEFAULT_K,
    users: Iterable | None = None,
    items: Iterable | None = None,
    exclude_items: Iterable | None = None,
    restrict_predictions: bool = True,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> dict:
    """Ranking metrics on a slice of users and/or items.

    The test interactions are restricted to ``users`` and to ``items`` (minus
    ``exclude_items``); with ``restrict_predictions`` the recommendations are restricted the
    same way, so each user's top-k list is re-ranked among slice items only (the cold-start
    protocol). For that to be meaningful ``rating_pred`` must score the slice items, e.g. full
    score vectors or recommendations with the slice as candidates. Averages are over users with
    at least one test interaction in the slice.

    Returns:
        dict: ``n_users``, ``n_items`` (distinct test items in the slice) and the
        :data:`RANKING_METRICS` as floats, or ``None`` for each metric when the slice holds no
        test interaction.
    """
    _check_ranking_inputs(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                          col_rank)
    ordered = _order(rating_pred, col_user, col_item, col_prediction, col_rank)
    return _slice(rating_true, ordered, k, users, items, exclude_items, restrict_predictions,
                  col_user, col_item)


def cold_item_metrics(rating_true: pd.DataFrame, rating_pred: pd.DataFrame,
                      train: pd.DataFrame, k: int = DEFAULT_K,
                      restrict_predictions: bool = True,
                      col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
                      col_prediction: str = DEFAULT_PREDICTION_COL,
                      col_rank: str = DEFAULT_RANK_COL) -> dict:
    """:func:`slice_metrics` on items without training interactions (see :func:`cold_items`);
    with ``restrict_predictions`` only items absent from ``train`` are ranked."""
    _check_ranking_inputs(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                          col_rank, train=train)
    ordered = _order(rating_pred, col_user, col_item, col_prediction, col_rank)
    return _slice(rating_true, ordered, k, None, None, pd.unique(train[col_item]),
                  restrict_predictions, col_user, col_item)


def long_tail_metrics(rating_true: pd.DataFrame, rating_pred: pd.DataFrame,
                      train: pd.DataFrame, k: int = DEFAULT_K,
                      head_share: float = DEFAULT_HEAD_SHARE,
                      restrict_predictions: bool = True,
                      col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
                      col_prediction: str = DEFAULT_PREDICTION_COL,
                      col_rank: str = DEFAULT_RANK_COL) -> dict:
    """:func:`slice_metrics` on long-tail items: every item outside :func:`head_items`
    (``head_share`` of the training interactions); the dict also holds ``n_head_items``."""
    _check_ranking_inputs(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                          col_rank, train=train)
    ordered = _order(rating_pred, col_user, col_item, col_prediction, col_rank)
    return _long_tail_slice(rating_true, ordered, train, k, head_share, restrict_predictions,
                            col_user, col_item)


def light_user_metrics(rating_true: pd.DataFrame, rating_pred: pd.DataFrame,
                       train: pd.DataFrame, k: int = DEFAULT_K,
                       max_interactions: int | None = None,
                       col_user: str = DEFAULT_USER_COL, col_item: str = DEFAULT_ITEM_COL,
                       col_prediction: str = DEFAULT_PREDICTION_COL,
                       col_rank: str = DEFAULT_RANK_COL) -> dict:
    """:func:`slice_metrics` on users with at most ``max_interactions`` training interactions
    (``None``: :func:`light_user_threshold`); the dict also holds the ``max_interactions``
    used. Test users absent from ``train`` have 0 interactions and are included."""
    _check_ranking_inputs(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                          col_rank, train=train)
    ordered = _order(rating_pred, col_user, col_item, col_prediction, col_rank)
    return _light_user_slice(rating_true, ordered, train, k, max_interactions, col_user,
                             col_item)


# ---------------------------------------------------------------------------------- all at once
def evaluate_recommendations(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    train: pd.DataFrame | None = None,
    k: int = DEFAULT_K,
    num_items: int | None = None,
    head_share: float = DEFAULT_HEAD_SHARE,
    light_user_max_interactions: int | None = None,
    col_user: str = DEFAULT_USER_COL,
    col_item: str = DEFAULT_ITEM_COL,
    col_prediction: str = DEFAULT_PREDICTION_COL,
    col_rank: str = DEFAULT_RANK_COL,
) -> dict:
    """Every metric of this module in one JSON-serialisable dict.

    ``rating_pred`` is sorted once and shared by all metrics, so passing full score vectors
    (for AUC and restricted slices) costs one sort.

    Args:
        rating_true (pandas.DataFrame): Test interactions.
        rating_pred (pandas.DataFrame): Recommendations (top-k lists or full score vectors).
        train (pandas.DataFrame, optional): Training interactions, needed for the
            popularity metrics and the slices. (default: :obj:`None`)
        k (int): List cut-off. (default: :obj:`20`)
        num_items (int, optional): Catalog size for coverage and popularity percentiles.
            (default: :obj:`None`)
        head_share (float): Interaction share of the popular head, see :func:`head_items`.
            (default: :obj:`0.8`)
        light_user_max_interactions (int, optional): Light-user threshold, see
            :func:`light_users`. (default: :obj:`None`)

    Returns:
        dict: ``k``, ``n_users`` (users in ``rating_true``), ``n_users_without_predictions``,
        the :data:`RANKING_METRICS` (``recall``, ``precision``, ``ndcg``, ``hit_rate``,
        ``mrr``, ``map``), ``auc`` (over all rows of ``rating_pred``, see :func:`auc`),
        ``catalog_coverage`` (needs ``num_items`` or ``train``), and with ``train``:
        ``novelty``, ``arp``, ``popularity_bias`` and ``slices`` = ``{"cold_items": ...,
        "long_tail": ..., "light_users": ...}`` (each a :func:`slice_metrics` dict). Values
        that cannot be computed are ``None``; numbers are plain Python ``float``/``int``.
    """
    _check_ranking_inputs(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                          col_rank, train=train)
    ordered = _order(rating_pred, col_user, col_item, col_prediction, col_rank)
    top = _top(ordered, k)
    per_user = _per_user(rating_true, top, k, col_user, col_item)
    result: dict = {
        "k": int(k),
        "n_users": len(per_user),
        "n_users_without_predictions": int(
            (~per_user[col_user].isin(pd.unique(ordered[col_user]))).sum()),
    }
    result.update({name: float(per_user[column].mean())
                   for name, column in RANKING_METRICS.items()})
    result["auc"] = _json_float(_auc(rating_true, ordered, col_user, col_item))
    result["catalog_coverage"] = (_coverage(train, top, num_items, col_item)
                                  if train is not None or num_items is not None else None)
    if train is None:
        result.update({"novelty": None, "arp": None, "popularity_bias": None, "slices": None})
        return result
    result["novelty"] = _novelty(train, top, col_user, col_item)
    result["arp"] = _arp(train, top, col_user, col_item)
    result["popularity_bias"] = _popularity_percentile(train, top, num_items, col_user,
                                                       col_item)
    result["slices"] = {
        "cold_items": _slice(rating_true, ordered, k, None, None, pd.unique(train[col_item]),
                             True, col_user, col_item),
        "long_tail": _long_tail_slice(rating_true, ordered, train, k, head_share, True,
                                      col_user, col_item),
        "light_users": _light_user_slice(rating_true, ordered, train, k,
                                         light_user_max_interactions, col_user, col_item),
    }
    return result


# ---------------------------------------------------------------------------------- internals
# Internal helpers take validated inputs. ``ordered`` is the output of :func:`_order`,
# ``top`` that of :func:`_top`; both keep the caller's user/item column names.


def _order(rating_pred, col_user, col_item, col_prediction, col_rank) -> pd.DataFrame:
    """Predictions sorted by user (first appearance), score desc, item id asc, with a float
    ``_score`` (higher is better, NaN -> -inf) and integer ``_user_code``; repeated pairs keep
    their best row."""
    if col_prediction in rating_pred:
        score = pd.to_numeric(rating_pred[col_prediction], errors="coerce")
    else:
        score = -pd.to_numeric(rating_pred[col_rank], errors="coerce")
    score = score.to_numpy(dtype=np.float64, na_value=np.nan)
    score = np.where(np.isnan(score), -np.inf, score)
    user_codes = pd.factorize(rating_pred[col_user])[0].astype(np.int64)
    item_codes = pd.factorize(rating_pred[col_item], sort=True)[0].astype(np.int64)
    order = np.lexsort((item_codes, -score, user_codes))
    # The best row of a repeated (user, item) pair comes first in this order.
    pair = user_codes[order] * (int(item_codes.max(initial=0)) + 1) + item_codes[order]
    order = order[~pd.Series(pair).duplicated().to_numpy()]
    keep = [col_user, col_item] + ([col_prediction] if col_prediction in rating_pred else [])
    ordered = rating_pred[keep].iloc[order].reset_index(drop=True)
    ordered[_SCORE] = score[order]
    ordered[_USER_CODE] = user_codes[order]
    return ordered


def _top(ordered: pd.DataFrame, k: int) -> pd.DataFrame:
    """The first ``k`` rows of every user of an ordered frame (or of a row subset of one),
    with a 1-based ``_rank``."""
    codes = ordered[_USER_CODE].to_numpy()
    n = len(codes)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if n else np.zeros(0, int)
    lengths = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, lengths) + 1
    top = ordered[rank <= k].copy()
    top[_RANK] = rank[rank <= k]
    return top.reset_index(drop=True)


def _per_user(rating_true, top, k, col_user, col_item) -> pd.DataFrame:
    truth = rating_true[[col_user, col_item]].drop_duplicates()
    n_test = truth.groupby(col_user, sort=False).size()
    users = n_test.index
    top = top[top[col_user].isin(users)]
    n_rec = top.groupby(col_user, sort=False).size().reindex(users, fill_value=0)

    hits = top[[col_user, col_item, _RANK]].merge(truth, on=[col_user, col_item], how="inner")
    hits = hits.sort_values([col_user, _RANK], kind="stable")
    rank = hits[_RANK].to_numpy(dtype=np.float64)
    hit_number = hits.groupby(col_user, sort=False).cumcount().to_numpy() + 1
    hits = pd.DataFrame({col_user: hits[col_user].to_numpy(),
                         "gain": 1.0 / np.log2(rank + 1.0),
                         "precision_at_hit": hit_number / rank,
                         "reciprocal": 1.0 / rank})
    per_hit = hits.groupby(col_user, sort=False).agg(
        hits=("gain", "size"), dcg=("gain", "sum"), ap_sum=("precision_at_hit", "sum"),
        reciprocal_rank=("reciprocal", "max")).reindex(users, fill_value=0)

    n = n_test.to_numpy(dtype=np.float64)
    n_hits = per_hit["hits"].to_numpy(dtype=np.float64)
    ideal_positions = np.minimum(n, k).astype(np.int64)
    ideal_dcg = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    return pd.DataFrame({
        col_user: users.to_numpy(),
        "n_test": n_test.to_numpy(dtype=np.int64),
        "n_recommended": n_rec.to_numpy(dtype=np.int64),
        "hits": n_hits.astype(np.int64),
        "precision": n_hits / k,
        "recall": n_hits / n,
        "ndcg": per_hit["dcg"].to_numpy(dtype=np.float64) / ideal_dcg[ideal_positions],
        "hit": (n_hits > 0).astype(np.float64),
        "reciprocal_rank": per_hit["reciprocal_rank"].to_numpy(dtype=np.float64),
        "average_precision": per_hit["ap_sum"].to_numpy(dtype=np.float64) / ideal_positions,
    })


def _auc(rating_true, ordered, col_user, col_item) -> float:
    truth = rating_true[[col_user, col_item]].drop_duplicates()
    n_pos = truth.groupby(col_user, sort=False).size()
    pred = ordered[ordered[col_user].isin(n_pos.index)]
    pred = pred[[col_user, col_item, _SCORE]].merge(truth.assign(_positive=True),
                                                   on=[col_user, col_item], how="left")
    positive = pred["_positive"].notna().to_numpy()
    # Mann-Whitney: the rank-sum of the positives counts the (positive, negative) pairs won,
    # ties counting one half.
    ranks = pred.groupby(col_user, sort=False)[_SCORE].rank(method="average").to_numpy()
    frame = pd.DataFrame({col_user: pred[col_user].to_numpy(),
                          "pos": positive.astype(np.float64),
                          "pos_rank": np.where(positive, ranks, 0.0),
                          "one": 1.0})
    sums = frame.groupby(col_user, sort=False).sum()
    scored_pos = sums["pos"].to_numpy()
    negatives = sums["one"].to_numpy() - scored_pos
    won = sums["pos_rank"].to_numpy() - scored_pos * (scored_pos + 1) / 2
    all_pos = n_pos.reindex(sums.index).to_numpy(dtype=np.float64)
    valid = negatives > 0
    if not valid.any():
        return math.nan
    return float(np.mean(won[valid] / (all_pos[valid] * negatives[valid])))


def _coverage(train, top, num_items, col_item) -> float:
    recommended = pd.Index(pd.unique(top[col_item]))
    if num_items is None:
        catalog = len(pd.Index(pd.unique(train[col_item])).union(recommended))
    else:
        catalog = int(num_items)
        if catalog < len(recommended):
            raise MetricInputError(f"num_items={num_items} is smaller than the "
                                   f"{len(recommended)} distinct items recommended.")
    return len(recommended) / catalog


def _item_counts(train, top, col_item) -> np.ndarray:
    """Training interaction count of every recommended row (0 for items absent from train)."""
    counts = train[col_item].value_counts(sort=False)
    return top[col_item].map(counts).fillna(0).to_numpy(dtype=np.float64)


def _novelty(train, top, col_user, col_item) -> float:
    counts = _item_counts(train, top, col_item)
    info = -np.log2(np.maximum(counts, 1.0) / len(train))
    return _mean_per_user(top[col_user], info)


def _arp(train, top, col_user, col_item) -> float:
    return _mean_per_user(top[col_user], _item_counts(train, top, col_item))


def _popularity_percentile(train, top, num_items, col_user, col_item) -> float:
    counts = train[col_item].value_counts(sort=False)
    known = len(pd.Index(counts.index).union(pd.Index(pd.unique(top[col_item]))))
    if num_items is not None and num_items < known:
        raise MetricInputError(f"num_items={num_items} is smaller than the {known} distinct "
                               "items in train and the recommendations.")
    size = known if num_items is None else int(num_items)
    # Catalog items without training interactions have count 0.
    catalog = np.sort(np.concatenate([counts.to_numpy(dtype=np.float64),
                                      np.zeros(size - len(counts))]))
    c = _item_counts(train, top, col_item)
    below = np.searchsorted(catalog, c, side="left")
    equal = np.searchsorted(catalog, c, side="right") - below
    return _mean_per_user(top[col_user], (below + 0.5 * equal) / size)


def _slice(rating_true, ordered, k, users, items, exclude_items, restrict_predictions,
           col_user, col_item) -> dict:
    truth = _restrict(rating_true, col_user, col_item, users, items, exclude_items)
    # A row subset of an ordered frame is still ordered: no re-sort needed.
    pred = (_restrict(ordered, col_user, col_item, users, items, exclude_items)
            if restrict_predictions else ordered)
    result: dict = {"n_users": int(truth[col_user].nunique()),
                    "n_items": int(truth[col_item].nunique())}
    if truth.empty:
        result.update(dict.fromkeys(RANKING_METRICS))
        return result
    per_user = _per_user(truth, _top(pred, k), k, col_user, col_item)
    result.update({name: float(per_user[column].mean())
                   for name, column in RANKING_METRICS.items()})
    return result


def _long_tail_slice(rating_true, ordered, train, k, head_share, restrict_predictions,
                     col_user, col_item) -> dict:
    head = head_items(train, head_share, col_item=col_item)
    result = _slice(rating_true, ordered, k, None, None, head, restrict_predictions, col_user,
                    col_item)
    result["n_head_items"] = len(head)
    return result


def _light_user_slice(rating_true, ordered, train, k, max_interactions, col_user,
                      col_item) -> dict:
    if max_interactions is None:
        max_interactions = light_user_threshold(train, col_user=col_user)
    counts = train[col_user].value_counts(sort=False)
    test_users = pd.Index(pd.unique(rating_true[col_user]))
    user_counts = counts.reindex(test_users).fillna(0).to_numpy()
    result = _slice(rating_true, ordered, k, test_users[user_counts <= max_interactions], None,
                    None, True, col_user, col_item)
    result["max_interactions"] = int(max_interactions)
    return result


def _mean_metric(column: str, rating_true, rating_pred, k, col_user, col_item, col_prediction,
                 col_rank) -> float:
    per_user = per_user_metrics(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                                col_rank)
    return float(per_user[column].mean())


def _popularity_inputs(train, rating_pred, k, col_user, col_item, col_prediction,
                       col_rank) -> pd.DataFrame:
    _check_k(k)
    _check_frame(train, "train", [col_user, col_item])
    _check_pred(rating_pred, col_user, col_item, col_prediction, col_rank)
    _check_same_kind(train, rating_pred, col_item, "train", "rating_pred")
    return _top(_order(rating_pred, col_user, col_item, col_prediction, col_rank), k)


def _mean_per_user(users: pd.Series, values: np.ndarray) -> float:
    per_user = pd.Series(values).groupby(users.to_numpy(), sort=False).mean()
    return float(per_user.mean())


def _sorted_counts(items: pd.Series) -> pd.Series:
    """Interaction counts per item, most popular first, ties by item id ascending."""
    counts = items.value_counts(sort=False)
    frame = pd.DataFrame({"item": counts.index, "count": counts.to_numpy()})
    frame = frame.sort_values(["count", "item"], ascending=[False, True], kind="stable")
    return pd.Series(frame["count"].to_numpy(), index=frame["item"].to_numpy())


def _restrict(frame, col_user, col_item, users, items, exclude_items) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    if users is not None:
        mask &= _isin(frame[col_user], users)
    if items is not None:
        mask &= _isin(frame[col_item], items)
    if exclude_items is not None:
        mask &= ~_isin(frame[col_item], exclude_items)
    return frame[mask]


def _isin(series: pd.Series, values: Iterable) -> np.ndarray:
    # De-duplicate first: pandas' Arrow-string isin walks ``values`` in Python.
    values = values if isinstance(values, (pd.Index, np.ndarray)) else list(values)
    return series.isin(pd.unique(np.asarray(values, dtype=object))).to_numpy()


def _json_float(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# ---------------------------------------------------------------------------------- validation
def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MetricInputError(f"k must be a positive integer, got {k!r}.")


def _check_frame(frame, name: str, columns: list[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise MetricInputError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ColumnMismatchError(
            f"{name} is missing column(s) {missing}; it has {list(map(str, frame.columns))}. "
            "Rename the columns or pass col_user/col_item/col_prediction.")
    if frame.empty:
        raise EmptyInputError(f"{name} has no rows; metrics need at least one interaction.")
    for column in columns:
        nulls = int(frame[column].isna().sum())
        if nulls:
            raise MetricInputError(f"{name} has {nulls} missing value(s) in column '{column}'.")


def _check_pred(rating_pred, col_user, col_item, col_prediction, col_rank) -> None:
    _check_frame(rating_pred, "rating_pred", [col_user, col_item])
    if col_prediction not in rating_pred.columns and col_rank not in rating_pred.columns:
        raise ColumnMismatchError(
            f"rating_pred needs a score column '{col_prediction}' or a rank column "
            f"'{col_rank}'; it has {list(map(str, rating_pred.columns))}.")


def _check_ranking_inputs(rating_true, rating_pred, k, col_user, col_item, col_prediction,
                          col_rank, train=None) -> None:
    _check_k(k)
    _check_frame(rating_true, "rating_true", [col_user, col_item])
    _check_pred(rating_pred, col_user, col_item, col_prediction, col_rank)
    for column in (col_user, col_item):
        _check_same_kind(rating_true, rating_pred, column, "rating_true", "rating_pred")
    if train is not None:
        _check_frame(train, "train", [col_user, col_item])
        for column in (col_user, col_item):
            _check_same_kind(rating_true, train, column, "rating_true", "train")


def _id_kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_string_dtype(series):
        return "string"
    return str(series.dtype)


def _check_same_kind(left: pd.DataFrame, right: pd.DataFrame, column: str, left_name: str,
                     right_name: str) -> None:
    a, b = _id_kind(left[column]), _id_kind(right[column])
    if a != b:
        raise ColumnTypeMismatchError(
            f"Column '{column}' holds {a} ids in {left_name} but {b} ids in {right_name}, so no "
            f"id can match. Convert both to the same type (e.g. .astype(str)).")
