"""Offline metrics against hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from recsys_core.errors import RecScopeError
from recsys_core.metrics import (
    PER_USER_COLUMNS,
    RANKING_METRICS,
    ColumnMismatchError,
    ColumnTypeMismatchError,
    EmptyInputError,
    MetricInputError,
    auc,
    average_recommendation_popularity,
    catalog_coverage,
    cold_item_metrics,
    cold_items,
    evaluate_recommendations,
    get_top_k_items,
    head_items,
    hit_rate_at_k,
    light_user_metrics,
    light_user_threshold,
    light_users,
    long_tail_metrics,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    per_user_metrics,
    popularity_bias,
    precision_at_k,
    recall_at_k,
    slice_metrics,
)

L2 = math.log2


def frame(rows, columns=("user_id", "item_id")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


@pytest.fixture
def truth() -> pd.DataFrame:
    # u1 -> {i1, i2, i3}; u2 -> {i4}; u3 -> {i5} (u3 gets no predictions at all)
    return frame([("u1", "i1"), ("u1", "i2"), ("u1", "i3"), ("u2", "i4"), ("u3", "i5")])


@pytest.fixture
def pred() -> pd.DataFrame:
    # Top-3 by score: u1 -> [i1, i9, i2] (i3 is 4th); u2 -> [i7, i4, i8]
    return frame([("u1", "i2", 0.7), ("u1", "i1", 0.9), ("u1", "i3", 0.1), ("u1", "i9", 0.8),
                  ("u2", "i7", 0.6), ("u2", "i4", 0.5), ("u2", "i8", 0.4)],
                 ("user_id", "item_id", "score"))


# Hand-computed at k=3.
# u1: hits at ranks 1 and 3 of [i1, i9, i2]; |T| = 3
#   recall 2/3, precision 2/3, DCG = 1/log2(2) + 1/log2(4) = 1.5,
#   IDCG = 1/log2(2) + 1/log2(3) + 1/log2(4), RR = 1, AP = (1/1 + 2/3) / min(3, 3)
# u2: hit at rank 2 of [i7, i4, i8]; |T| = 1
#   recall 1, precision 1/3, DCG = 1/log2(3), IDCG = 1, RR = 1/2, AP = (1/2) / 1
# u3: no predictions -> all zeros. Means are over the 3 users of rating_true.
U1_NDCG = 1.5 / (1 + 1 / L2(3) + 0.5)
U2_NDCG = 1 / L2(3)
U1_AP = (1 + 2 / 3) / 3
U2_AP = 0.5


def test_ranking_metrics_hand_computed(truth, pred):
    assert recall_at_k(truth, pred, k=3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert precision_at_k(truth, pred, k=3) == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert ndcg_at_k(truth, pred, k=3) == pytest.approx((U1_NDCG + U2_NDCG + 0) / 3)
    assert hit_rate_at_k(truth, pred, k=3) == pytest.approx(2 / 3)
    assert mrr_at_k(truth, pred, k=3) == pytest.approx((1 + 0.5 + 0) / 3)
    assert map_at_k(truth, pred, k=3) == pytest.approx((U1_AP + U2_AP + 0) / 3)


def test_per_user_metrics_rows(truth, pred):
    per_user = per_user_metrics(truth, pred, k=3)
    assert list(per_user.columns) == ["user_id", *PER_USER_COLUMNS]
    assert per_user["user_id"].tolist() == ["u1", "u2", "u3"]  # order of rating_true
    assert per_user["n_test"].tolist() == [3, 1, 1]
    assert per_user["n_recommended"].tolist() == [3, 3, 0]
    assert per_user["hits"].tolist() == [2, 1, 0]
    np.testing.assert_allclose(per_user["recall"], [2 / 3, 1, 0])
    np.testing.assert_allclose(per_user["ndcg"], [U1_NDCG, U2_NDCG, 0])
    np.testing.assert_allclose(per_user["hit"], [1, 1, 0])
    np.testing.assert_allclose(per_user["reciprocal_rank"], [1, 0.5, 0])
    np.testing.assert_allclose(per_user["average_precision"], [U1_AP, U2_AP, 0])


def test_k_larger_than_lists(truth, pred):
    # k=10: u1's whole list [i1, i9, i2, i3] -> hits at ranks 1, 3, 4 (all 3 test items)
    #   recall 1, precision 3/10, DCG = 1 + 1/log2(4) + 1/log2(5), IDCG over min(3, 10) = 3,
    #   AP = (1/1 + 2/3 + 3/4) / 3
    # u2 as before but precision 1/10.
    per_user = per_user_metrics(truth, pred, k=10).set_index("user_id")
    assert per_user.loc["u1", "recall"] == pytest.approx(1.0)
    assert per_user.loc["u1", "precision"] == pytest.approx(0.3)
    assert per_user.loc["u1", "ndcg"] == pytest.approx(
        (1 + 0.5 + 1 / L2(5)) / (1 + 1 / L2(3) + 0.5))
    assert per_user.loc["u1", "average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert per_user.loc["u2", "precision"] == pytest.approx(0.1)
    assert per_user.loc["u1", "n_recommended"] == 4


def test_ideal_dcg_uses_min_of_test_size_and_k():
    # 3 test items, k=2, both top-2 hits: DCG = IDCG = 1 + 1/log2(3) -> NDCG 1, recall 2/3.
    t = frame([("u", "a"), ("u", "b"), ("u", "c")])
    p = frame([("u", "a", 2.0), ("u", "b", 1.0)], ("user_id", "item_id", "score"))
    assert ndcg_at_k(t, p, k=2) == pytest.approx(1.0)
    assert recall_at_k(t, p, k=2) == pytest.approx(2 / 3)
    assert map_at_k(t, p, k=2) == pytest.approx(1.0)  # (1/1 + 2/2) / min(3, 2)


def test_duplicates_count_once(truth, pred):
    dup_pred = pd.concat([pred, frame([("u1", "i1", 0.05), ("u1", "i9", 0.95)],
                                      ("user_id", "item_id", "score"))])
    dup_truth = pd.concat([truth, frame([("u1", "i1")])])
    # The repeated i9 keeps its best score 0.95 -> u1's list becomes [i9, i1, i2]:
    # hits at ranks 2 and 3 -> recall 2/3, RR 1/2 (never a double-counted hit).
    per_user = per_user_metrics(dup_truth, dup_pred, k=3).set_index("user_id")
    assert per_user.loc["u1", "hits"] == 2
    assert per_user.loc["u1", "n_test"] == 3
    assert per_user.loc["u1", "reciprocal_rank"] == pytest.approx(0.5)
    assert recall_at_k(dup_truth, dup_pred, k=3) <= 1.0


def test_ties_broken_by_item_id_and_nan_last():
    p = frame([("u", "b", 1.0), ("u", "a", 1.0), ("u", "c", np.nan), ("u", "d", 0.5)],
              ("user_id", "item_id", "score"))
    top = get_top_k_items(p, k=4)
    assert top["item_id"].tolist() == ["a", "b", "d", "c"]
    assert top["rank"].tolist() == [1, 2, 3, 4]
    assert get_top_k_items(p, k=1)["item_id"].tolist() == ["a"]


def test_rank_column_without_scores(truth):
    p = frame([("u1", "i9", 2), ("u1", "i1", 1), ("u2", "i4", 1)], ("user_id", "item_id", "rank"))
    # u1: [i1, i9] -> recall 1/3; u2: [i4] -> recall 1; u3: 0
    assert recall_at_k(truth, p, k=2) == pytest.approx((1 / 3 + 1 + 0) / 3)


def test_custom_column_names_and_integer_ids():
    t = frame([(1, 10), (2, 20)], ("uid", "iid"))
    p = frame([(1, 10, 0.3), (1, 11, 0.9), (2, 20, 0.1)], ("uid", "iid", "pred"))
    # user 1: [11, 10] hit at rank 2 -> RR 1/2; user 2: [20] -> RR 1
    assert mrr_at_k(t, p, k=2, col_user="uid", col_item="iid",
                    col_prediction="pred") == pytest.approx(0.75)


def test_auc_hand_computed(truth, pred):
    # u1: positives i1 (.9), i2 (.7), i3 (.1); negative i9 (.8) -> 1 of 3 pairs won -> 1/3
    # u2: positive i4 (.5); negatives i7 (.6), i8 (.4) -> 1 of 2 pairs won -> 1/2
    # u3: no negatives -> left out. Mean = (1/3 + 1/2) / 2
    assert auc(truth, pred) == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_auc_ties_and_unscored_positives():
    t = frame([("u", "a"), ("u", "b"), ("v", "c")])
    p = frame([("u", "a", 0.5), ("u", "x", 0.5), ("u", "y", 0.1),
               ("v", "c", 0.2), ("v", "z", 0.9)], ("user_id", "item_id", "score"))
    # u: positives a (.5) and b (unscored: below every negative); negatives x (.5), y (.1)
    #   pairs: (a,x) tie 0.5, (a,y) 1, (b,x) 0, (b,y) 0 -> 1.5 / (2 * 2) = 0.375
    # v: c (.2) vs z (.9) -> 0. Mean = 0.1875
    assert auc(t, p) == pytest.approx((0.375 + 0.0) / 2)
    only_positives = frame([("u", "a", 1.0)], ("user_id", "item_id", "score"))
    assert math.isnan(auc(t, only_positives))


@pytest.fixture
def train() -> pd.DataFrame:
    # counts: i1 -> 2, i7 -> 1, i2 -> 1 (4 interactions)
    return frame([("x", "i1"), ("y", "i1"), ("x", "i7"), ("y", "i2")])


def test_catalog_coverage(pred, train):
    # top-3 lists hold {i1, i9, i2, i7, i4, i8} = 6 distinct items
    assert catalog_coverage(None, pred, k=3, num_items=10) == pytest.approx(0.6)
    # catalog from train {i1, i7, i2} plus recommended {i9, i4, i8} = 6 -> coverage 1
    assert catalog_coverage(train, pred, k=3) == pytest.approx(1.0)
    # top-1 lists: {i1, i7}; catalog = train {i1, i7, i2} (recommendations add nothing) -> 2/3
    assert catalog_coverage(train, pred, k=1) == pytest.approx(2 / 3)
    with pytest.raises(MetricInputError):
        catalog_coverage(None, pred, k=3)


def test_novelty_and_arp(pred, train):
    # top-2 lists: u1 [i1, i9], u2 [i7, i4]; p(i) = count / 4, unseen items use count 1
    # u1: -log2(2/4) = 1, -log2(1/4) = 2 -> 1.5; u2: -log2(1/4) = 2, 2 -> 2; mean 1.75
    assert novelty(train, pred, k=2) == pytest.approx(1.75)
    # ARP: u1 (2 + 0) / 2 = 1; u2 (1 + 0) / 2 = 0.5; mean 0.75
    assert average_recommendation_popularity(train, pred, k=2) == pytest.approx(0.75)


def test_popularity_bias(pred, train):
    # Catalog = train {i1, i7, i2} + recommended {i9, i4} -> counts sorted [0, 0, 1, 1, 2].
    # percentile = (#below + 0.5 * #equal) / 5:
    #   i1 (2): (4 + 0.5) / 5 = 0.9;  i9, i4 (0): (0 + 1) / 5 = 0.2;  i7 (1): (2 + 1) / 5 = 0.6
    # u1 [i1, i9] -> 0.55; u2 [i7, i4] -> 0.4; mean 0.475
    assert popularity_bias(train, pred, k=2) == pytest.approx(0.475)
    # num_items=10 -> 7 zero-count items: i1 (9 + .5)/10, zeros 3.5/10, i7 (7 + 1)/10
    # u1 (0.95 + 0.35) / 2 = 0.65; u2 (0.8 + 0.35) / 2 = 0.575; mean 0.6125
    assert popularity_bias(train, pred, k=2, num_items=10) == pytest.approx(0.6125)
    with pytest.raises(MetricInputError):
        popularity_bias(train, pred, k=2, num_items=3)


def test_head_items_and_light_users():
    t = frame([("u1", "A")] * 5 + [("u2", "B")] * 3 + [("u3", "D"), ("u3", "C")])
    # counts A 5, B 3, C 1, D 1 (10): cumulative shares 0.5, 0.8, 0.9, 1.0
    assert head_items(t, 0.8).tolist() == ["A", "B"]
    assert head_items(t, 0.5).tolist() == ["A"]
    assert head_items(t, 0.85).tolist() == ["A", "B", "C"]  # C before D: tie broken by id
    assert light_users(t, max_interactions=2).tolist() == ["u3"]
    # per-user counts [5, 3, 2] -> lower quartile 2.5 -> floored threshold 2
    assert light_user_threshold(t) == 2
    assert light_users(t).tolist() == ["u3"]
    with pytest.raises(MetricInputError):
        head_items(t, 0.0)


@pytest.fixture
def slice_case():
    train = frame([("u1", "A"), ("u2", "A"), ("u3", "A"), ("u1", "B"), ("u2", "B")])
    truth = frame([("u1", "C"), ("u2", "A"), ("u2", "D"), ("u3", "D")])
    scores = {"u1": {"A": 0.9, "C": 0.8, "D": 0.1},
              "u2": {"A": 0.7, "C": 0.6, "D": 0.5},
              "u3": {"C": 0.9, "D": 0.8, "A": 0.2}}
    pred = frame([(u, i, s) for u, row in scores.items() for i, s in row.items()],
                 ("user_id", "item_id", "score"))
    return train, truth, pred


def test_cold_item_slice(slice_case):
    train, truth, pred = slice_case
    assert cold_items(train, truth).tolist() == ["C", "D"]
    # Cold items C, D. Truth: u1 {C}, u2 {D}, u3 {D}. Ranking only C/D at k=1:
    # u1 [C] hit; u2 [C] miss; u3 [C] miss -> recall 1/3
    result = cold_item_metrics(truth, pred, train, k=1)
    assert result["n_users"] == 3 and result["n_items"] == 2
    assert result["recall"] == pytest.approx(1 / 3)
    # Without restricting predictions the top-1 of u1/u2 is the warm item A -> only misses
    unrestricted = cold_item_metrics(truth, pred, train, k=1, restrict_predictions=False)
    assert unrestricted["recall"] == pytest.approx(0.0)


def test_long_tail_and_light_user_slices(slice_case):
    train, truth, pred = slice_case
    # head_share 0.6: A holds 3/5 = 0.6 -> head {A}; tail truth u1 {C}, u2 {D}, u3 {D}
    result = long_tail_metrics(truth, pred, train, k=1, head_share=0.6)
    assert result["n_head_items"] == 1
    assert result["recall"] == pytest.approx(1 / 3)
    # Light users (<= 1 train interaction): u3 only; its top-2 [C, D] hits D at rank 2
    light = light_user_metrics(truth, pred, train, k=2, max_interactions=1)
    assert light["n_users"] == 1 and light["max_interactions"] == 1
    assert light["recall"] == pytest.approx(1.0)
    assert light["ndcg"] == pytest.approx(1 / L2(3))


def test_empty_slice_reports_none(truth, pred):
    result = slice_metrics(truth, pred, k=3, items=["nope"])
    assert result["n_users"] == 0
    assert all(result[name] is None for name in RANKING_METRICS)


def test_evaluate_recommendations(truth, pred, train):
    result = evaluate_recommendations(truth, pred, train=train, k=3, num_items=10)
    json.dumps(result)  # JSON-able
    assert result["k"] == 3 and result["n_users"] == 3
    assert result["n_users_without_predictions"] == 1
    assert result["recall"] == pytest.approx(recall_at_k(truth, pred, k=3))
    assert result["ndcg"] == pytest.approx(ndcg_at_k(truth, pred, k=3))
    assert result["map"] == pytest.approx(map_at_k(truth, pred, k=3))
    assert result["auc"] == pytest.approx(auc(truth, pred))
    assert result["catalog_coverage"] == pytest.approx(0.6)
    assert result["novelty"] == pytest.approx(novelty(train, pred, k=3))
    assert result["popularity_bias"] == pytest.approx(popularity_bias(train, pred, k=3,
                                                                      num_items=10))
    assert set(result["slices"]) == {"cold_items", "long_tail", "light_users"}
    assert result["slices"]["cold_items"] == cold_item_metrics(truth, pred, train, k=3)
    bare = evaluate_recommendations(truth, pred, k=3)
    assert bare["novelty"] is None and bare["slices"] is None and bare["catalog_coverage"] is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_loop(seed):
    """Vectorised metrics equal a plain per-user loop on random data."""
    rng = np.random.default_rng(seed)
    users, items, k = [f"u{i}" for i in range(15)], [f"i{i:02d}" for i in range(30)], 5
    truth = frame([(u, i) for u in users[:-2] for i in rng.choice(items, rng.integers(1, 6),
                                                                     replace=False)])
    pred = frame([(u, i, float(rng.integers(0, 8))) for u in users[1:] for i in items],
                 ("user_id", "item_id", "score"))  # integer scores: many ties
    recalls, ndcgs, aps = [], [], []
    for user, group in truth.groupby("user_id", sort=False):
        relevant = set(group["item_id"])
        mine = pred[pred["user_id"] == user].sort_values(["score", "item_id"],
                                                         ascending=[False, True])
        top = mine["item_id"].tolist()[:k]
        rel = [item in relevant for item in top]
        recalls.append(sum(rel) / len(relevant))
        dcg = sum(r / L2(pos + 2) for pos, r in enumerate(rel))
        ndcgs.append(dcg / sum(1 / L2(pos + 2) for pos in range(min(len(relevant), k))))
        precisions = [sum(rel[:pos + 1]) / (pos + 1) for pos in range(len(rel)) if rel[pos]]
        aps.append(sum(precisions) / min(len(relevant), k))
    assert recall_at_k(truth, pred, k=k) == pytest.approx(np.mean(recalls))
    assert ndcg_at_k(truth, pred, k=k) == pytest.approx(np.mean(ndcgs))
    assert map_at_k(truth, pred, k=k) == pytest.approx(np.mean(aps))


def test_errors_are_named(truth, pred):
    with pytest.raises(EmptyInputError):
        recall_at_k(truth.iloc[:0], pred)
    with pytest.raises(EmptyInputError):
        recall_at_k(truth, pred.iloc[:0])
    with pytest.raises(ColumnMismatchError, match="item_id"):
        recall_at_k(truth.rename(columns={"item_id": "movie"}), pred)
    with pytest.raises(ColumnMismatchError, match="score"):
        recall_at_k(truth, pred.drop(columns="score"))
    numeric = truth.assign(item_id=range(len(truth)))
    with pytest.raises(ColumnTypeMismatchError):
        recall_at_k(numeric, pred)
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(MetricInputError):
            recall_at_k(truth, pred, k=bad_k)
    with pytest.raises(MetricInputError, match="missing value"):
        recall_at_k(pd.concat([truth, frame([(None, "i1")])]), pred)
    assert issubclass(MetricInputError, RecScopeError)
    assert issubclass(EmptyInputError, MetricInputError)


def test_auc_rows_of_score_blocks_equal_the_frame_auc():
    """The tensor AUC the CLI streams over blocks of users is the frame definition: ties count
    one half, excluded (non-finite) items are no negatives, an excluded positive counts as
    ranked below every negative, rows without a negative are undefined."""
    import torch

    from recsys_core.tensor_metrics import auc_rows

    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 5, size=(6, 12)).astype(np.float64))  # ties
    scores[0, 3] = float("-inf")  # a positive seen in training
    scores[2, :] = float("-inf")
    scores[2, 0] = 1.0  # only its positive is scored: no negative
    positives = torch.zeros(6, 12, dtype=torch.bool)
    positives[0, [1, 3, 5]] = positives[1, 2] = positives[2, 0] = positives[4, [0, 11]] = True
    positives[3, :] = True  # every item a positive: no negative
    values, defined = auc_rows(scores, positives)
    assert defined.tolist() == [True, True, False, False, True, False]
    assert values[~defined].isnan().all()
    pred = pd.DataFrame([(u, i, float(scores[u, i])) for u in range(6) for i in range(12)
                         if np.isfinite(float(scores[u, i]))],
                        columns=["user_id", "item_id", "score"])
    truth = pd.DataFrame([(u, i) for u in range(6) for i in range(12) if positives[u, i]],
                         columns=["user_id", "item_id"])
    assert float(values[defined].mean()) == pytest.approx(auc(truth, pred))
    # Row 0 by hand: negatives are the 8 finite non-positives; the excluded positive wins 0.
    negatives = [float(scores[0, i]) for i in range(12) if i not in (1, 3, 5)]
    won = sum((p > n) + 0.5 * (p == n) for p in (float(scores[0, 1]), float(scores[0, 5]))
              for n in negatives)
    assert float(values[0]) == pytest.approx(won / (3 * len(negatives)))
