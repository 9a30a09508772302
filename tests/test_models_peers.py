"""The neighbourhood peers (RP3beta, ItemKNN) and the cold-start peer (text-pop), on tiny data:
scores against dense references written out in NumPy, and every model end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fast_model, random_item_text

from recsys_core.dataset import Dataset
from recsys_core.models import get_model_class
from recsys_core.models.itemknn import ItemKNNRecommender
from recsys_core.models.neighbours import top_k_per_row
from recsys_core.models.rp3beta import RP3betaRecommender
from recsys_core.models.text_pop import TextPopRecommender, ridge_popularity

PEERS = ["rp3beta", "itemknn", "text-pop"]

#: 5 users x 6 items; item 5 has no interaction (cold).
MATRIX_5x6 = np.array([
    [1, 1, 0, 1, 0, 0],
    [1, 0, 1, 0, 1, 0],
    [0, 1, 1, 1, 0, 0],
    [1, 1, 1, 0, 1, 0],
    [0, 0, 1, 1, 1, 0],
], dtype=np.float64)


def dataset_from_matrix(matrix: np.ndarray) -> Dataset:
    users, items = np.nonzero(matrix)
    inter = pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items],
                          "rating": 1.0, "timestamp": np.nan})
    catalogue = pd.DataFrame({"item_id": [f"i{i}" for i in range(matrix.shape[1])],
                              "title": [f"Item {i}" for i in range(matrix.shape[1])],
                              "description": ""})
    return Dataset(inter, catalogue)


def dense_matrix(ds: Dataset) -> np.ndarray:
    """The interactions as a dense matrix in the dataset's index order."""
    x = np.zeros((ds.num_users, ds.num_items))
    x[ds.interactions["user_idx"], ds.interactions["item_idx"]] = 1.0
    return x


def reference_top_k(similarity: np.ndarray, k: int) -> np.ndarray:
    """Each row's k largest positive entries (ties: lower column), the rest 0; a plain loop."""
    out = np.zeros_like(similarity)
    for r, row in enumerate(similarity):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]
        for c in order:
            if row[c] > 0:
                out[r, c] = row[c]
    return out


def reference_rp3beta(x: np.ndarray, alpha: float, beta: float, k: int) -> np.ndarray:
    """Paudel et al.'s RP3beta, dense: W = (P_iu P_ui) * pop^-beta, top-k per row, X W."""
    user_degree, item_degree = x.sum(axis=1), x.sum(axis=0)
    p_ui = np.where(x > 0, (x / np.maximum(user_degree, 1)[:, None]) ** alpha, 0.0)
    p_iu = np.where(x.T > 0, (x.T / np.maximum(item_degree, 1)[:, None]) ** alpha, 0.0)
    discount = np.where(item_degree > 0, np.maximum(item_degree, 1) ** -beta, 0.0)
    w = (p_iu @ p_ui) * discount[None, :]
    np.fill_diagonal(w, 0.0)
    return x @ reference_top_k(w, k)


def reference_itemknn(x: np.ndarray, k: int, shrink: float) -> np.ndarray:
    """Shrunk cosine, top-k neighbours per target item (columns), X W."""
    norms = np.sqrt(x.sum(axis=0))
    sim = (x.T @ x) / (np.outer(norms, norms) + shrink + 1e-300)
    np.fill_diagonal(sim, 0.0)
    neighbours_of_target = reference_top_k(sim, k)  # row j: j's neighbours
    return x @ neighbours_of_target.T


def make_peer(name: str, ds: Dataset):
    """``name`` with the fast settings but 3 neighbours, text-pop on 8-d random texts."""
    return fast_model(name, ds, text_dim=8, **({} if name == "text-pop" else {"neighbours": 3}))


# ---------------------------------------------------------------------------- top-k helper
def test_top_k_per_row_keeps_largest_positive_and_lower_index_on_ties():
    block = np.array([[0.5, 0.9, 0.5, 0.5, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 0.0],
                      [-1.0, 2.0, 0.0, 0.0, 0.0]])
    rows, cols = top_k_per_row(block, 2)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (0, 1), (2, 1)]
    rows, cols = top_k_per_row(block, 10)  # k above the width: every positive entry
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [
        (0, 0), (0, 1), (0, 2), (0, 3), (2, 1)]


# ---------------------------------------------------------------------------- RP3beta
@pytest.mark.parametrize("alpha, beta, k", [(1.0, 0.0, 6), (1.0, 0.5, 6), (0.5, 0.25, 2),
                                            (0.75, 1.0, 1)])
def test_rp3beta_equals_dense_reference(alpha, beta, k):
    ds = dataset_from_matrix(MATRIX_5x6)
    x = dense_matrix(ds)
    model = RP3betaRecommender(alpha=alpha, beta=beta, neighbours=k).fit(ds, ds.interactions)
    expected = reference_rp3beta(x, alpha, beta, k)
    np.testing.assert_allclose(model.score(np.arange(ds.num_users)), expected, rtol=1e-5,
                               atol=1e-7)
    assert np.diff(model.weights.indptr).max() <= k
    assert not model.weights.diagonal().any()


def test_rp3beta_hand_checked_weight():
    """Items 0 and 1 share users 0 and 3: W_01 = sum_u (1/d_0)(1/d_u) * d_1^-beta."""
    ds = dataset_from_matrix(MATRIX_5x6)
    model = RP3betaRecommender(alpha=1.0, beta=0.5, neighbours=6).fit(ds, ds.interactions)
    i0, i1 = ds.item_idx(["i0", "i1"])
    # d_i0 = 3 (users 0, 1, 3); d_u0 = 3, d_u3 = 4; d_i1 = 3 (users 0, 2, 3).
    expected = (1 / 3) * (1 / 3 + 1 / 4) * 3 ** -0.5
    assert model.weights[i0, i1] == pytest.approx(expected, rel=1e-6)


def test_rp3beta_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        RP3betaRecommender(alpha=0.0)
    with pytest.raises(ValueError, match="beta"):
        RP3betaRecommender(beta=-1.0)
    with pytest.raises(ValueError, match="neighbours"):
        RP3betaRecommender(neighbours=0)


def test_rp3beta_blocks_give_the_same_weights(monkeypatch):
    """Rows computed two at a time (tiny block budget) equal the one-block result."""
    import recsys_core.models.neighbours as neighbours

    ds = dataset_from_matrix(MATRIX_5x6)
    whole = RP3betaRecommender(neighbours=2).fit(ds, ds.interactions).weights
    monkeypatch.setattr(neighbours.sparse_top_k, "__defaults__", (8 * ds.num_items * 2,))
    blocked = RP3betaRecommender(neighbours=2).fit(ds, ds.interactions).weights
    assert (whole != blocked).nnz == 0


# ---------------------------------------------------------------------------- ItemKNN
@pytest.mark.parametrize("k, shrink", [(6, 0.0), (6, 10.0), (2, 0.0), (1, 5.0)])
def test_itemknn_equals_dense_reference(k, shrink):
    ds = dataset_from_matrix(MATRIX_5x6)
    x = dense_matrix(ds)
    model = ItemKNNRecommender(neighbours=k, shrink=shrink).fit(ds, ds.interactions)
    np.testing.assert_allclose(model.score(np.arange(ds.num_users)),
                               reference_itemknn(x, k, shrink), rtol=1e-5, atol=1e-7)
    # Column j holds j's neighbours: at most k per column.
    assert np.diff(model.weights.tocsc().indptr).max() <= k


def test_itemknn_hand_checked_similarity():
    """Items 0 and 1: 2 common users, 3 users each; shrink 1 -> 2 / (3 + 1)."""
    ds = dataset_from_matrix(MATRIX_5x6)
    model = ItemKNNRecommender(neighbours=6, shrink=1.0).fit(ds, ds.interactions)
    i0, i1 = ds.item_idx(["i0", "i1"])
    assert model.weights[i0, i1] == pytest.approx(0.5)
    assert model.weights[i1, i0] == pytest.approx(0.5)


def test_itemknn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="neighbours"):
        ItemKNNRecommender(neighbours=0)
    with pytest.raises(ValueError, match="shrink"):
        ItemKNNRecommender(shrink=-1.0)


# ---------------------------------------------------------------------------- text-pop
def test_ridge_popularity_matches_augmented_normal_equations():
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(30, 4))
    counts = rng.integers(0, 9, size=30).astype(float)
    lam = 0.7
    warm = counts > 0
    # [b; c] minimises ||y - X b - c||^2 + lam ||b||^2 (intercept unpenalised).
    a = np.hstack([unit[warm], np.ones((warm.sum(), 1))])
    penalty = lam * np.eye(5)
    penalty[4, 4] = 0.0
    coef = np.linalg.solve(a.T @ a + penalty, a.T @ np.log1p(counts[warm]))
    expected = np.hstack([unit, np.ones((30, 1))]) @ coef
    np.testing.assert_allclose(ridge_popularity(unit, counts, lam), expected, rtol=1e-8)
    assert not ridge_popularity(unit, np.zeros(30), lam).any()


def test_text_pop_score_is_z_profile_plus_weighted_z_popularity(tiny_dataset):
    emb = random_item_text(tiny_dataset, 6)
    model = TextPopRecommender(item_text_embeddings=emb, popularity_weight=0.7).fit(
        tiny_dataset, tiny_dataset.interactions)
    unit = torch.nn.functional.normalize(emb, dim=1).numpy().astype(np.float64)
    counts = dense_matrix(tiny_dataset).sum(axis=0)
    predicted = ridge_popularity(unit, counts, 1.0)
    z_pop = (predicted - predicted.mean()) / predicted.std()
    users = np.arange(tiny_dataset.num_users)
    history = model.train_matrix.toarray()
    profiles = history @ unit
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
    cosine = profiles @ unit.T  # every user x every item: a tiny reference only
    z_cos = (cosine - cosine.mean(axis=1, keepdims=True)) / cosine.std(axis=1, keepdims=True)
    np.testing.assert_allclose(model.score(users), z_cos + 0.7 * z_pop, rtol=1e-4, atol=1e-5)
    assert model.popularity_weight == 0.7 and model.validation == {}


def popularity_world(popularity_in_text: bool) -> tuple[Dataset, torch.Tensor]:
    """60 users x 80 items whose interactions follow item appeal alone. The text's first
    coordinate is the appeal (or noise); the other five are noise, so profiles say little."""
    rng = np.random.default_rng(3)
    n_users, n_items = 60, 80
    appeal = np.linspace(0.01, 0.7, n_items)
    x = (rng.random((n_users, n_items)) < appeal).astype(float)
    ds = dataset_from_matrix(x)
    emb = rng.normal(size=(n_items, 6))
    by_index = np.array([appeal[int(i[1:])] for i in ds.item_ids])
    emb[:, 0] = by_index if popularity_in_text else rng.random(n_items)
    return ds, torch.as_tensor(emb, dtype=torch.float32)


def reference_pseudo_cold_recall(ds: Dataset, emb: torch.Tensor, weight: float, k: int,
                                 ridge_lambda: float, seed: int = 0) -> float:
    """The pseudo-cold validation written out with loops over users."""
    unit = torch.nn.functional.normalize(emb, dim=1).numpy().astype(np.float64)
    x = dense_matrix(ds)
    counts = x.sum(axis=0)
    warm = np.flatnonzero(counts > 0)
    held = np.sort(np.random.default_rng(seed).choice(warm, size=round(0.1 * len(warm)),
                                                      replace=False))
    kept = x.copy()
    kept[:, held] = 0.0
    predicted = ridge_popularity(unit, kept.sum(axis=0), ridge_lambda)
    z_pop = (predicted - predicted.mean()) / predicted.std()
    recalls = []
    for u in range(ds.num_users):
        truth = set(held[x[u, held] > 0].tolist())
        if not truth:
            continue
        profile = kept[u] @ unit
        cosine = unit @ (profile / np.linalg.norm(profile))
        z_cos = (cosine - cosine.mean()) / cosine.std()
        score = {i: z_cos[i] + weight * z_pop[i] for i in held}
        top = sorted(held.tolist(), key=lambda i: (-score[i], i))[:k]
        recalls.append(len(truth & set(top)) / len(truth))
    return float(np.mean(recalls))


def test_text_pop_chooses_a_popularity_weight_when_text_predicts_popularity():
    ds, emb = popularity_world(popularity_in_text=True)
    options = dict(item_text_embeddings=emb, weight_grid=(0.0, 1.0, 3.0), valid_k=2,
                   ridge_lambda=0.01)
    model = TextPopRecommender(**options).fit(ds, ds.interactions)
    recall = model.validation["recall_by_weight"]
    assert set(recall) == {"0.0", "1.0", "3.0"}
    assert model.popularity_weight == 3.0
    assert recall["3.0"] == max(recall.values()) > recall["0.0"] + 0.1
    assert model.validation["held_out_items"] == 8  # 10% of 80 warm items
    for weight in (0.0, 3.0):
        assert recall[str(weight)] == pytest.approx(
            reference_pseudo_cold_recall(ds, emb, weight, k=2, ridge_lambda=0.01), abs=1e-9)
    again = TextPopRecommender(**options).fit(ds, ds.interactions)
    assert again.validation == model.validation  # same seed, same choice


def test_text_pop_keeps_weight_zero_when_text_says_nothing_of_popularity():
    ds, emb = popularity_world(popularity_in_text=False)
    model = TextPopRecommender(item_text_embeddings=emb, weight_grid=(0.0, 1.0, 3.0),
                               valid_k=2, ridge_lambda=0.01).fit(ds, ds.interactions)
    recall = model.validation["recall_by_weight"]
    assert model.popularity_weight == 0.0 and recall["0.0"] == max(recall.values())


def test_text_pop_ties_go_to_the_smaller_weight():
    ds, emb = popularity_world(popularity_in_text=True)
    model = TextPopRecommender(item_text_embeddings=emb, weight_grid=(2.0, 0.5),
                               valid_k=80).fit(ds, ds.interactions)  # k >= candidates: all 1
    assert set(model.validation["recall_by_weight"].values()) == {1.0}
    assert model.popularity_weight == 0.5


def test_text_pop_ranks_cold_items_by_their_text(tiny_dataset):
    cold = np.flatnonzero(~tiny_dataset.interacted_items())
    model = make_peer("text-pop", tiny_dataset).fit(tiny_dataset, tiny_dataset.interactions)
    scores = model.score(np.arange(tiny_dataset.num_users), cold)
    assert np.ptp(scores, axis=1).max() > 0  # cold items are told apart


def test_text_pop_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ridge_lambda"):
        TextPopRecommender(ridge_lambda=0.0)
    with pytest.raises(ValueError, match="valid_fraction"):
        TextPopRecommender(valid_fraction=1.0)
    with pytest.raises(ValueError, match="weight_grid"):
        TextPopRecommender(weight_grid=())


# ---------------------------------------------------------------------------- every peer
@pytest.mark.parametrize("name", PEERS)
def test_peer_end_to_end_and_state_round_trip(name, tiny_dataset):
    """Fit, recommend (seen items excluded, cold candidates), save tensors, restore: same."""
    inter = tiny_dataset.interactions
    train = inter.drop(inter.index[inter["user_id"] == "u3"][-2:])
    model = make_peer(name, tiny_dataset).fit(tiny_dataset, train)
    assert model.name == name
    recs = model.recommend(k=4)
    assert set(recs["user_id"]) <= set(tiny_dataset.user_ids)
    for user, group in recs.groupby("user_id"):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert not set(group["item_id"]) & set(train.loc[train["user_id"] == user, "item_id"])
    users = np.arange(tiny_dataset.num_users)
    full = model.score(users)
    assert full.shape == (tiny_dataset.num_users, tiny_dataset.num_items)
    items = np.array([5, 0, 11, 3])
    np.testing.assert_allclose(model.score(users[2:5], items), full[2:5][:, items], rtol=1e-6,
                               atol=1e-7)
    state = model.state_tensors()
    assert state and all(isinstance(t, torch.Tensor) for t in state.values())
    fresh = get_model_class(name)(**model.config())
    fresh.restore(tiny_dataset, train, state)
    np.testing.assert_array_equal(fresh.score(users), full)
    pd.testing.assert_frame_equal(fresh.recommend(k=4), recs)
    again = make_peer(name, tiny_dataset).fit(tiny_dataset, train)
    np.testing.assert_array_equal(again.score(users), full)  # deterministic


@pytest.mark.parametrize("name", PEERS)
def test_peer_state_loading_is_strict(name, tiny_dataset):
    model = make_peer(name, tiny_dataset).fit(tiny_dataset, tiny_dataset.interactions)
    state = model.state_tensors()
    fresh = get_model_class(name)(**model.config())
    fresh.restore(tiny_dataset, tiny_dataset.interactions, state)
    with pytest.raises(ValueError, match="unexpected"):
        fresh.load_state_tensors({**state, "extra": torch.zeros(1)})
    key = next(iter(state))
    with pytest.raises(ValueError, match="missing"):
        fresh.load_state_tensors({k: v for k, v in state.items() if k != key})
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state_tensors({k: v[:-1] for k, v in state.items()})


def test_neighbour_state_refuses_out_of_range_indices(tiny_dataset):
    model = make_peer("itemknn", tiny_dataset).fit(tiny_dataset, tiny_dataset.interactions)
    state = model.state_tensors()
    state["weights_indices"] = state["weights_indices"].clone()
    state["weights_indices"][0] = tiny_dataset.num_items
    fresh = ItemKNNRecommender(**model.config())
    with pytest.raises(ValueError, match="valid"):
        fresh.restore(tiny_dataset, tiny_dataset.interactions, state)
