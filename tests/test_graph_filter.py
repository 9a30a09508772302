"""The flagship's graph-filter layer (recsys_core.models.graph_filter) and the shared
validation-selection rule (recsys_core.models.item_item.choose_blend)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsys_core.dataset import ITEM_IDX, USER_IDX
from recsys_core.models.graph_filter import (
    SMOOTHING_EXPONENT,
    GraphFilterBasis,
    describe_filter_choice,
    graph_filter_weights,
    select_graph_filter,
)
from recsys_core.models.item_item import ValidationRanking, choose_blend
from recsys_core.tensor_metrics import ndcg_at_k, ndcg_from_hits, top_k


def random_matrix(users: int = 30, items: int = 12, density: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < density).astype(np.float64)
    dense[np.arange(users), rng.integers(0, items, users)] = 1.0  # every user has a history
    return sp.csr_matrix(dense)


def dense_reference(matrix: sp.csr_matrix, k: int, alpha: float) -> np.ndarray:
    x = matrix.toarray()
    du = np.maximum(x.sum(1), 1.0)
    di = np.maximum(x.sum(0), 1.0)
    r = x / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    w = r.T @ r
    if k:
        _, _, vt = np.linalg.svd(r, full_matrices=False)
        v = vt[:k].T
        w = w + alpha * (np.diag(di ** -0.5) @ v @ v.T @ np.diag(di ** 0.5))
    return w


@pytest.mark.parametrize(("k", "alpha"), [(0, 0.0), (3, 1.0), (5, 0.5)])
def test_filter_weights_match_the_dense_formula(k, alpha):
    matrix = random_matrix()
    weights = graph_filter_weights(matrix, ideal_dim=k, ideal_weight=alpha).numpy()
    np.testing.assert_allclose(weights, dense_reference(matrix, k, alpha), atol=1e-5)
    # The term is linear in the history: exactly history @ W, so per-edge contributions add up.
    basis = GraphFilterBasis(matrix, max_dim=max(k, 1))
    np.testing.assert_allclose(basis.term(matrix[:5], k, alpha), matrix[:5].toarray() @ weights,
                               atol=1e-5)


def test_filter_is_deterministic():
    matrix = random_matrix(seed=3)
    a = graph_filter_weights(matrix, 4, 1.0, seed=0)
    b = graph_filter_weights(matrix, 4, 1.0, seed=0)
    assert torch.equal(a, b)


def test_tensor_ndcg_hand_computed():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.0, 0.1, 0.2, 0.3]])
    truth = torch.tensor([[False, True, False, False], [True, False, False, True]])
    # Row 0: hit at rank 2 -> 1/log2(3); ideal 1. Row 1: hits at ranks 1 and 4 (k=4).
    row0 = 1 / np.log2(3)
    row1 = (1 + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    assert ndcg_at_k(scores, truth, k=4) == pytest.approx((row0 + row1) / 2)
    assert top_k(scores, 10).shape == (2, 4)
    assert ndcg_from_hits(torch.zeros(1, 3), torch.tensor([0])).item() == 0.0


def frames(matrix: sp.csr_matrix) -> pd.DataFrame:
    coo = matrix.tocoo()
    return pd.DataFrame({USER_IDX: coo.row.astype(np.int64), ITEM_IDX: coo.col.astype(np.int64)})


def community_split(seed: int = 0):
    """Two communities of users and items: histories inside one community, validation items
    too, so a co-occurrence filter finds them and a random base score does not."""
    rng = np.random.default_rng(seed)
    users, items = 40, 20
    train, valid = np.zeros((users, items)), np.zeros((users, items))
    for u in range(users):
        pool = np.arange(10) if u % 2 == 0 else np.arange(10, 20)
        chosen = rng.choice(pool, 6, replace=False)
        train[u, chosen[:4]] = 1
        valid[u, chosen[4:]] = 1
    return sp.csr_matrix(train), sp.csr_matrix(valid)


def test_selection_switches_the_filter_on_only_past_the_margin():
    train, valid = community_split()
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=train.shape).astype(np.float32))
    ranking = ValidationRanking(lambda users: noise[torch.from_numpy(users)], frames(train),
                                frames(valid), *train.shape, k=5)
    choice = select_graph_filter(ranking, settings=((0, 0.0), (2, 1.0)),
                                 relative_weights=(0.5, 1.0, 4.0), smoothings=(0.0,))
    assert choice.relative_weight > 0 and choice.valid_ndcg > choice.valid_ndcg_base * 1.01
    assert len(choice.grid) == 6 and "graph filter: k=" in describe_filter_choice(
        choice.summary())
    # An oracle base leaves nothing to gain: the filter stays off.
    oracle = torch.from_numpy(valid.toarray().astype(np.float32))
    best = ValidationRanking(lambda users: oracle[torch.from_numpy(users)], frames(train),
                             frames(valid), *train.shape, k=5)
    off = select_graph_filter(best, settings=((0, 0.0),), relative_weights=(0.5, 1.0),
                              smoothings=(0.0, 4.0))
    assert off.relative_weight == 0 and "off" in describe_filter_choice(off.summary())


def test_choose_blend_margin_and_forced_setting():
    train, valid = community_split(seed=2)
    noise = torch.from_numpy(np.random.default_rng(0).normal(size=train.shape).astype(np.float32))
    ranking = ValidationRanking(lambda users: noise[torch.from_numpy(users)], frames(train),
                                frames(valid), *train.shape, k=5)
    useless = torch.zeros(len(ranking.users), train.shape[1])
    useless[:, 0] = 1.0  # a term that only lifts one item: no real gain
    blend = choose_blend(ranking, lambda row: useless, 1, (1.0,), margin=0.5)
    assert blend.row == -1 and blend.relative_weight == 0.0
    forced = choose_blend(ranking, lambda row: useless, 1, (1.0,), margin=None)
    assert forced.row == 0 and forced.relative_weight == 1.0  # a user's fixed setting stays


def test_attribute_nodes_join_the_filter_as_weighted_rows():
    matrix = random_matrix(seed=3)
    attributes = sp.csr_matrix((np.random.default_rng(4).random((12, 3)) < 0.4).astype(float))
    plain = GraphFilterBasis(matrix, max_dim=3).weights(3, 1.0).numpy()
    assert np.allclose(GraphFilterBasis(matrix, 3, 0, attributes, 0.0).weights(3, 1.0).numpy(),
                       plain, atol=1e-6)
    gamma = 0.5
    stacked = sp.vstack([matrix, gamma * attributes.T]).tocsr()
    x = stacked.toarray()
    r = x / np.sqrt(np.where(x.sum(1) > 0, x.sum(1), 1))[:, None] \
        / np.sqrt(np.where(x.sum(0) > 0, x.sum(0), 1))[None, :]
    got = GraphFilterBasis(matrix, 3, 0, attributes, gamma).weights(0, 0.0).numpy()
    assert np.allclose(got, r.T @ r, atol=1e-5)


def sparse_community_split(seed: int = 0):
    """Eight groups of three items; each user has one train item and the other two of its
    group in validation, so co-occurrence links no two items while a group attribute links
    exactly the right ones."""
    rng = np.random.default_rng(seed)
    users, groups = 64, 8
    items = 3 * groups
    train, valid = np.zeros((users, items)), np.zeros((users, items))
    for u in range(users):
        chosen = 3 * (u % groups) + rng.permutation(3)
        train[u, chosen[0]] = 1
        valid[u, chosen[1:]] = 1
    group = sp.csr_matrix((np.ones(items), (np.arange(items), np.arange(items) // 3)),
                          shape=(items, groups))
    return sp.csr_matrix(train), sp.csr_matrix(valid), group


def test_selection_keeps_attribute_nodes_only_when_they_pay():
    train, valid, community = sparse_community_split()
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=train.shape).astype(np.float32))
    ranking = ValidationRanking(lambda users: 0.01 * noise[torch.from_numpy(users)],
                                frames(train), frames(valid), *train.shape, k=5)
    settings, weights = ((0, 0.0), (2, 1.0)), (0.5, 1.0, 4.0, 16.0)
    useful = select_graph_filter(ranking, settings, weights, item_attributes=community,
                                 attribute_weights=(0.0, 1.0, 3.0))
    assert useful.attribute_weight > 0
    assert useful.valid_ndcg > useful.valid_ndcg_plain * 1.01
    assert {g["attribute_weight"] for g in useful.grid} == {0.0, 1.0, 3.0}
    assert "attribute nodes" in describe_filter_choice(useful.summary())
    # Where interactions already say it all, an attribute every item shares adds nothing:
    # the plain filter is kept.
    train, valid = community_split()
    ranking = ValidationRanking(lambda users: 0.01 * noise[torch.from_numpy(users)][:, :20],
                                frames(train), frames(valid), *train.shape, k=5)
    constant = sp.csr_matrix(np.ones((train.shape[1], 1)))
    useless = select_graph_filter(ranking, settings, weights, item_attributes=constant,
                                  attribute_weights=(0.0, 1.0, 3.0))
    assert useless.relative_weight > 0
    assert useless.attribute_weight == 0.0
    assert useless.valid_ndcg == pytest.approx(useless.valid_ndcg_plain)


def test_item_attribute_matrix_reads_every_attribute_node_type():
    from recsys_core.dataset import Dataset
    from recsys_core.graph import build_hetero_graph
    from recsys_core.models.graph_filter import item_attribute_matrix

    inter = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "z"]})
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "title": ["X", "Y", "Z"],
                          "genre": [["g1", "g2"], ["g2"], []], "tag": [["t"], [], ["t"]]})
    ds = Dataset(inter, items, attribute_columns=["genre", "tag"])
    data = build_hetero_graph(ds, interactions=ds.interactions.iloc[:0])
    matrix = item_attribute_matrix(data, ds.num_items)
    assert matrix.shape == (3, 3) and matrix.nnz == 5
    assert set(np.asarray(matrix.sum(axis=1)).ravel()) == {3.0, 1.0}


def test_smoothed_linear_part_is_the_rescaled_ridge_response():
    matrix = sp.random(30, 12, density=0.3, random_state=3, format="csr")
    matrix.data[:] = 1.0
    smoothing = 4.0
    got = GraphFilterBasis(matrix, max_dim=0, smoothing=smoothing).weights(0, 0.0).numpy()
    x = matrix.toarray()
    du, di = x.sum(1), x.sum(0)
    du[du == 0], di[di == 0] = 1, 1
    r = np.diag(du ** -SMOOTHING_EXPONENT) @ x @ np.diag(di ** -SMOOTHING_EXPONENT)
    gram = r.T @ r
    shift = smoothing * np.diag(gram).mean()
    top = np.linalg.eigvalsh(gram)[-1]
    expected = np.linalg.solve(gram + shift * np.eye(12), gram) * (top + shift) / top
    assert np.allclose(got, expected, atol=1e-5)
    # The strongest direction passes with gain 1, weaker ones are damped less than linearly.
    assert np.isclose(np.linalg.eigvalsh((got + got.T) / 2)[-1], 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="smoothing"):
        GraphFilterBasis(matrix, smoothing=-1.0)


def test_selection_chooses_a_smoothing_and_reports_it():
    train, valid = community_split()
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=train.shape).astype(np.float32))
    ranking = ValidationRanking(lambda users: noise[torch.from_numpy(users)], frames(train),
                                frames(valid), *train.shape, k=5)
    smoothings = (0.0, 1.0, 4.0)
    choice = select_graph_filter(ranking, relative_weights=(0.5, 1.0, 4.0),
                                 smoothings=smoothings, attribute_weights=(0.0,))
    assert choice.relative_weight > 0 and choice.smoothing in smoothings
    swept = [row for row in choice.grid if row["ideal_dim"] == 0 and row["ideal_weight"] == 0]
    assert {row["smoothing"] for row in swept} == set(smoothings)
    # The chosen (k, alpha) grid ran at the chosen smoothing, with its own settings.
    later = choice.grid[len(smoothings) * 3:]
    assert later and {row["smoothing"] for row in later} == {choice.smoothing}
    assert choice.summary()["smoothing"] == choice.smoothing
    if choice.smoothing > 0:
        assert f"smoothing mu={choice.smoothing:g}" in describe_filter_choice(choice.summary())


def test_flagship_fixed_smoothing_is_used_and_reported():
    from recsys_core.dataset import Dataset
    from recsys_core.models.gnn_llm import GNNLLMRecommender

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}") for u in range(40) for i in rng.choice(30, 9, replace=False)]
    ds = Dataset(pd.DataFrame(rows, columns=["user_id", "item_id"]),
                 pd.DataFrame({"item_id": [f"i{i}" for i in range(30)],
                               "title": [f"Item {i}" for i in range(30)]}))
    text = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    options = dict(embedding_dim=8, heads=2, epochs=2, batch_size=64, num_negatives=8,
                   device="cpu", show_progress=False, seed=0, item_text_embeddings=text,
                   item_item=False)
    model = GNNLLMRecommender(graph_filter_smoothing=4.0, **options).fit(ds, ds.interactions)
    chosen = model.train_result.selected["graph_filter"]
    assert chosen["smoothing"] in (0.0, 4.0)  # 0 only when the filter stayed off
    assert chosen["relative_weight"] == 0 or chosen["smoothing"] == 4.0
    assert model.model_config()["graph_filter_smoothing"] == 4.0
    with pytest.raises(ValueError, match="graph_filter_smoothing"):
        GNNLLMRecommender(graph_filter_smoothing=-1.0, **options)


@pytest.mark.parametrize("seed", [0, 3])
def test_smoothing_replaces_the_plain_filter_only_past_the_margin(seed):
    train, valid = community_split(seed=seed)
    noise = torch.from_numpy(np.random.default_rng(seed).normal(size=train.shape)
                             .astype(np.float32))
    ranking = ValidationRanking(lambda users: noise[torch.from_numpy(users)], frames(train),
                                frames(valid), *train.shape, k=5)
    smoothings = (0.0, 2.0, 8.0)
    choice = select_graph_filter(ranking, relative_weights=(0.5, 1.0, 4.0),
                                 smoothings=smoothings, attribute_weights=(0.0,))
    swept = [r for r in choice.grid[:len(smoothings) * 3]]
    plain = max(r["valid_ndcg"] for r in swept if r["smoothing"] == 0.0)
    smoothed = max(r["valid_ndcg"] for r in swept if r["smoothing"] > 0.0)
    if choice.smoothing > 0:
        assert smoothed > plain * 1.01
    elif choice.relative_weight > 0 and smoothed > plain * 1.01:
        # The smoothed neighbourhood winner may be a cell below the best one; never above.
        best_cell = max((r for r in swept if r["smoothing"] > 0), key=lambda r: r["valid_ndcg"])
        assert best_cell["valid_ndcg"] > plain
