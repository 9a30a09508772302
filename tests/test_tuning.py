"""recsys_core.tuning: peers choose their settings on the flagship's validation split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import recsys_core.tuning as tuning
from recsys_core.dataset import Dataset
from recsys_core.models import create_model, get_model_class
from recsys_core.models.base import Recommender
from recsys_core.models.params import constructor_parameters
from recsys_core.training import split_validation
from recsys_core.tuning import (
    DEFAULT_BASE_PARAMS,
    DEFAULT_GRIDS,
    FLAGSHIP_TRAINING,
    PEER_PATIENCE,
    grid_points,
    tune_model,
    validation_metrics,
)


class NearestToShift(Recommender):
    """Every user ranks items by closeness of their index to ``shift`` (a test double)."""

    name = "nearest-to-shift"
    fitted_on: list[pd.DataFrame] = []

    def __init__(self, shift: int = 0, **ignored) -> None:
        super().__init__()
        self.shift = shift

    def fit(self, dataset, train, valid=None, on_progress=None):
        self._bind(dataset, train)
        NearestToShift.fitted_on.append(train)
        return self

    def score(self, users, items=None):
        items = np.arange(self.dataset.num_items) if items is None else np.asarray(items)
        row = -np.abs(items - self.shift).astype(np.float64)
        return np.broadcast_to(row, (len(users), len(items))).copy()


@pytest.fixture
def shift_data(monkeypatch) -> Dataset:
    """12 users who each saw items 0-9 of 30; the validation split takes one of those per
    user, so ranking low indices first finds it, high indices first never does."""
    users = np.repeat(np.arange(12), 10)
    items = np.tile(np.arange(10), 12)
    inter = pd.DataFrame({"user_id": [f"u{u:02d}" for u in users],
                          "item_id": [f"i{i:02d}" for i in items], "rating": 1.0,
                          "timestamp": np.nan})
    catalogue = pd.DataFrame({"item_id": [f"i{i:02d}" for i in range(30)],
                              "title": [f"Item {i}" for i in range(30)], "description": ""})
    ds = Dataset(inter, catalogue)
    assert list(ds.item_ids) == [f"i{i:02d}" for i in range(30)]
    NearestToShift.fitted_on = []
    monkeypatch.setattr(tuning, "create_model", lambda name, **kw: NearestToShift(**kw))
    return ds


def test_grid_points_every_combination_last_key_fastest():
    assert grid_points({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert grid_points({}) == [{}]


def test_tuner_picks_the_point_best_on_the_constructed_validation(shift_data):
    ds = shift_data
    model, record = tune_model("nearest-to-shift", ds, ds.interactions,
                               grid={"shift": [15, 0, 29]})
    by_shift = {p.params["shift"]: p for p in record.points}
    # shift 0: the one validation item (index <= 9) outranks the 20 unseen items 10-29.
    assert by_shift[0].ndcg == pytest.approx(1.0) and by_shift[0].recall == pytest.approx(1.0)
    # shift 29: it comes 21st of the 21 unseen items, outside the top 20.
    assert by_shift[29].ndcg == 0.0 and by_shift[29].recall == 0.0
    assert 0.0 < by_shift[15].ndcg < 1.0
    assert record.chosen == {"shift": 0} and record.best is by_shift[0]
    assert isinstance(model, NearestToShift) and model.shift == 0
    assert model.tuning is record
    # The refit sees every fit interaction; the grid saw only the train part.
    assert model.train_matrix.nnz == len(ds.interactions)
    assert record.table()["chosen"].tolist() == [False, True, False]
    assert record.describe().startswith("shift 0 (3 settings; valid NDCG@20 1.0000)")


def test_tuner_carves_the_flagships_validation_split(shift_data):
    ds = shift_data
    _, record = tune_model("nearest-to-shift", ds, ds.interactions, grid={"shift": [0, 29]})
    flagship = get_model_class("gnn-llm")
    defaults = constructor_parameters(flagship)
    train, valid = split_validation(ds.interactions, defaults["valid_fraction"].default,
                                    defaults["seed"].default)
    grid_fits, refit = NearestToShift.fitted_on[:-1], NearestToShift.fitted_on[-1]
    assert len(grid_fits) == 2
    for frame in grid_fits:
        pd.testing.assert_frame_equal(frame, train)
    pd.testing.assert_frame_equal(refit, ds.interactions)
    assert record.valid_interactions == len(valid) == 12 and record.valid_users == 12
    assert (record.valid_fraction, record.seed) == (0.1, 0)


def test_ties_go_to_the_earlier_grid_point(shift_data):
    ds = shift_data
    _, record = tune_model("nearest-to-shift", ds, ds.interactions, grid={"shift": [1, 0]})
    assert record.points[0].ndcg == record.points[1].ndcg == pytest.approx(1.0)
    assert record.chosen == {"shift": 1}


def test_should_stop_keeps_the_points_tried(shift_data):
    ds = shift_data
    calls = iter([False, True, True, True])
    _, record = tune_model("nearest-to-shift", ds, ds.interactions,
                           grid={"shift": [29, 0, 15]}, should_stop=lambda: next(calls))
    assert [p.params for p in record.points] == [{"shift": 29}]
    assert record.chosen == {"shift": 29}


def test_ease_tuning_matches_fitting_each_lambda_by_hand(tiny_dataset):
    inter = tiny_dataset.interactions
    model, record = tune_model("ease", tiny_dataset, inter, grid={"reg_lambda": [0.5, 50.0]})
    train, valid = split_validation(inter, 0.1, 0)
    for point in record.points:
        by_hand = create_model("ease", **point.params).fit(tiny_dataset, train)
        assert (point.ndcg, point.recall) == validation_metrics(by_hand, valid)
    best = max(record.points, key=lambda p: p.ndcg)
    assert record.chosen == best.params
    expected = create_model("ease", **best.params).fit(tiny_dataset, inter)
    users = np.arange(tiny_dataset.num_users)
    np.testing.assert_array_equal(model.score(users), expected.score(users))
    again, record_again = tune_model("ease", tiny_dataset, inter,
                                     grid={"reg_lambda": [0.5, 50.0]})
    assert [(p.params, p.ndcg, p.recall) for p in record_again.points] == [
        (p.params, p.ndcg, p.recall) for p in record.points]  # deterministic


@pytest.mark.parametrize("name", ["rp3beta", "itemknn", "pop"])
def test_closed_form_peers_tune_end_to_end(name, tiny_dataset):
    grid = {"rp3beta": {"beta": [0.0, 0.5], "neighbours": [2, 5]},
            "itemknn": {"neighbours": [2, 5], "shrink": [0.0, 10.0]}, "pop": {}}[name]
    model, record = tune_model(name, tiny_dataset, tiny_dataset.interactions, grid=grid)
    assert len(record.points) == len(grid_points(grid))
    assert model.name == name and model.config().items() >= record.chosen.items()
    assert model.recommend(k=3)["rank"].max() <= 3
    assert all(np.isfinite(p.ndcg) for p in record.points)


def test_iterative_peers_get_the_flagships_loss_and_refit_for_the_chosen_epochs(tiny_dataset):
    flagship = constructor_parameters(get_model_class("gnn-llm"))
    for key, value in FLAGSHIP_TRAINING.items():
        assert flagship[key].default == value, key
    assert PEER_PATIENCE >= flagship["patience"].default  # never stopped sooner than it
    for name in ("mf", "lightgcn"):
        assert DEFAULT_BASE_PARAMS[name] == {**FLAGSHIP_TRAINING, "patience": PEER_PATIENCE}
        config = create_model(name, **FLAGSHIP_TRAINING).train_config
        assert (config.loss, config.num_negatives) == ("softmax", 2048)
    base = {**FLAGSHIP_TRAINING, "epochs": 3, "device": "cpu", "show_progress": False}
    model, record = tune_model("mf", tiny_dataset, tiny_dataset.interactions,
                               grid={"embedding_dim": [4, 8]}, base_params=base)
    best = record.best
    assert best.best_epoch is not None and 0 <= best.best_epoch <= 3
    epochs = max(1, best.best_epoch)  # 0 (the initial weights won) still trains one epoch
    assert record.chosen == {**best.params, "epochs": epochs}
    assert model.embedding_dim == best.params["embedding_dim"]
    assert model.train_config.epochs == epochs and model.train_config.loss == "softmax"
    assert not model.train_config.refit
    assert model.train_result.best_epoch == epochs  # trained that many on everything
    assert model.train_matrix.nnz == len(tiny_dataset.interactions)


def test_default_grids_are_the_documented_ones():
    assert DEFAULT_GRIDS["ease"] == {"reg_lambda": [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0,
                                                    2000.0]}
    assert len(grid_points(DEFAULT_GRIDS["rp3beta"])) == 36
    assert len(grid_points(DEFAULT_GRIDS["itemknn"])) == 16
    for name in ("mf", "lightgcn"):
        assert grid_points(DEFAULT_GRIDS[name]) == [
            {"embedding_dim": 64, "weight_decay": 0.0}, {"embedding_dim": 64, "weight_decay": 1e-5},
            {"embedding_dim": 128, "weight_decay": 0.0},
            {"embedding_dim": 128, "weight_decay": 1e-5}]
    for name, grid in DEFAULT_GRIDS.items():  # every grid key is a constructor argument
        params = constructor_parameters(get_model_class(name))
        assert set(grid) <= set(params), name


def test_record_is_json_serialisable_even_with_array_settings(shift_data):
    import json

    ds = shift_data
    _, record = tune_model("nearest-to-shift", ds, ds.interactions, grid={"shift": [0]},
                           base_params={"embeddings": np.zeros((2, 2)), "k": 3})
    data = json.loads(json.dumps(record.to_dict()))
    assert data["base_params"] == {"embeddings": "<ndarray>", "k": 3}
    assert data["chosen"] == {"shift": 0} and data["points"][0]["ndcg"] == pytest.approx(1.0)
