"""The item-item path beyond its dense head: sparse EASE columns for the tail
(recsys_core.models.item_item.sparse_ease_columns / ItemItemPath.with_tail)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_matrix
from test_explain import explain_dataset, fit_flagship

from recsys_core.explain.attention import attention_explanation
from recsys_core.models import item_item
from recsys_core.models.embedding import EmbeddingRecommender
from recsys_core.models.item_item import ItemItemPath, ease_weights, sparse_ease_columns
from recsys_core.run import load_run, save_run


def as_dense(neighbours: torch.Tensor, weights: torch.Tensor, num_items: int) -> np.ndarray:
    out = np.zeros((num_items, len(neighbours)), np.float64)
    for r in range(len(neighbours)):
        np.add.at(out[:, r], neighbours[r].numpy(), weights[r].numpy())
    return out


@pytest.mark.parametrize("block_items", [1, 3, 100])
def test_sparse_columns_are_ease_columns_when_every_co_occurring_item_is_a_neighbour(
        block_items):
    x = random_matrix(200, 14, 0.6)
    active = np.arange(13)  # every pair of these items shares users
    neighbours, weights = sparse_ease_columns(x, active, 5.0, neighbours=50,
                                              block_items=block_items)
    full = ease_weights(x[:, active], 5.0).numpy()
    np.testing.assert_allclose(as_dense(neighbours, weights, 14)[active], full, atol=1e-5)


def test_blocks_split_when_their_neighbours_pass_the_gram_limit(monkeypatch):
    x = random_matrix(300, 40, 0.3)
    whole = sparse_ease_columns(x, np.arange(40), 5.0, neighbours=6, block_items=40)
    monkeypatch.setattr(item_item, "MAX_GRAM_ITEMS", 7)  # every block splits down to 1 item
    split = sparse_ease_columns(x, np.arange(40), 5.0, neighbours=6, block_items=40)
    assert torch.equal(whole[0], split[0])
    torch.testing.assert_close(whole[1], split[1])


def test_sparse_columns_keep_the_most_co_occurring_items_and_pad_with_zero():
    x = random_matrix(60, 14, 0.35)
    columns = np.array([2, 7, 13])  # 13: no interactions, nothing to regress on
    neighbours, weights = sparse_ease_columns(x, columns, 5.0, neighbours=3)
    co = (x.T @ x).toarray()
    for r, item in enumerate(columns[:2]):
        counts = co[item].copy()
        counts[item] = 0
        expected = sorted(range(14), key=lambda j: (-counts[j], j))[:3]
        assert sorted(neighbours[r].tolist()) == sorted(expected)
        # The weights solve the ridge regression on those items' users.
        xn = x[:, neighbours[r].numpy()].toarray().astype(np.float64)
        solution = np.linalg.solve(xn.T @ xn + 5.0 * np.eye(3), xn.T @ x[:, item].toarray())
        np.testing.assert_allclose(weights[r].numpy(), solution.ravel(), atol=1e-5)
    assert neighbours[2].tolist() == [13, 13, 13] and not weights[2].any()


@pytest.fixture
def tail_path():
    x = random_matrix(60, 14, 0.35)
    text = torch.from_numpy(np.random.default_rng(3).normal(size=(14, 5)).astype(np.float32))
    return x, ItemItemPath.fit(x, 5.0, max_items=4, scale=2.0, text=text, bridge_k=2,
                               tail_neighbours=5)


def test_items_past_the_head_get_sparse_columns_and_only_cold_items_the_text_bridge(tail_path):
    x, path = tail_path
    head, tail = path.items.numpy(), path.tail_items.numpy()
    assert len(head) == 4 and len(tail) == 13 - 4  # every interacted item is covered
    assert path.covered_items().tolist() == list(range(13))
    assert path.bridge_items.tolist() == [13]  # the cold item alone
    scores = path.scores(x)
    neighbours, weights = sparse_ease_columns(x, tail, 5.0, neighbours=5)
    expected = 2.0 * (x @ as_dense(neighbours, weights, 14))
    np.testing.assert_allclose(scores[:, tail], expected, atol=1e-5)
    np.testing.assert_allclose(scores[:, head], 2.0 * (x[:, head] @ ease_weights(
        x[:, head], 5.0).numpy()), atol=1e-5)
    # A subset of columns, in any order, reads the same numbers.
    cols = np.array([tail[3], head[1], 13, tail[0]])
    np.testing.assert_allclose(path.scores(x[5:9], cols), scores[5:9][:, cols], atol=1e-6)
    # Every history edge's share adds up to the score, tail items included.
    for user in (4, 11):
        history = torch.from_numpy(x[user].indices.astype(np.int64))
        terms = path.pair_weights(history, torch.arange(14))
        np.testing.assert_allclose(terms.sum(0).numpy(), scores[user], atol=1e-5)


def test_tail_survives_state_tensors_and_bad_tails_are_refused(tail_path):
    x, path = tail_path
    state = path.state_tensors("p.")
    assert {"p.tail_items", "p.tail_neighbours", "p.tail_weights"} <= set(state)
    again = ItemItemPath.from_state_tensors(state, 14, "p.")
    np.testing.assert_array_equal(again.scores(x), path.scores(x))
    partial = {k: v for k, v in state.items() if k != "p.tail_weights"}
    with pytest.raises(ValueError, match="missing"):
        ItemItemPath.from_state_tensors(partial, 14, "p.")
    bad = state["p.tail_neighbours"].clone()
    bad[0, 0] = 99
    with pytest.raises(ValueError, match="tail_neighbours"):
        ItemItemPath.from_state_tensors({**state, "p.tail_neighbours": bad}, 14, "p.")
    clash = state["p.tail_items"].clone()
    clash[0] = int(path.items[0])
    with pytest.raises(ValueError, match="tail"):
        ItemItemPath.from_state_tensors({**state, "p.tail_items": clash.sort().values}, 14,
                                        "p.")
    # A path without a tail saves no tail tensors (runs saved before the tail still load).
    plain = ItemItemPath.fit(x, 5.0, max_items=4)
    assert not any("tail" in k for k in plain.state_tensors())


def test_flagship_with_a_tail_saves_loads_and_explains_exactly(tmp_path):
    torch.set_num_threads(1)
    ds = explain_dataset()
    model = fit_flagship(ds, item_item_lambda=20.0, item_item_weight=1.0,
                         item_item_max_items=10)
    path = model.item_item_path
    scale = model.train_result.selected["item_item"]["scale"]
    model.item_item_path = path.with_tail(model.train_matrix, factor=scale, neighbours=8)
    tail = model.item_item_path.tail_items.numpy()
    assert len(path.items) == 10 and len(tail) == ds.num_items - 10
    users = np.arange(ds.num_users)
    graph = EmbeddingRecommender.score(model, users)
    np.testing.assert_allclose(model.score(users),
                               graph + model.item_item_path.scores(model.train_matrix),
                               atol=1e-5)
    save_run(tmp_path / "run", model, ds, ds.interactions)
    loaded, _, info = load_run(tmp_path / "run")
    assert "item_item.tail_weights" in info["tensors"]
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    # An explanation of a tail item adds up to its score.
    user = "u00"
    u = int(ds.user_idx([user])[0])
    seen = set(model.train_matrix[u].indices)
    item = next(int(i) for i in tail if i not in seen
                and model.item_item_path.scores(model.train_matrix[[u]], [i])[0, 0] != 0)
    explanation = attention_explanation(loaded, ds, user, ds.item_ids[item])
    score = float(loaded.score([u], [item])[0, 0])
    assert explanation.score == pytest.approx(score, abs=1e-4)
    total = explanation.base_value + explanation.contributions["weight"].sum()
    assert total == pytest.approx(score, abs=1e-3)
