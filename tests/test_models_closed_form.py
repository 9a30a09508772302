"""Closed-form baselines (pop, EASE, text kNN) and the model registry, on tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fast_model, random_item_text

from recsys_core.dataset import Dataset
from recsys_core.errors import RecScopeError, TrainingError
from recsys_core.metrics import evaluate_recommendations
from recsys_core.models import (
    MODEL_REGISTRY,
    ModelNotAvailableError,
    available_models,
    create_model,
    get_model_class,
)
from recsys_core.models.ease import EASERecommender
from recsys_core.models.pop import PopularityRecommender
from recsys_core.models.text_knn import TextKNNRecommender
from recsys_core.splits import per_user_random_split

CLOSED_FORM = ["pop", "ease", "text-knn"]


def make_model(name: str, dataset: Dataset):
    """``name`` with the fast settings (EASE's lambda 5), text-kNN on 16-d random texts."""
    return fast_model(name, dataset, text_dim=16)


def seen_items(dataset: Dataset, user: str) -> set[str]:
    inter = dataset.interactions
    return set(inter.loc[inter["user_id"] == user, "item_id"])


def cold_item_ids(dataset: Dataset) -> list[str]:
    return [dataset.item_ids[i] for i in np.flatnonzero(~dataset.interacted_items())]


# ---------------------------------------------------------------------------- every model
@pytest.mark.parametrize("name", CLOSED_FORM)
def test_whole_pipeline(name, tiny_dataset):
    """Split, fit, recommend, evaluate: the whole path for every closed-form model."""
    split = per_user_random_split(tiny_dataset.interactions, test_ratio=0.2, valid_ratio=0.0,
                                  min_interactions=2)
    model = make_model(name, tiny_dataset).fit(tiny_dataset, split.train)
    assert model.name == name
    recs = model.recommend(k=3)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert set(recs["user_id"]) == set(tiny_dataset.user_ids)
    train = split.train
    for user, group in recs.groupby("user_id"):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert group["score"].is_monotonic_decreasing
        assert not set(group["item_id"]) & set(train.loc[train["user_id"] == user, "item_id"])
    metrics = evaluate_recommendations(split.test, recs, train=train, k=3,
                                       num_items=tiny_dataset.num_items)
    assert 0.0 <= metrics["recall"] <= 1.0 and metrics["n_users"] > 0


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_scores_shape_subsets_and_determinism(name, tiny_dataset):
    model = make_model(name, tiny_dataset).fit(tiny_dataset, tiny_dataset.interactions)
    users = np.arange(tiny_dataset.num_users)
    full = model.score(users)
    assert full.shape == (tiny_dataset.num_users, tiny_dataset.num_items)
    assert np.isfinite(full).all()
    items = np.array([5, 0, 11, 3])
    # Same numbers up to float32 summation order (BLAS picks kernels by shape).
    np.testing.assert_allclose(model.score(users[2:5], items), full[2:5][:, items],
                               rtol=1e-6, atol=1e-7)
    again = make_model(name, tiny_dataset).fit(tiny_dataset, tiny_dataset.interactions)
    np.testing.assert_array_equal(again.score(users), full)


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_strict_state_loading(name, tiny_dataset):
    model = make_model(name, tiny_dataset).fit(tiny_dataset, tiny_dataset.interactions)
    state = model.state_tensors()
    assert state and all(isinstance(t, torch.Tensor) for t in state.values())
    fresh = get_model_class(name)(**model.config())
    fresh.restore(tiny_dataset, tiny_dataset.interactions, state)
    users = np.arange(tiny_dataset.num_users)
    np.testing.assert_array_equal(fresh.score(users), model.score(users))
    with pytest.raises(ValueError, match="unexpected"):
        fresh.load_state_tensors({**state, "extra": torch.zeros(1)})
    key = next(iter(state))
    with pytest.raises(ValueError, match="missing"):
        fresh.load_state_tensors({k: v for k, v in state.items() if k != key})
    bad = {k: (v[:-1] if v.ndim else v) for k, v in state.items()}
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state_tensors(bad)


# ---------------------------------------------------------------------------- popularity
def test_popularity_counts_distinct_users(tiny_dataset):
    doubled = pd.concat([tiny_dataset.interactions, tiny_dataset.interactions.iloc[:3]])
    model = PopularityRecommender().fit(tiny_dataset, doubled)
    counts = tiny_dataset.interactions.groupby("item_idx")["user_idx"].nunique()
    expected = np.zeros(tiny_dataset.num_items)
    expected[counts.index] = counts.to_numpy()
    np.testing.assert_array_equal(model.score(np.array([0]))[0], expected)
    for cold in cold_item_ids(tiny_dataset):
        assert model.score(np.array([0]), tiny_dataset.item_idx([cold]))[0, 0] == 0.0


# ---------------------------------------------------------------------------- EASE
def reference_ease(x: np.ndarray, lam: float) -> np.ndarray:
    """Steck (2019), written out in NumPy over every item."""
    gram = x.T @ x + lam * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return x @ b


def test_ease_matches_closed_form(tiny_dataset):
    model = EASERecommender(reg_lambda=3.0).fit(tiny_dataset, tiny_dataset.interactions)
    x = model.train_matrix.toarray().astype(np.float64)
    expected = reference_ease(x, 3.0)
    np.testing.assert_allclose(model.score(np.arange(tiny_dataset.num_users)), expected,
                               rtol=1e-4, atol=1e-5)
    weights = model.state_tensors()["weights"]
    assert torch.all(torch.diagonal(weights) == 0)
    assert model.config() == {"reg_lambda": 3.0, "max_items": 20_000, "device": "cpu"}


def test_ease_dense_matrix_only_over_interacted_items(tiny_dataset):
    model = EASERecommender().fit(tiny_dataset, tiny_dataset.interactions)
    n_active = int(tiny_dataset.interacted_items().sum())
    assert n_active < tiny_dataset.num_items  # the tiny data has cold items
    assert tuple(model.state_tensors()["weights"].shape) == (n_active, n_active)
    cold = tiny_dataset.item_idx(cold_item_ids(tiny_dataset))
    assert not model.score(np.arange(tiny_dataset.num_users), cold).any()


def test_ease_refuses_above_memory_bound(tiny_dataset):
    with pytest.raises(TrainingError, match="max_items=5") as info:
        EASERecommender(max_items=5).fit(tiny_dataset, tiny_dataset.interactions)
    assert "lightgcn" in str(info.value) and isinstance(info.value, RecScopeError)


def test_ease_rejects_bad_lambda():
    with pytest.raises(ValueError, match="reg_lambda"):
        EASERecommender(reg_lambda=0.0)


# ---------------------------------------------------------------------------- text kNN
def test_text_knn_is_mean_profile_cosine(tiny_dataset):
    emb = random_item_text(tiny_dataset, 16)
    model = TextKNNRecommender(item_text_embeddings=emb).fit(tiny_dataset,
                                                             tiny_dataset.interactions)
    unit = torch.nn.functional.normalize(emb, dim=1).numpy()
    user = 3
    history = model.train_matrix[user].indices
    profile = unit[history].mean(axis=0)
    expected = unit @ profile / np.linalg.norm(profile)
    np.testing.assert_allclose(model.score(np.array([user]))[0], expected, rtol=1e-5, atol=1e-6)


def test_text_knn_ranks_cold_candidates_by_text(tiny_dataset):
    """A cold item whose text matches a user's history beats an unrelated one."""
    emb = torch.nn.functional.normalize(random_item_text(tiny_dataset, 16), dim=1).numpy()
    cold = tiny_dataset.item_idx(cold_item_ids(tiny_dataset))
    user = "u1"
    history = tiny_dataset.item_idx(sorted(seen_items(tiny_dataset, user)))
    emb[cold[0]] = emb[history].mean(axis=0)  # cold item 0 "reads like" the user's items
    emb[cold[1]] = -emb[cold[0]]
    model = TextKNNRecommender(item_text_embeddings=emb).fit(tiny_dataset,
                                                             tiny_dataset.interactions)
    recs = model.recommend(users=[user], k=2, candidates=tiny_dataset.item_ids[cold])
    assert recs["item_id"].tolist() == [tiny_dataset.item_ids[cold[0]],
                                        tiny_dataset.item_ids[cold[1]]]
    assert recs["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)


def test_text_knn_user_without_history_scores_zero(tiny_dataset):
    train = tiny_dataset.interactions[tiny_dataset.interactions["user_id"] != "u2"]
    model = TextKNNRecommender(item_text_embeddings=random_item_text(tiny_dataset, 16)).fit(
        tiny_dataset, train)
    assert not model.score(tiny_dataset.user_idx(["u2"])).any()


def test_text_knn_checks_embedding_shape(tiny_dataset):
    bad = torch.zeros(tiny_dataset.num_items + 1, 4)
    with pytest.raises(ValueError, match="shape"):
        TextKNNRecommender(item_text_embeddings=bad).fit(tiny_dataset, tiny_dataset.interactions)


def test_text_knn_encodes_item_texts_when_not_given(tiny_dataset, monkeypatch):
    import recsys_core.text as text

    calls = {}

    def fake_encode(dataset, encoder=None, template="", on_progress=None, **_):
        calls["template"] = template
        return torch.ones(dataset.num_items, 3)

    monkeypatch.setattr(text, "encode_items", fake_encode)
    model = TextKNNRecommender(template="{title}").fit(tiny_dataset, tiny_dataset.interactions)
    assert calls == {"template": "{title}"}
    assert model.config() == {"template": "{title}"}


# ---------------------------------------------------------------------------- registry
def test_registry_names_and_default_order():
    assert list(MODEL_REGISTRY) == ["gnn-llm", "lightgcn", "mf", "ease", "pop", "text-knn",
                                    "rp3beta", "itemknn", "text-pop"]
    assert set(CLOSED_FORM) <= set(available_models())
    assert get_model_class("ease") is EASERecommender
    assert isinstance(create_model("pop"), PopularityRecommender)


def test_registry_errors_are_clear():
    with pytest.raises(ModelNotAvailableError, match="Unknown model 'nope'.*ease"):
        create_model("nope")
    with pytest.raises(ModelNotAvailableError, match="no argument.*epochs"):
        create_model("ease", epochs=3)


def test_missing_model_module_does_not_break_the_others(monkeypatch):
    monkeypatch.setitem(MODEL_REGISTRY, "ghost", "ghost_module_that_is_absent:Ghost")
    assert "ghost" not in available_models()
    with pytest.raises(ModelNotAvailableError, match="not available"):
        create_model("ghost")
    assert isinstance(create_model("pop"), PopularityRecommender)
