"""LIME explanations (recsys_core.explain.lime_explain): the flagship and a baseline on tiny
data, determinism and isolation, faithfulness against random removals, the CLI and the page."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from conftest import faithfulness_view  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from test_app_pages import assert_clean, page_test, tiny_workspace  # noqa: E402
from test_explain import private_encoder  # noqa: E402

from recsys_core.cli import main  # noqa: E402
from recsys_core.explain import (  # noqa: E402
    KINDS,
    METHODS,
    HistoryEditError,
    explain,
    faithfulness,
    lime_explanation,
)
from recsys_core.explain.lime_explain import lime_neighbourhood, lime_surrogate  # noqa: E402
from recsys_core.explain.plots import shap_figure  # noqa: E402
from recsys_core.explain.shap_explain import shap_explanation  # noqa: E402
from recsys_core.models.ease import EASERecommender  # noqa: E402
from recsys_core.models.mf import MFRecommender  # noqa: E402
from recsys_core.rng import numpy_generator  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py


@pytest.fixture(scope="module")
def pair(flagship):
    return "u00", str(flagship.recommend(["u00"], k=1)["item_id"].iloc[0])


# ---------------------------------------------------------------------------------- surrogate
def test_neighbourhood_keeps_the_instance_first_and_removes_at_least_one_feature():
    masks = lime_neighbourhood(6, 50, numpy_generator(0))
    assert masks.shape == (50, 6)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert masks[0].all()
    removed = (masks[1:] == 0).sum(axis=1)
    assert removed.min() >= 1 and removed.max() <= 6
    np.testing.assert_array_equal(masks, lime_neighbourhood(6, 50, numpy_generator(0)))


def test_surrogate_recovers_an_additive_game():
    """On a linear game the surrogate's weights are the game's coefficients (ridge shrinks
    them only slightly) and its intercept the all-off score."""
    coefficients = np.array([3.0, -1.0, 0.5, 0.0, 2.0])
    masks = lime_neighbourhood(5, 400, numpy_generator(1))
    scores = 0.7 + masks @ coefficients
    weights, fit = lime_surrogate(masks, scores)
    np.testing.assert_allclose(weights, coefficients, atol=0.15)
    assert fit["intercept"] == pytest.approx(0.7, abs=0.3)
    assert fit["r2"] > 0.99
    assert fit["local_prediction"] == pytest.approx(scores[0], abs=0.3)


def test_top_lime_features_remove_more_score_than_random_ones_on_a_toy_game():
    """A toy score with interactions: the features LIME ranks highest, removed together,
    lower the score more than the same number of random features."""
    rng = np.random.default_rng(3)
    num = 10
    strength = np.array([4.0, 3.0, 2.5, 0.2, 0.1, 0.1, 0.05, 0.0, 0.0, 0.0])

    def game(masks):
        masks = np.asarray(masks, dtype=float)
        return masks @ strength + 1.5 * masks[:, 0] * masks[:, 1]

    masks = lime_neighbourhood(num, 300, numpy_generator(0))
    weights, _ = lime_surrogate(masks, game(masks))
    top = np.argsort(-weights)[:3]
    assert set(top) == {0, 1, 2}
    full = game(np.ones((1, num)))[0]

    def drop(features):
        mask = np.ones((1, num))
        mask[0, list(features)] = 0.0
        return full - game(mask)[0]

    random_drop = np.mean([drop(rng.choice(num, 3, replace=False)) for _ in range(50)])
    assert drop(top) > 2 * random_drop


# ---------------------------------------------------------------------------------- flagship
def test_lime_smoke_on_the_flagship(explain_ds, flagship, pair):
    result = explain(flagship, explain_ds, *pair, method="lime", num_samples=120, max_text=2,
                     encoder=private_encoder())
    assert METHODS["lime"] is lime_explanation
    assert result.method == "lime"
    user, item = explain_ds.user_idx(pair[0]), explain_ds.item_idx(pair[1])
    expected = float(flagship.score(user, item)[0, 0])
    assert result.score == pytest.approx(expected, abs=1e-5)
    frame = result.contributions
    assert len(frame) and set(frame["kind"]) <= set(KINDS)
    assert {"history_item", "attribute", "text"} <= set(frame["kind"])  # SHAP's feature kinds
    assert np.isfinite(frame["weight"]).all()
    fit = result.details["lime"]
    assert fit["num_samples"] == 120 and 0.0 < fit["r2"] <= 1.0
    assert result.base_value == fit["intercept"]
    assert 1 < result.details["evaluations"] <= 120
    # The same features as SHAP's, in the same order.
    shap = shap_explanation(flagship, explain_ds, *pair, max_text=2, npermutations=1,
                            encoder=private_encoder())
    assert list(result.details["features"]["label"]) == list(shap.details["features"]["label"])
    figure = shap_figure(result, "waterfall")  # the chart SHAP uses
    assert isinstance(figure, Figure)
    payload = result.to_dict(top=5)
    assert payload["method"] == "lime" and len(payload["contributions"]) == 5


def test_lime_is_deterministic_and_leaves_the_global_generators_alone(explain_ds, flagship, pair):
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.random.get_rng_state().clone()
    a = lime_explanation(flagship, explain_ds, *pair, max_text=0, num_samples=80, seed=5)
    b = lime_explanation(flagship, explain_ds, *pair, max_text=0, num_samples=80, seed=5)
    c = lime_explanation(flagship, explain_ds, *pair, max_text=0, num_samples=80, seed=6)
    np.testing.assert_array_equal(a.contributions["weight"], b.contributions["weight"])
    assert list(a.contributions["id"]) == list(b.contributions["id"])
    assert not np.array_equal(a.details["features"]["lime_weight"],
                              c.details["features"]["lime_weight"])
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_lime_faithfulness_beats_random_removals(explain_ds, flagship):
    users = [f"u{u:02d}" for u in range(8)]
    result = faithfulness(flagship, explain_ds, "lime", users, k=3, n_random=5,
                          explain_options={"max_text": 0, "num_samples": 100})
    assert result["method"] == "lime" and result["users"] >= 6
    assert result["mean_drop_top"] > result["mean_drop_random"]
    assert result["top_beats_random"] >= 0.75


# ---------------------------------------------------------------------------------- baselines
def test_lime_on_a_baseline_explains_history_items_and_mf_is_refused(explain_ds):
    ease = EASERecommender(reg_lambda=10.0).fit(explain_ds, explain_ds.interactions)
    result = explain(ease, explain_ds, "u00", "i12", method="lime", num_samples=60)
    assert set(result.contributions["kind"]) == {"history_item"}
    mf = MFRecommender(embedding_dim=4, epochs=1, device="cpu", show_progress=False)
    mf.fit(explain_ds, explain_ds.interactions)
    with pytest.raises(HistoryEditError):
        explain(mf, explain_ds, "u00", "i12", method="lime")


def test_lime_rejects_bad_settings(explain_ds, flagship, pair):
    with pytest.raises(ValueError, match="num_samples"):
        lime_explanation(flagship, explain_ds, *pair, num_samples=1)
    with pytest.raises(ValueError, match="kernel_width"):
        lime_explanation(flagship, explain_ds, *pair, kernel_width=0.0)




def test_cli_explain_with_lime(capsys, flagship_run_dir):
    code = main(["explain", "--run", str(flagship_run_dir), "--user", "u01", "--item", "i05",
                 "--method", "lime", "--samples", "60", "--top", "4", "--seed", "2"])
    out, _ = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)
    assert payload["method"] == "lime" and 0 < len(payload["contributions"]) <= 4
    assert {"score", "base_value", "rationale"} <= set(payload)
    again = main(["explain", "--run", str(flagship_run_dir), "--user", "u01", "--item", "i05",
                  "--method", "lime", "--samples", "60", "--top", "4", "--seed", "2"])
    assert again == 0 and json.loads(capsys.readouterr()[0]) == payload


@pytest.mark.parametrize("argv", [["--method", "lime", "--samples", "1"],
                                  ["--method", "shap", "--samples", "50"]])
def test_cli_samples_are_checked(capsys, flagship_run_dir, argv):
    code = main(["explain", "--run", str(flagship_run_dir), "--user", "u01", "--item", "i05",
                 *argv])
    _, err = capsys.readouterr()
    assert code == 2 and "--samples" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------- page
@pytest.fixture(scope="module")
def workspace():
    return tiny_workspace()


@pytest.mark.parametrize("run_id", ["gnn-llm #2", "ease #1"])
def test_explain_page_offers_lime(workspace, run_id):
    workspace.runs.active_id = run_id
    at = page_test("explain", workspace)
    at.session_state["x-view"] = "LIME"
    at.session_state["x-lime-samples"] = 50
    at.run()
    assert_clean(at)
    assert "LIME" in at.segmented_control(key="x-view").options
    assert at.slider(key="x-lime-samples").value == 50
    assert any("LIME weights" in c.value for c in at.caption)
    assert len(at.get("image")) == 1, "the waterfall is drawn (st.pyplot)"
    assert {"kind", "label", "weight"} <= set(at.dataframe[0].value.columns)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download lime contributions (CSV)" in labels


def test_explain_page_faithfulness_includes_lime(workspace):
    at = faithfulness_view(workspace, "ease #1", 2, ["lime"])
    assert list(at.dataframe[0].value["method"]) == ["lime"]
