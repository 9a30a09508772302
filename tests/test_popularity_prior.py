"""The flagship's popularity prior (recsys_core.models.popularity_prior): chosen on validation
only where it pays, carried in the item-bias column, so scores, saved runs, new items and
explanations all see the same model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsys_core.dataset import Dataset
from recsys_core.models.gnn_llm import GNNLLMRecommender
from recsys_core.models.item_item import ValidationRanking, masked_std
from recsys_core.models.popularity_prior import (
    PRIOR_TRANSFORMS,
    PopularityPriorChoice,
    describe_prior_choice,
    item_popularity,
    popularity_values,
    select_popularity_prior,
)

NUM_USERS, NUM_ITEMS = 80, 40


def popular_dataset(seed: int = 0) -> Dataset:
    """Users pick 8 items each by a steep popularity law and nothing else (no taste, random
    texts): popularity is all the signal there is."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, NUM_ITEMS + 1) ** 1.5
    rows = [(f"u{u}", f"i{i}") for u in range(NUM_USERS)
            for i in rng.choice(NUM_ITEMS, 8, replace=False, p=weights / weights.sum())]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(NUM_ITEMS)],
                          "title": [f"Item {i}" for i in range(NUM_ITEMS)]})
    return Dataset(pd.DataFrame(rows, columns=["user_id", "item_id"]), items)


def flagship(**options) -> GNNLLMRecommender:
    text = torch.randn(NUM_ITEMS, 6, generator=torch.Generator().manual_seed(0))
    options = {"graph_filter": False, "item_item": False, **options}
    return GNNLLMRecommender(embedding_dim=8, heads=2, epochs=2, batch_size=64,
                             num_negatives=8, device="cpu", show_progress=False, seed=0,
                             item_text_embeddings=text, **options)


@pytest.fixture(scope="module")
def fitted():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ds = popular_dataset()
    model = flagship().fit(ds, ds.interactions)
    torch.set_num_threads(before)
    return model, ds


def test_popularity_values_are_scaled_counts_and_zero_without_interactions():
    counts = np.array([0, 1, 3, 9])
    for transform in PRIOR_TRANSFORMS:
        values = popularity_values(counts, transform)
        assert values.dtype == np.float32 and values[0] == 0 and values[-1] == 1
        assert np.all(np.diff(values) > 0)
    np.testing.assert_allclose(popularity_values(counts, "sqrt"), [0, 1 / 3, 3 ** 0.5 / 3, 1])
    np.testing.assert_allclose(popularity_values(counts, "linear"), counts / 9)
    assert not popularity_values(np.zeros(3), "log").any()
    with pytest.raises(ValueError, match="transform must be one of"):
        popularity_values(counts, "square")
    matrix = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0]], dtype=np.float32))
    np.testing.assert_array_equal(item_popularity(matrix), [2, 0, 1])


def _ranking(base: np.ndarray, train: pd.DataFrame, valid: pd.DataFrame) -> ValidationRanking:
    return ValidationRanking(lambda users: torch.from_numpy(base[users]), train, valid,
                             base.shape[0], base.shape[1], k=5)


def test_selection_switches_the_prior_on_only_where_validation_shows_the_margin():
    ds = popular_dataset()
    frame = ds.interactions
    valid = frame.groupby("user_idx").tail(2)
    train = frame.drop(valid.index)
    noise = np.random.default_rng(3).normal(size=(NUM_USERS, NUM_ITEMS)).astype(np.float32)
    chosen = select_popularity_prior(_ranking(noise, train, valid))
    assert chosen.relative_weight > 0 and chosen.transform in PRIOR_TRANSFORMS
    assert chosen.valid_ndcg > chosen.valid_ndcg_base * 1.01
    assert len(chosen.grid) == len(PRIOR_TRANSFORMS) * 9
    assert describe_prior_choice(chosen.summary()).startswith(
        f"popularity prior: {chosen.transform} of the item's users")

    # A score that already ranks every held-out item first leaves nothing to gain.
    truth = np.zeros((NUM_USERS, NUM_ITEMS), np.float32)
    truth[valid["user_idx"], valid["item_idx"]] = 10.0
    off = select_popularity_prior(_ranking(truth + 0.01 * noise, train, valid))
    assert off.relative_weight == 0 and off.valid_ndcg == off.valid_ndcg_base
    assert describe_prior_choice(off.summary()) == (
        "popularity prior off (it did not help on validation)")


def test_the_chosen_prior_is_in_the_bias_column_and_scores_as_a_forward_pass(fitted):
    model, ds = fitted
    chosen = model.train_result.selected["popularity_prior"]
    assert chosen["relative_weight"] > 0  # popularity is all the signal in this data
    validation = model.train_result.selected["validation"]
    assert validation["valid_ndcg_prior"] == pytest.approx(chosen["valid_ndcg"])
    assert validation["valid_ndcg_prior"] > validation["valid_ndcg_learned"]
    values = popularity_values(item_popularity(model.train_matrix), chosen["transform"])
    prior = model.module.item_prior.numpy().copy()
    np.testing.assert_allclose(prior, chosen["scale"] * values, rtol=1e-6)
    assert chosen["scale"] > 0

    users = np.arange(ds.num_users)
    scores = model.score(users)
    model._finalize()  # a fresh forward pass gives what the cached embeddings held
    np.testing.assert_allclose(model.score(users), scores, rtol=1e-5, atol=1e-5)
    saved = model.module.item_prior.clone()
    try:
        model.module.item_prior.zero_()
        model._finalize()
        np.testing.assert_allclose(scores - model.score(users), np.broadcast_to(
            prior, scores.shape), rtol=1e-4, atol=1e-5)
    finally:
        model.module.item_prior.copy_(saved)
        model._finalize()


def test_explanations_and_new_items_see_the_prior(fitted):
    from recsys_core.explain import attention_explanation

    model, ds = fitted
    item = model.recommend(["u0"], k=1)["item_id"].iloc[0]
    result = attention_explanation(model, ds, "u0", item)
    row = ds.item_idx([item])[0]
    assert result.score == pytest.approx(float(model.score(np.array([0]), np.array([row]))[0, 0]),
                                         rel=1e-4, abs=1e-4)
    assert abs(result.details["residual"]) < 1e-4
    # A new item has no interactions: no prior; scored as a cold catalogue item would be.
    new = model.score_new_items(torch.randn(2, 6, generator=torch.Generator().manual_seed(5)))
    assert new.shape == (ds.num_users, 2) and np.isfinite(new).all()


def test_a_saved_run_keeps_the_prior_and_older_runs_load_without_one(fitted, tmp_path):
    from safetensors.torch import load_file, save_file

    from recsys_core.run import load_run, save_run

    model, ds = fitted
    users = np.arange(ds.num_users)
    run_dir = save_run(tmp_path / "run", model, ds, ds.interactions)
    loaded, _, _ = load_run(run_dir)
    np.testing.assert_allclose(loaded.module.item_prior, model.module.item_prior)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)

    # Rewrite the run as a version before the prior wrote it: it loads, with no prior.
    path, info_path = run_dir / "model.safetensors", run_dir / "run.json"
    tensors = load_file(path)
    del tensors["item_prior"]
    save_file(tensors, path)
    info = json.loads(info_path.read_text())
    info["tensors"].pop("item_prior")
    info["files"]["model.safetensors"] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                          "bytes": path.stat().st_size}
    info_path.write_text(json.dumps(info))
    older, _, _ = load_run(run_dir)
    assert not older.module.item_prior.any()
    np.testing.assert_allclose(older.score(users), model.score(users) - model.module.item_prior
                               .numpy(), rtol=1e-4, atol=1e-5)


def test_switched_off_in_the_settings_nothing_is_chosen():
    ds = popular_dataset()
    model = flagship(popularity_prior=False).fit(ds, ds.interactions)
    assert "popularity_prior" not in model.train_result.selected
    assert not model.module.item_prior.any()
    assert model.config()["popularity_prior"] is False
    without_bias = flagship(item_bias=False).fit(ds, ds.interactions)  # no column to carry it
    assert "popularity_prior" not in without_bias.train_result.selected


def test_the_prior_comes_before_the_graph_filter():
    """The prior is chosen on the learned score and the graph filter on top of it, and they
    are set on the final model in that order: the prior's scale against the learned score,
    the filter's against the learned score plus the prior; the saved scores are what a fresh
    forward pass and the path give."""
    ds = popular_dataset()
    model = flagship(graph_filter=True, selection_margin=0.0).fit(ds, ds.interactions)
    selected = model.train_result.selected
    validation = selected["validation"]
    assert selected["popularity_prior"]["valid_ndcg_base"] == pytest.approx(
        validation["valid_ndcg_learned"])
    assert selected["graph_filter"]["valid_ndcg_base"] == pytest.approx(
        validation["valid_ndcg_prior"])
    assert selected["graph_filter"]["relative_weight"] > 0

    # Both on (the prior forced here, a weight of 1).
    model.popularity_prior_choice = PopularityPriorChoice("log", 1.0, np.nan, np.nan, [])
    model._fit_closed_form_parts()
    users = np.arange(ds.num_users)
    scores = model.score(users)
    prior = model.module.item_prior.numpy().copy()
    learned = scores - prior - model.item_item_path.scores(model.train_matrix[users])
    values = popularity_values(item_popularity(model.train_matrix), "log")
    seen = torch.from_numpy(model.train_matrix[users].toarray() > 0)
    expected = masked_std(torch.from_numpy(learned), seen) / masked_std(
        torch.from_numpy(values).expand(len(users), -1), seen)
    np.testing.assert_allclose(prior, expected * values, rtol=1e-4)
    model._finalize()  # a fresh forward pass gives what the cached embeddings held
    np.testing.assert_allclose(model.score(users), scores, rtol=1e-5, atol=1e-5)
    model._fit_closed_form_parts()  # fitting the parts again replaces the prior, not adds
    np.testing.assert_allclose(model.score(users), scores, rtol=1e-5, atol=1e-5)
