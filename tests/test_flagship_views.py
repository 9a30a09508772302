"""What each part of the flagship contributes (recsys_core.views.flagship): the validation
decomposition of a trained run, the run chosen for it and the ablation comparison."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_app_pages import tiny_dataset

from recsys_core.models import create_model
from recsys_core.services.evaluation import chosen_on_validation
from recsys_core.services.runs import RunRegistry
from recsys_core.training import TrainConfig, TrainResult
from recsys_core.views.flagship import (
    PART_FILTER,
    PART_ITEM_ITEM,
    PART_LEARNED,
    PART_PRIOR,
    ablation_comparison,
    ablation_comparison_fig,
    flagship_parts,
    flagship_parts_fig,
    flagship_run,
)

FILTER = {"ideal_dim": 8, "ideal_weight": 0.5, "relative_weight": 0.25,
          "valid_ndcg_base": 0.2, "valid_ndcg": 0.25, "scale": 1.0}
PRIOR = {"transform": "log", "relative_weight": 2.0, "valid_ndcg_base": 0.2,
         "valid_ndcg": 0.25}
ITEM_ITEM = {"reg_lambda": 200.0, "relative_weight": 0.0, "valid_ndcg_graph": 0.25,
             "valid_ndcg": 0.25, "bridge_scale": 1.0}


def fake_flagship(selected: dict, best_epoch: int = 7) -> SimpleNamespace:
    """Just what the views read of a fitted flagship."""
    return SimpleNamespace(name="gnn-llm", selection_margin=0.01, train_config=TrainConfig(),
                           train_result=TrainResult(best_epoch=best_epoch,
                                                    best_valid_ndcg=0.2, selected=selected))


@pytest.fixture(scope="module")
def fitted():
    """A tiny flagship fitted on tiny data (random 16-d text features, two epochs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ds = tiny_dataset()
    text = np.random.default_rng(1).normal(size=(ds.num_items, 16)).astype(np.float32)
    model = create_model("gnn-llm", epochs=2, embedding_dim=16, device="cpu",
                         item_text_embeddings=text, show_progress=False).fit(ds, ds.interactions)
    torch.set_num_threads(before)
    return model


# ---------------------------------------------------------------------------------- decomposition
def test_parts_add_up_step_by_step_with_gains_and_words():
    validation = {"valid_ndcg_learned": 0.2, "valid_ndcg_prior": 0.25, "valid_ndcg_graph": 0.275,
                  "valid_ndcg": 0.275}
    parts = flagship_parts(fake_flagship(
        {"popularity_prior": PRIOR, "graph_filter": FILTER, "item_item": ITEM_ITEM,
         "validation": validation}))
    assert list(parts["part"]) == [PART_LEARNED, PART_PRIOR, PART_FILTER, PART_ITEM_ITEM]
    assert list(parts.columns) == ["part", "valid ndcg@20", "gain", "gain %", "on", "settings"]
    np.testing.assert_allclose(parts["valid ndcg@20"], [0.2, 0.25, 0.275, 0.275])
    assert np.isnan(parts["gain"].iloc[0]) and np.isnan(parts["gain %"].iloc[0])
    np.testing.assert_allclose(parts["gain"].iloc[1:], [0.05, 0.025, 0.0], atol=1e-12)
    np.testing.assert_allclose(parts["gain %"].iloc[1:], [25.0, 10.0, 0.0], atol=1e-9)
    assert list(parts["on"]) == [True, True, True, False]
    settings = list(parts["settings"])
    assert settings[0] == "7 epochs (early stopping)"
    assert settings[1] == ("popularity prior: log of the item's users, weight=2 (validation "
                           "NDCG 0.2000 without it, 0.2500 with it)")
    assert settings[2].startswith("graph filter: k=8, alpha=0.5")
    assert settings[3] == "item-item path off (it did not help on validation)"


def test_parts_say_which_side_information_validation_kept():
    relations = {"kept": ["genre"], "dropped": ["user_edges"], "valid_ndcg_all": 0.2,
                 "valid_ndcg": 0.21, "valid_ndcg_without": {"genre": 0.19, "user_edges": 0.21}}
    parts = flagship_parts(fake_flagship({"relations": relations}))
    assert parts["settings"].iloc[0] == ("7 epochs (early stopping); side information kept: "
                                         "genre (switched off, no validation gain: user_edges)")


def test_parts_switched_off_in_the_settings_keep_their_rows():
    parts = flagship_parts(fake_flagship({}))  # graph_filter=False, item_item=False
    assert list(parts["on"]) == [True, False, False, False]
    np.testing.assert_allclose(parts["valid ndcg@20"], [0.2] * 4)  # best_valid_ndcg
    assert "switched off in the settings" in parts["settings"].iloc[1]
    assert "graph_filter=False" in parts["settings"].iloc[2]
    assert "item_item=False" in parts["settings"].iloc[3]


def test_models_other_than_the_flagship_have_no_parts():
    assert flagship_parts(SimpleNamespace(name="ease")).empty
    assert flagship_parts(SimpleNamespace(name="gnn-llm", train_result=None)).empty
    assert len(flagship_parts_fig(flagship_parts(SimpleNamespace(name="ease"))).data) == 0


def test_a_fitted_flagship_reports_its_own_validation_record(fitted):
    selected = fitted.train_result.selected
    parts = flagship_parts(fitted)
    validation = selected["validation"]
    np.testing.assert_allclose(parts["valid ndcg@20"], [
        validation["valid_ndcg_learned"], validation["valid_ndcg_prior"],
        validation["valid_ndcg_graph"], validation["valid_ndcg"]])
    assert parts["on"].iloc[1] == (selected["popularity_prior"]["relative_weight"] > 0)
    assert parts["on"].iloc[2] == (selected["graph_filter"]["relative_weight"] > 0)
    assert parts["on"].iloc[3] == (selected["item_item"]["relative_weight"] > 0)
    assert parts["settings"].iloc[1].startswith("popularity prior")
    assert parts["settings"].iloc[2].startswith("graph filter")
    assert parts["settings"].iloc[3].startswith("item-item path")
    fig = flagship_parts_fig(parts)
    bars = fig.data[0]
    assert list(bars.x) == list(parts["part"])
    colours = ["#1f77b4" if on else "#b0b0b0" for on in parts["on"]]
    assert list(bars.marker.color) == colours
    words = chosen_on_validation(fitted)
    assert "popularity prior" in words and "graph filter" in words and "item-item path" in words


def test_runs_table_describes_the_graph_filter_and_the_item_item_path():
    model = fake_flagship({"graph_filter": FILTER, "item_item": ITEM_ITEM})
    words = chosen_on_validation(model)
    assert words == ("graph filter: k=8, alpha=0.5, weight=0.25 (validation NDCG 0.2000 "
                     "without it, 0.2500 with it); item-item path off (it did "
                     "not help on validation)")


# ---------------------------------------------------------------------------------- which run
def test_the_decomposed_run_is_the_active_flagship_or_the_one_its_variant_ablates():
    runs = RunRegistry()
    assert flagship_run(runs) is None
    full = runs.add(fake_flagship({}), "gnn-llm")
    ease = runs.add(SimpleNamespace(name="ease"), "ease")
    assert runs.active is ease and flagship_run(runs) is full  # the latest flagship
    variant = runs.add(fake_flagship({}), "gnn-llm")
    variant.meta = {"ablation_of": full.run_id, "ablation": "no-text"}
    assert flagship_run(runs) is full  # active variant -> the run it ablates
    runs.active_id = ease.run_id
    assert flagship_run(runs) is full  # variants are never chosen on their own
    runs.active_id = full.run_id
    assert flagship_run(runs) is full


# ---------------------------------------------------------------------------------- ablations
def metrics(warm_recall: float, warm_ndcg: float, cold_recall: float | None = None) -> dict:
    return {"warm_items": {"recall": warm_recall, "ndcg": warm_ndcg},
            "cold_items": {"recall": cold_recall, "ndcg": None}}


def test_comparison_puts_the_full_run_first_and_states_each_change_in_percent():
    table = ablation_comparison(
        {"run": "gnn-llm #4", "metrics": metrics(0.4, 0.2, 0.3)},
        [{"run": "gnn-llm (no text)", "ablation": "no-text", "metrics": metrics(0.3, 0.25)},
         {"run": "gnn-llm (no graph filter)", "ablation": "no-graph-filter",
          "metrics": metrics(0.4, 0.1, 0.1)}])
    assert list(table["variant"]) == ["full flagship", "no text", "no graph filter"]
    assert list(table["run"]) == ["gnn-llm #4", "gnn-llm (no text)", "gnn-llm (no graph filter)"]
    np.testing.assert_allclose(table["warm recall@20"], [0.4, 0.3, 0.4])
    np.testing.assert_allclose(table["Δ warm recall@20 %"], [0.0, -25.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(table["Δ warm ndcg@20 %"], [0.0, 25.0, -50.0], atol=1e-9)
    assert np.isnan(table["cold recall@20"].iloc[1])  # not measured: shown empty
    np.testing.assert_allclose(table["Δ cold recall@20 %"], [0.0, np.nan, -200.0 / 3],
                               atol=1e-9)
    fig = ablation_comparison_fig(table)
    assert [t.name for t in fig.data] == ["warm recall@20", "warm ndcg@20", "cold recall@20"]
    no_cold = ablation_comparison_fig(table.assign(**{"cold recall@20": np.nan}))
    assert [t.name for t in no_cold.data] == ["warm recall@20", "warm ndcg@20"]
    assert list(fig.data[0].x) == list(table["variant"])


# ---------------------------------------------------------------------------------- the job plan
def test_plan_retrains_the_runs_settings_with_each_applicable_part_off():
    from recsys_core.services.plans import ablation_plan, run_settings
    from recsys_core.services.runs import Run

    config = {"embedding_dim": 16, "epochs": 300, "item_item": False, "device": "cpu",
              "item_text_embeddings": np.zeros((3, 2)), "show_progress": False}
    run = Run("gnn-llm #4", "gnn-llm", SimpleNamespace(config=lambda: config),
              params={"epochs": 5, "time_limit": 35.0})
    base = {"embedding_dim": 16, "item_item": False, "device": "cpu", "epochs": 5,
            "time_limit": 35.0}  # defaults and data the app supplies left out
    assert run_settings(run) == base
    plan, weights = ablation_plan(run, tiny_dataset())  # attributes and user edges, no users
    keys = [step[3]["ablation"] for step in plan]
    # "full" and "no-item-item" change nothing here (the path is already off)
    assert keys == ["learned-only", "no-graph-filter", "no-text", "no-attributes",
                    "no-user-edges"]
    assert weights == [1.0] * len(plan)
    for name, params, activate, meta in plan:
        assert name == "gnn-llm" and activate is False and meta["ablation_of"] == "gnn-llm #4"
        assert {k: v for k, v in params.items() if k in base and k not in (
            "item_item",)} == {k: v for k, v in base.items() if k != "item_item"}
    labels = [meta["label"] for *_, meta in plan]
    assert labels == ["gnn-llm (learned graph attention alone)", "gnn-llm (no graph filter)",
                      "gnn-llm (no text)", "gnn-llm (no attribute nodes)",
                      "gnn-llm (no user-user edges)"]
    assert plan[2][1]["use_text"] is False and plan[0][1]["graph_filter"] is False


def test_variants_register_under_their_labels_and_link_to_their_run():
    from recsys_core.services.runs import TrainedModel

    runs = RunRegistry()
    full = runs.add(fake_flagship({}), "gnn-llm")
    for _ in range(2):
        runs.add_trained(TrainedModel("gnn-llm", fake_flagship({}), activate=False,
                                      label="gnn-llm (no text)",
                                      meta={"ablation_of": full.run_id, "ablation": "no-text"}))
    assert runs.ids() == [full.run_id, "gnn-llm (no text)", "gnn-llm (no text) #2"]
    assert runs.active is full
    from recsys_core.views.flagship import variant_runs

    assert [r.run_id for r in variant_runs(runs, full)] == ["gnn-llm (no text) #2"]  # latest
