"""The flagship's full-rank item-item path (recsys_core.models.item_item)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import random_matrix
from test_explain import explain_dataset, fit_flagship

from recsys_core.dataset import ITEM_IDX, USER_IDX
from recsys_core.explain.attention import attention_explanation
from recsys_core.explain.engine import flagship_engine
from recsys_core.explain.gnn_explainer import candidate_edges
from recsys_core.models.base import interaction_matrix
from recsys_core.models.ease import EASERecommender
from recsys_core.models.embedding import EmbeddingRecommender
from recsys_core.models.item_item import (
    ItemItemPath,
    covered_items,
    describe_choice,
    ease_weights,
    select_item_item,
    spread_ratio,
)
from recsys_core.run import load_run, save_run


# ---------------------------------------------------------------------------------- weights
def test_ease_weights_match_the_closed_form():
    x = random_matrix()
    weights = ease_weights(x, 7.0).numpy()
    gram = (x.T @ x).toarray().astype(np.float64) + 7.0 * np.eye(x.shape[1])
    precision = np.linalg.inv(gram)
    expected = -precision / np.diag(precision)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(weights, expected, atol=1e-5)
    assert np.all(np.diag(weights) == 0.0)
    with pytest.raises(ValueError, match="positive"):
        ease_weights(x, 0.0)


def test_covered_items_keep_the_most_interacted_and_never_cold_items():
    x = sp.csr_matrix(np.array([[1, 1, 0, 1, 0], [1, 0, 0, 1, 0], [0, 1, 0, 1, 0]], np.float32))
    assert covered_items(x, 10).tolist() == [0, 1, 3]  # item 2 and 4 have no interactions
    assert covered_items(x, 1).tolist() == [3]
    assert covered_items(x, 2).tolist() == [0, 3]  # 0 and 1 tie at 2: the lower index wins


def test_path_scores_are_history_times_weights_on_the_head_and_zero_elsewhere():
    x = random_matrix()
    path = ItemItemPath.fit(x, 5.0, max_items=6, scale=2.5)
    head = path.items.numpy()
    assert len(head) == 6
    scores = path.scores(x)
    expected = np.zeros(x.shape, np.float32)
    expected[:, head] = 2.5 * (x[:, head] @ ease_weights(x[:, head], 5.0).numpy())
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    np.testing.assert_allclose(path.scores(x[3:5], np.array([head[2], 11])),
                               expected[3:5][:, [head[2], 11]], atol=1e-6)
    # Per-edge terms add up to the score of the history they come from.
    history = torch.from_numpy(x[4].indices.astype(np.int64))
    terms = path.pair_weights(history, torch.arange(x.shape[1]))
    np.testing.assert_allclose(terms.sum(0).numpy(), scores[4], atol=1e-5)


def test_items_outside_the_head_get_text_bridged_columns():
    x = random_matrix()
    text = torch.from_numpy(np.random.default_rng(3).normal(size=(12, 5)).astype(np.float32))
    path = ItemItemPath.fit(x, 5.0, max_items=6, scale=2.0, text=text, bridge_k=3)
    head = path.items.numpy()
    outside = np.setdiff1d(np.arange(12), head)
    assert path.bridge_items.numpy().tolist() == outside.tolist()  # the cold item 11 included
    assert path.bridge_neighbours.shape == (6, 3)
    np.testing.assert_allclose(path.bridge_weights.sum(1).numpy(), 1.0, atol=1e-6)
    scores = path.scores(x)
    # A bridged column is the weighted mean of its text neighbours' head columns.
    for row, item in enumerate(outside):
        neighbours = head[path.bridge_neighbours[row].numpy()]
        expected = scores[:, neighbours] @ path.bridge_weights[row].numpy()
        np.testing.assert_allclose(scores[:, item], expected, atol=1e-5)
    # Neighbours are the most similar head items by cosine.
    normed = torch.nn.functional.normalize(text, dim=1)
    sims = (normed[outside[0]] @ normed[head].T).numpy()
    assert set(path.bridge_neighbours[0].tolist()) == set(np.argsort(-sims)[:3].tolist())
    # Per-edge terms still add up, bridged items included; a new text gets the same column.
    history = torch.from_numpy(x[4].indices.astype(np.int64))
    terms = path.pair_weights(history, torch.arange(12))
    np.testing.assert_allclose(terms.sum(0).numpy(), scores[4], atol=1e-5)
    neighbours, weights = path.text_neighbours(text[outside[:2]], text, 3)
    np.testing.assert_allclose(path.bridged_scores(x, neighbours, weights),
                               scores[:, outside[:2]], atol=1e-5)
    without = ItemItemPath.fit(x, 5.0, max_items=6, scale=2.0)
    assert np.all(without.scores(x)[:, outside] == 0.0)


def test_ease_baseline_uses_the_same_weights():
    ds = explain_dataset()
    model = EASERecommender(reg_lambda=30.0).fit(ds, ds.interactions)
    x = interaction_matrix(ds.interactions, ds.num_users, ds.num_items)
    path = ItemItemPath.fit(x, 30.0, max_items=10_000)
    np.testing.assert_allclose(model.score(np.arange(ds.num_users)), path.scores(x), atol=1e-5)


def test_state_tensors_round_trip_and_bad_tensors_are_refused():
    path = ItemItemPath.fit(random_matrix(), 5.0, max_items=8, scale=1.5)
    state = path.state_tensors("p.")
    again = ItemItemPath.from_state_tensors(state, 12, "p.")
    assert again.scale == 1.5 and again.reg_lambda == 5.0
    np.testing.assert_array_equal(again.scores(random_matrix()), path.scores(random_matrix()))
    with pytest.raises(ValueError, match="sorted and distinct"):
        ItemItemPath.from_state_tensors({**state, "p.items": state["p.items"].flip(0)}, 12, "p.")
    with pytest.raises(ValueError, match="outside"):
        ItemItemPath.from_state_tensors(state, 5, "p.")
    bridged = ItemItemPath.fit(random_matrix(), 5.0, max_items=6, text=torch.randn(12, 4))
    state = bridged.state_tensors()
    again = ItemItemPath.from_state_tensors(state, 12)
    np.testing.assert_array_equal(again.scores(random_matrix()), bridged.scores(random_matrix()))
    bad = state["item_item.bridge_neighbours"].clone()
    bad[0, 0] = 99
    with pytest.raises(ValueError, match="bridge_neighbours"):
        ItemItemPath.from_state_tensors({**state, "item_item.bridge_neighbours": bad}, 12)
    with pytest.raises(ValueError, match="shape"):
        ItemItemPath.from_state_tensors({**state, "item_item.weights": torch.zeros(2, 2)}, 12)


# ---------------------------------------------------------------------------------- selection
def block_interactions(seed: int = 0) -> pd.DataFrame:
    """Two communities of 20 users x 10 items; each user likes 6 items of their own."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(40):
        group = user // 20
        for item in rng.choice(10, 6, replace=False):
            rows.append((user, group * 10 + int(item)))
    return pd.DataFrame(rows, columns=[USER_IDX, ITEM_IDX])


def test_selection_turns_the_path_on_when_the_graph_score_is_noise():
    frame = block_interactions()
    valid = frame.groupby(USER_IDX).head(1)
    train = frame.drop(valid.index)
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=(40, 20)).astype(np.float32))
    choice = select_item_item(lambda users: noise[torch.from_numpy(users)], train, valid,
                              40, 20, k=5, reg_lambdas=(1.0, 10.0))
    assert choice.relative_weight > 0
    assert choice.valid_ndcg > choice.valid_ndcg_graph
    assert len(choice.grid) == 2 * 13
    assert "lambda=" in describe_choice(choice.summary())


def test_selection_keeps_the_path_off_when_the_graph_score_is_already_perfect():
    frame = block_interactions()
    valid = frame.groupby(USER_IDX).head(1)
    train = frame.drop(valid.index)
    oracle = torch.zeros(40, 20)
    oracle[torch.tensor(valid[USER_IDX].to_numpy()), torch.tensor(valid[ITEM_IDX].to_numpy())] = 100.0
    choice = select_item_item(lambda users: oracle[torch.from_numpy(users)], train, valid,
                              40, 20, k=5, reg_lambdas=(10.0,), relative_weights=(0.5, 1.0))
    assert choice.relative_weight == 0.0
    assert choice.valid_ndcg == choice.valid_ndcg_graph == pytest.approx(1.0)
    assert "off" in describe_choice(choice.summary())


def test_spread_ratio():
    assert spread_ratio(torch.tensor([0.0, 2.0, 4.0]), torch.tensor([0.0, 1.0, 2.0])) == 2.0
    assert spread_ratio(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0])) == 0.0


# ---------------------------------------------------------------------------------- flagship
@pytest.fixture(scope="module")
def ds():
    return explain_dataset()


@pytest.fixture(scope="module")
def model(ds):
    torch.set_num_threads(1)
    return fit_flagship(ds, item_item_lambda=20.0, item_item_weight=1.0)


def test_flagship_score_is_graph_score_plus_the_path(ds, model):
    path = model.item_item_path
    assert path is not None and path.reg_lambda == 20.0 and path.scale == 1.0
    users = np.arange(ds.num_users)
    graph = EmbeddingRecommender.score(model, users)
    expected = graph + path.scores(model.train_matrix)
    np.testing.assert_allclose(model.score(users), expected, atol=1e-5)
    assert not np.allclose(model.score(users), graph)
    chosen = model.train_result.selected["item_item"]
    assert chosen["reg_lambda"] == 20.0 and chosen["relative_weight"] == 1.0
    assert chosen["scale"] > 0  # folded into the path's weights (scale 1)


def test_flagship_with_the_path_survives_save_and_load(ds, model, tmp_path):
    save_run(tmp_path / "run", model, ds, ds.interactions)
    loaded, _, info = load_run(tmp_path / "run")
    assert "item_item.weights" in info["tensors"]
    assert loaded.item_item_path is not None
    users = np.arange(ds.num_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


def test_removing_an_interaction_removes_its_item_item_term(ds, model):
    user = int(ds.user_idx("u00")[0])
    data = model.graph()
    history = data["user", "rates", "item"].edge_index
    drop = int(history[1, history[0] == user][0])
    keep = ~((history[0] == user) & (history[1] == drop))
    data["user", "rates", "item"].edge_index = history[:, keep]
    before = model.score_with_graph(model.graph(), [user])[0]
    after = model.score_with_graph(data, [user])[0]
    # Only the rates edge went: the user's graph state is unchanged (its messages come through
    # rated_by) and so are the other items', so their whole change is the item-item term.
    term = model.item_item_path.pair_weights(torch.tensor([drop]), torch.arange(ds.num_items))
    others = np.arange(ds.num_items) != drop
    np.testing.assert_allclose((before - after)[others], term[0].numpy()[others], atol=1e-4)
    assert np.abs(term[0].numpy()[others]).max() > 1e-3


def test_explanations_include_the_path_exactly(ds, model):
    engine = flagship_engine(model)
    user, item = int(ds.user_idx("u00")[0]), int(ds.item_idx("i05")[0])
    score = float(model.score([user], [item])[0, 0])
    # GNNExplainer's soft-masked score with every mask at 1 is the score.
    positions = candidate_edges(engine, user, item)
    ones = {et: (pos, torch.ones(pos.numel())) for et, pos in positions.items()}
    masked = engine.weighted_scores(user, item, ones, engine.explainable_convs())
    assert float(masked) == pytest.approx(score, abs=1e-4)
    # Masking a rates edge to 0 removes exactly its item-item term (the edge's message goes
    # into the user through rated_by, which stays).
    rates = ("user", "rates", "item")
    pos = positions[rates][:1]
    j = int(engine.edges[rates][1, pos])
    zero = {rates: (pos, torch.zeros(1))}
    term = float(model.item_item_path.pair_weights(torch.tensor([j]), torch.tensor([item])))
    masked = engine.weighted_scores(user, item, zero, engine.explainable_convs())
    assert float(masked) == pytest.approx(score - term, abs=1e-4)
    # The attention explanation adds the path's per-history-item terms and still sums up.
    explanation = attention_explanation(model, ds, "u00", "i05")
    terms = explanation.details["item_item"]
    assert len(terms) == len(engine.history(user))
    assert explanation.score == pytest.approx(score, abs=1e-4)
    total = explanation.base_value + explanation.contributions["weight"].sum()
    assert total == pytest.approx(score, abs=1e-3)


def test_new_items_get_the_text_bridge_as_catalogue_items_outside_the_path(ds):
    from recsys_core.dataset import ITEM_IDX

    # Three catalogue items lose their interactions: they are known by text only.
    counts = ds.interactions[ITEM_IDX].value_counts()
    cold = counts.index[-3:]
    ds = ds.subset_interactions(ds.interactions[~ds.interactions[ITEM_IDX].isin(cold)])
    model = fit_flagship(ds, item_item_lambda=20.0, item_item_weight=1.0,
                         item_item_max_items=20)
    path = model.item_item_path
    # Warm items past the head get sparse EASE columns; items without interactions the bridge.
    warm = set(np.flatnonzero(np.diff(model.train_matrix.tocsc().indptr) > 0).tolist())
    assert len(path.items) == 20
    assert set(path.tail_items.tolist()) == warm - set(path.items.tolist())
    assert set(path.bridge_items.tolist()) == set(range(ds.num_items)) - warm
    item = int(path.bridge_items[0])
    text = model.module.item_text[item:item + 1].float()
    users = np.arange(ds.num_users)
    new = model.score_new_items(text)
    model.item_item_path = None
    try:
        graph_only = model.score_new_items(text)
    finally:
        model.item_item_path = path
    expected = path.scores(model.train_matrix, [item])
    np.testing.assert_allclose(new - graph_only, expected, atol=1e-5)
    assert np.abs(expected).max() > 1e-3
    assert new.shape == (len(users), 1)


def test_path_is_off_without_validation_or_when_disabled(ds):
    plain = fit_flagship(ds, item_item=False, graph_filter=False)
    assert plain.item_item_path is None and "item_item" not in plain.train_result.selected
    assert "graph_filter" not in plain.train_result.selected
    users = np.arange(ds.num_users)
    np.testing.assert_allclose(plain.score(users), EmbeddingRecommender.score(plain, users))
    filter_only = fit_flagship(ds, item_item=False)
    assert "item_item" not in filter_only.train_result.selected
    assert "graph_filter" in filter_only.train_result.selected
    no_valid = fit_flagship(ds, valid_fraction=0.0)
    assert no_valid.item_item_path is None
    fixed = fit_flagship(ds, valid_fraction=0.0, item_item_lambda=10.0, item_item_weight=0.5)
    assert fixed.item_item_path is not None and fixed.item_item_path.reg_lambda == 10.0
    with pytest.raises(ValueError, match="item_item_lambda"):
        fit_flagship(ds, item_item_lambda=-1.0)


def community_text(num_items: int, communities: dict[int, int], seed: int = 0) -> torch.Tensor:
    """Item text embeddings: the item's community direction plus a little noise."""
    rng = np.random.default_rng(seed)
    text = rng.normal(scale=0.05, size=(num_items, 4)).astype(np.float32)
    for item, community in communities.items():
        text[item, community] += 1.0
    return torch.from_numpy(text)


def test_bridge_scale_is_chosen_on_validation():
    frame = block_interactions()
    noise = torch.from_numpy(
        np.random.default_rng(1).normal(scale=0.1, size=(40, 24)).astype(np.float32))
    communities = {i: i // 10 for i in range(20)} | {20: 0, 21: 0, 22: 1, 23: 1}
    text = community_text(24, communities)
    # Items 20-23 never have interactions: bridging them can only take the places of hits.
    valid = frame.groupby(USER_IDX).head(1)
    train = frame.drop(valid.index)
    choice = select_item_item(lambda users: noise[torch.from_numpy(users)], train, valid, 40, 24,
                              k=5, reg_lambdas=(10.0,), relative_weights=(1.0,), text=text,
                              bridge_k=3)
    assert choice.relative_weight == 1.0 and choice.bridge_scale == 0.0
    assert {g["bridge_scale"] for g in choice.grid if "bridge_scale" in g} == {1.0, 0.5, 0.25, 0.0}
    # Item 5's interactions are all held out (with one more per user): its text column is
    # what finds them.
    held = (frame[ITEM_IDX] == 5) | frame.index.isin(frame[frame[ITEM_IDX] != 5]
                                                     .groupby(USER_IDX).head(1).index)
    valid, train = frame[held], frame[~held]
    choice = select_item_item(lambda users: noise[torch.from_numpy(users)][:, :20], train, valid,
                              40, 20, k=5, reg_lambdas=(10.0,), relative_weights=(1.0,),
                              text=text[:20], bridge_k=3)
    assert choice.relative_weight == 1.0 and choice.bridge_scale == 1.0
    bridge_grid = {g["bridge_scale"]: g["valid_ndcg"] for g in choice.grid if "bridge_scale" in g}
    assert bridge_grid[1.0] > bridge_grid[0.0]
