"""The fast paths of validation-time selection (recsys_core.models.item_item,
recsys_core.models.graph_filter): the masked spread, ranking blends over the candidate columns
only, one smoothing Gram for every mu, and screening the item-item path's lambdas and the
graph filter's settings on a smaller head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsys_core.dataset import ITEM_IDX, USER_IDX
from recsys_core.models.graph_filter import (
    GraphFilterBasis,
    SmoothingGram,
    select_graph_filter,
    smoothed_linear,
)
from recsys_core.models.item_item import (
    ItemItemPath,
    ValidationRanking,
    choose_blend,
    covered_items,
    masked_std,
    select_item_item,
)


def clustered(users: int = 90, items: int = 48, seed: int = 0) -> tuple[pd.DataFrame, ...]:
    """Users drawing from one of three item clusters, popularity decaying with the index;
    one interaction per user held out for validation."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (1.0 + np.arange(items)) ** 0.5
    rows = []
    for user in range(users):
        weight = popularity * np.where(np.arange(items) % 3 == user % 3, 6.0, 1.0)
        for item in rng.choice(items, rng.integers(5, 12), replace=False, p=weight / weight.sum()):
            rows.append((user, int(item)))
    frame = pd.DataFrame(rows, columns=[USER_IDX, ITEM_IDX])
    valid = frame.groupby(USER_IDX).head(1)
    return frame.drop(valid.index), valid


def noisy_ranking(train: pd.DataFrame, valid: pd.DataFrame, users: int = 90,
                  items: int = 48) -> ValidationRanking:
    noise = torch.from_numpy(np.random.default_rng(1).normal(size=(users, items))
                             .astype(np.float32))
    return ValidationRanking(lambda u: noise[torch.from_numpy(u)], train, valid, users, items,
                             k=5)


def test_masked_std_is_the_std_of_the_kept_entries():
    rng = np.random.default_rng(0)
    values = torch.from_numpy(rng.normal(50.0, 3.0, size=(150, 40)).astype(np.float32))
    excluded = torch.from_numpy(rng.random((150, 40)) < 0.2)
    expected = float(values[~excluded].double().std())
    values = values.masked_fill(excluded, float("-inf"))  # left-out entries may be -inf
    assert masked_std(values, excluded) == pytest.approx(expected, rel=1e-12)
    assert masked_std(values, torch.ones_like(excluded)) == 0.0


def test_blends_ranked_over_candidate_columns_match_the_whole_catalogue():
    train, valid = clustered()
    ranking = noisy_ranking(train, valid)
    head = covered_items(ranking.train_matrix, 20)
    index = ranking.candidates(head)
    assert index is not None and index.shape == (len(ranking.users), len(head) + ranking.k)

    def term(row: int) -> torch.Tensor:  # 0 outside the head, as a path's term is
        path = ItemItemPath.fit(ranking.train_matrix, (5.0, 50.0)[row], 20)
        return torch.from_numpy(path.scores(ranking.history))

    weights = (0.25, 0.5, 1.0, 2.0, 4.0)
    fast = choose_blend(ranking, term, 2, weights, None, columns=head)
    full = choose_blend(ranking, term, 2, weights, None)
    np.testing.assert_array_equal(fast.table, full.table)
    assert (fast.row, fast.relative_weight) == (full.row, full.relative_weight)
    # Columns covering (almost) the whole catalogue: nothing to restrict.
    assert ranking.candidates(np.arange(46)) is None


def test_lambda_grid_is_screened_on_a_smaller_head_then_judged_on_the_full_one():
    train, valid = clustered()
    lambdas = (1.0, 10.0, 100.0)
    screened = select_item_item(noisy_ranking(train, valid), train, valid, 90, 48, k=5,
                                reg_lambdas=lambdas, max_items=30, screen_items=15)
    # Every lambda on the 15-item head, only the chosen one on the 30-item head.
    assert {c["reg_lambda"] for c in screened.screen_grid} == set(lambdas)
    assert {c["head_items"] for c in screened.screen_grid} == {15}
    assert {c["reg_lambda"] for c in screened.grid} == {screened.reg_lambda}
    assert {c["head_items"] for c in screened.grid} == {30}
    assert screened.relative_weight > 0  # the noise base leaves the path a lot to add
    # A head no larger than the screen: the whole grid on it, as without screening.
    same = select_item_item(noisy_ranking(train, valid), train, valid, 90, 48, k=5,
                            reg_lambdas=lambdas, max_items=30, screen_items=30)
    plain = select_item_item(noisy_ranking(train, valid), train, valid, 90, 48, k=5,
                             reg_lambdas=lambdas, max_items=30, screen_items=None)
    assert same.summary() == plain.summary() and same.grid == plain.grid
    assert not same.screen_grid and len(same.grid) == 3 * 13


def test_one_smoothing_gram_serves_every_mu():
    rng = np.random.default_rng(0)
    normalised = sp.csr_matrix(rng.random((60, 25)) * (rng.random((60, 25)) < 0.3))
    gram = SmoothingGram(normalised)
    for mu in (2.0, 8.0):
        linear = gram.linear(mu)
        assert linear.flags.c_contiguous and linear.dtype == np.float32
        np.testing.assert_array_equal(linear, smoothed_linear(normalised, mu))
    # A basis given the linear part it would compute keeps it.
    matrix = sp.csr_matrix((rng.random((60, 25)) < 0.3).astype(np.float64))
    built = GraphFilterBasis(matrix, 3, smoothing=8.0)
    given = GraphFilterBasis(matrix, 3, smoothing=8.0, linear=built.linear)
    np.testing.assert_array_equal(given.term(matrix[:7], 3, 0.25), built.term(matrix[:7], 3, 0.25))


def test_settings_are_screened_on_a_smaller_head_then_judged_on_the_full_one():
    train, valid = clustered()
    attributes = sp.csr_matrix((np.arange(48)[:, None] % 3 == np.arange(3)[None, :])
                               .astype(np.float32))
    options = dict(settings=None, relative_weights=(0.5, 1.0, 2.0, 4.0), max_items=30,
                   item_attributes=attributes, attribute_weights=(0.0, 1.0),
                   smoothings=(0.0, 4.0))
    ranking = noisy_ranking(train, valid)
    choice = select_graph_filter(ranking, screen_items=15, **options)
    assert choice.relative_weight > 0 and choice.term is not None
    assert {c["head_items"] for c in choice.grid} == {30}
    assert len(choice.grid) == 4  # the chosen setting's weights on the full head
    assert choice.screen_grid and all(c.get("head_items", 15) == 15 for c in choice.screen_grid)
    assert any(c["valid_ndcg"] == choice.valid_ndcg for c in choice.grid)
    # The term added to the ranking is the chosen setting's on the full head (0 elsewhere).
    outside = np.setdiff1d(np.arange(48), np.unique(train.item_idx.to_numpy()))
    assert torch.all(choice.term[:, torch.from_numpy(outside)] == 0)
    # A head no larger than the screen: as without screening.
    whole = select_graph_filter(noisy_ranking(train, valid), screen_items=30, **options)
    plain = select_graph_filter(noisy_ranking(train, valid), screen_items=None, **options)
    assert whole.summary() == plain.summary() and whole.grid == plain.grid
    assert not whole.screen_grid
