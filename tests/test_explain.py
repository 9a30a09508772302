"""recsys_core.explain on the real flagship (GNNLLMRecommender, 2 epochs) over tiny data.

The tiny data has three topic clusters of users and items (genre attribute, 3-sentence
descriptions, a few user-user edges) plus a separate component (users x1, x2 and items z1, z2
with their own genre) that no edit of the main component can reach.
"""

from __future__ import annotations

import copy
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from recsys_core.dataset import Dataset, UnknownIdError  # noqa: E402
from recsys_core.explain import (  # noqa: E402
    KINDS,
    ExplainUnsupportedError,
    Explanation,
    HistoryEditError,
    attention_explanation,
    explain,
    faithfulness,
    gnn_explainer_explanation,
    history_scorer,
    rationale,
    shap_explanation,
    what_if,
)
from recsys_core.explain.engine import FlagshipEngine, flagship_engine  # noqa: E402
from recsys_core.explain.evidence import contribution_frame  # noqa: E402
from recsys_core.explain.plots import (  # noqa: E402
    contributions_figure,
    shap_figure,
)
from recsys_core.explain.removal import split_sentences, text_chunks  # noqa: E402
from recsys_core.graph import RATED_BY, RATES  # noqa: E402
from recsys_core.models.gnn_llm import GNNLLMModule, GNNLLMRecommender  # noqa: E402
from recsys_core.models.stages import Stage, StageProgram  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

TOPICS = {
    "Fantasy": ("a young mage", "an ancient dragon", "a stolen crown"),
    "Crime": ("a tired detective", "a missing witness", "a forged will"),
    "Space": ("a lonely pilot", "a signal from a dead star", "a failing colony ship"),
}


def explain_dataset() -> Dataset:
    """24 topic items + 2 isolated items, 18 topic users + 2 isolated users."""
    rng = np.random.default_rng(0)
    items, inter = [], []
    for t, (topic, words) in enumerate(TOPICS.items()):
        for k in range(8):
            genres = [topic] + (["Classic"] if k % 3 == 0 else [])
            items.append({"item_id": f"i{t}{k}", "title": f"{topic} Tale {k}",
                          "description": f"The story of {words[k % 3]}. It meets "
                                         f"{words[(k + 1) % 3]} on day {k}. The end "
                                         f"hints at {words[(k + 2) % 3]}.",
                          "genre": genres})
    items.append({"item_id": "z1", "title": "Lone Book", "description": "Nobody else reads "
                  "it. It stands apart.", "genre": ["Isolated"]})
    items.append({"item_id": "z2", "title": "Other Lone Book", "description": "Also apart.",
                  "genre": ["Isolated"]})
    for u in range(18):
        topic = u % 3
        picks = [f"i{topic}{k}" for k in rng.choice(8, size=6, replace=False)]
        picks.append(f"i{(topic + 1) % 3}{rng.integers(8)}")
        for n, item in enumerate(dict.fromkeys(picks)):
            inter.append({"user_id": f"u{u:02d}", "item_id": item, "rating": 4.0,
                          "timestamp": 1.6e9 + 3600.0 * (10 * u + n)})
    for user, item in (("x1", "z1"), ("x1", "z2"), ("x2", "z1")):
        inter.append({"user_id": user, "item_id": item, "rating": 5.0, "timestamp": 1.6e9})
    edges = pd.DataFrame({"src": ["u00", "u01", "u02", "u06"], "dst": ["u03", "u04", "u05", "u09"]})
    return Dataset(interactions=pd.DataFrame(inter), items=pd.DataFrame(items),
                   attribute_columns=["genre"], user_edges=edges, name="explain-tiny")


def private_encoder():
    """The bundled encoder without its on-disk cache (tests leave no files behind)."""
    from recsys_core.text import default_encoder

    encoder = copy.copy(default_encoder())
    encoder.use_cache = False
    return encoder


def fit_flagship(ds: Dataset, **options) -> GNNLLMRecommender:
    # Every relation stays in the graph (validation may switch a group off on data this
    # small): these tests are about the engine on all of them, not about the selection.
    options.setdefault("relation_selection", False)
    text = private_encoder().encode(ds.item_texts())
    model = GNNLLMRecommender(embedding_dim=16, heads=2, epochs=2, batch_size=64,
                              num_negatives=16, device="cpu", show_progress=False, seed=0,
                              item_text_embeddings=text, **options)
    return model.fit(ds, ds.interactions)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return explain_dataset()


@pytest.fixture(scope="module")
def model(ds) -> GNNLLMRecommender:
    return fit_flagship(ds)


@pytest.fixture(scope="module")
def pair(model) -> tuple[str, str]:
    """A main-component user and their top recommendation."""
    recs = model.recommend(["u00"], k=1)
    return "u00", str(recs["item_id"].iloc[0])


def history_ids(ds: Dataset, user_id: str) -> set[str]:
    inter = ds.interactions
    return set(inter.loc[inter["user_id"] == user_id, "item_id"])


def edited_graph(model, engine: FlagshipEngine, edit):
    data = model.graph()
    for et, ei in engine.edited_edges(edit).items():
        data[et].edge_index = ei
    return data


@pytest.fixture(scope="module")
def two_layer_model(ds) -> GNNLLMRecommender:
    return fit_flagship(ds, num_layers=2)


# ---------------------------------------------------------------------------------- engine
@pytest.mark.parametrize("layers", [1, 2])
def test_engine_matches_the_model_on_edited_graphs(ds, model, two_layer_model, layers):
    model = model if layers == 1 else two_layer_model
    assert model.num_layers == layers
    engine = flagship_engine(model)
    assert engine.exact_incremental, "the engine's mirror of GNNLLMModule.propagate drifted"
    user = int(ds.user_idx("u00")[0])
    history = engine.history(user)
    new_item = int(np.setdiff1d(np.arange(24), history)[0])
    assert_engine_scores_like_the_model(ds, model, engine, user, [
        engine.history_edit(user, drop=history[:3]),
        engine.history_edit(user, drop=history[:1], add=[new_item]),
        engine.attribute_edit(new_item, [("genre", 0)]).merge(engine.neighbour_edit(user, [3])),
    ])


def assert_engine_scores_like_the_model(ds, model, engine, user, edits):
    """The engine's scores for ``user`` equal the model's on the unedited graph, and its full
    forward pass on each edited graph (for the first 10 items and for all of them)."""
    items = np.arange(ds.num_items)
    np.testing.assert_allclose(engine.scores(user, items), model.score([user])[0], atol=1e-5)
    for edit in edits:
        expected = model.score_with_graph(edited_graph(model, engine, edit), [user], items)[0]
        np.testing.assert_allclose(engine.scores(user, items[:10], edit), expected[:10],
                                   atol=1e-5)
        np.testing.assert_allclose(engine.scores(user, None, edit), expected, atol=1e-5)


class ItemsFirstModule(GNNLLMModule):
    """The flagship's network with another stage program: per layer, items from every relation
    into them first (reading the freshest item states), then users from other types, then users
    from users (added to that), then attribute nodes."""

    def stage_program(self, edge_types):
        stages, layer_end = [], [0]
        for layer in range(1, self.num_layers + 1):
            steps = [("item", None), ("user", False), ("user", True)]
            steps += [(nt, None) for nt in sorted(self.node_counts)]
            updated = set()
            for dst, same_type in steps:
                relations = tuple(tuple(et) for et in edge_types if et[2] == dst and (
                    same_type is None or (et[0] == dst) == same_type))
                if not relations:
                    continue
                target = layer_end[-1] if same_type is False else len(stages)
                stages.append(Stage(layer, dst, relations, target,
                                    bool(same_type) and dst in updated))
                updated.add(dst)
            layer_end.append(len(stages))
        return StageProgram(stages, layer_end)


@pytest.mark.parametrize("layers", [1, 2])
def test_engine_follows_a_changed_stage_program(ds, model, two_layer_model, layers):
    """The engine runs the module's own program: a module with another stage order is
    explained exactly without any change to the engine."""
    original = model if layers == 1 else two_layer_model
    changed = copy.copy(original)
    changed.module = copy.deepcopy(original.module)
    changed.module.__class__ = ItemsFirstModule
    changed._finalize()  # the model's own embeddings under the new program
    user = int(ds.user_idx("u00")[0])
    assert not np.allclose(changed.score([user])[0], original.score([user])[0])
    engine = FlagshipEngine(changed)
    assert engine.exact_incremental
    assert engine.stages == changed.module.stage_program(list(engine.edges)).stages
    assert engine.stages[0].dst == "item" and any(s.accumulate for s in engine.stages)
    history = engine.history(user)
    new_item = int(np.setdiff1d(np.arange(24), history)[0])
    assert_engine_scores_like_the_model(ds, changed, engine, user, [
        engine.history_edit(user, drop=history[:2], add=[new_item]),
        engine.attribute_edit(new_item, [("genre", 0)]).merge(engine.neighbour_edit(user, [3])),
    ])
    item_id = str(changed.recommend(["u00"], k=1)["item_id"].iloc[0])
    result = attention_explanation(changed, ds, "u00", item_id)
    score = float(changed.score([user], ds.item_idx(item_id))[0, 0])
    assert result.base_value + result.contributions["weight"].sum() == pytest.approx(
        score, abs=1e-4)


def test_text_edit_matches_the_models_own_forward_pass(ds, model):
    engine = flagship_engine(model)
    user, item = int(ds.user_idx("u01")[0]), int(ds.item_idx("i12")[0])
    edit = engine.text_edit(item, engine.module.item_text[item] * 0.5)
    fast = engine.scores(user, [item, 3], edit)
    users, items = engine._module_pass(edit)
    graph_part = (items[[item, 3]] @ users[user]).numpy()
    np.testing.assert_allclose(fast, graph_part + engine.item_item_term(user, [item, 3], edit),
                               atol=1e-5)
    assert not np.isclose(fast[0], engine.scores(user, [item])[0])


def test_removing_an_edge_changes_only_what_it_reaches(ds, model):
    scorer = history_scorer(model)
    user = int(ds.user_idx("u00")[0])
    far = int(ds.user_idx("x1")[0])
    isolated = ds.item_idx(["z1", "z2"])
    engine = scorer.engine
    edit = engine.history_edit(user, drop=scorer.history(user)[:1])
    data = edited_graph(model, engine, edit)
    before = model.score([user, far])
    after = model.score_with_graph(data, [user, far])
    assert not np.allclose(before[0], after[0])  # the edited user's scores move
    np.testing.assert_array_equal(before[1, isolated], after[1, isolated])  # other component
    np.testing.assert_allclose(engine.scores(far, isolated, edit), before[1, isolated], atol=1e-6)
    assert len(model.train_matrix[user].indices) == len(scorer.history(user))  # model untouched


# ---------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("layers", [1, 2])
def test_attention_decomposes_the_score_exactly(ds, model, two_layer_model, pair, layers):
    model = model if layers == 1 else two_layer_model
    user_id, item_id = pair
    result = attention_explanation(model, ds, user_id, item_id)
    score = float(model.score(ds.user_idx(user_id), ds.item_idx(item_id))[0, 0])
    assert result.score == pytest.approx(score, abs=1e-5)
    total = result.base_value + result.contributions["weight"].sum()
    assert total == pytest.approx(score, abs=1e-4)
    frame = result.contributions
    assert set(frame["kind"]) <= set(KINDS)
    history = history_ids(ds, user_id)
    items = frame[frame["kind"] == "history_item"]
    assert len(items) and set(items["id"]) <= history
    titles = ds.items.set_index("item_id")["title"]
    assert all(titles[i] == label for i, label in zip(items["id"], items["label"], strict=True))
    assert (frame["kind"] == "attribute").any() and (frame["kind"] == "text").any()


def test_attention_weights_sum_to_one_per_target_and_head(ds, model, pair):
    edges = attention_explanation(model, ds, *pair).details["edges"]
    assert {"layer", "relation", "head", "alpha", "source_id", "target_id"} <= set(edges.columns)
    sums = edges.groupby(["layer", "relation", "target_type", "target_index", "head"])["alpha"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)
    assert edges["head"].nunique() == 2
    # The raw weights are the model's own attention weights.
    own = model.attention(int(ds.user_idx(pair[0])[0]))
    user = int(ds.user_idx(pair[0])[0])
    last = model.num_layers - 1
    ei, alpha = own[(last, RATED_BY)]
    mine = edges[(edges.layer == last) & (edges.relation == "__".join(RATED_BY))
                 & (edges.target_type == "user")]
    theirs = alpha[ei[1] == user].numpy()
    np.testing.assert_allclose(np.sort(mine["alpha"].to_numpy()), np.sort(theirs.reshape(-1)),
                               atol=1e-5)


def test_attention_and_gnnexplainer_need_the_flagship(ds):
    from recsys_core.models.ease import EASERecommender

    ease = EASERecommender(reg_lambda=10.0).fit(ds, ds.interactions)
    with pytest.raises(ExplainUnsupportedError, match="gnn-llm"):
        explain(ease, ds, "u00", "i00", method="attention")
    with pytest.raises(ExplainUnsupportedError, match="gnn-llm"):
        explain(ease, ds, "u00", "i00", method="gnnexplainer")


def test_unknown_ids_raise_unknown_id_error(ds, model):
    with pytest.raises(UnknownIdError, match="nobody"):
        explain(model, ds, "nobody", "i00")
    with pytest.raises(UnknownIdError, match="nothing"):
        explain(model, ds, "u00", "nothing", method="shap")


# ---------------------------------------------------------------------------------- SHAP
def test_shap_values_add_up_to_score_minus_base(ds, model, pair):
    result = shap_explanation(model, ds, *pair, npermutations=2)
    score = float(model.score(ds.user_idx(pair[0]), ds.item_idx(pair[1]))[0, 0])
    assert result.score == pytest.approx(score, abs=1e-5)
    total = result.contributions["weight"].sum() + sum(o["weight"] for o in result.other or [])
    assert total == pytest.approx(result.score - result.base_value, abs=1e-5)
    kinds = set(result.contributions["kind"])
    assert {"history_item", "attribute", "text"} <= kinds
    assert kinds <= set(KINDS)
    history = result.contributions[result.contributions["kind"] == "history_item"]
    assert set(history["id"]) <= history_ids(ds, pair[0])
    # The base value is the score with every feature removed: no history, no attribute edge,
    # an empty description.
    assert result.details["evaluations"] > 0
    assert result.details["shap"].values.shape == (len(result.details["features"]),)


def test_shap_groups_history_beyond_the_cap_and_stays_additive(ds, model, pair):
    result = shap_explanation(model, ds, *pair, max_history=2, max_text=1, npermutations=2)
    singles = result.contributions[result.contributions["kind"] == "history_item"]
    assert len(singles) == 2
    groups = [o for o in result.other if o["kind"] == "history_item"]
    assert len(groups) == 1
    assert len(groups[0]["ids"]) == len(history_ids(ds, pair[0])) - 2
    total = result.contributions["weight"].sum() + sum(o["weight"] for o in result.other)
    assert total == pytest.approx(result.score - result.base_value, abs=1e-5)
    assert (result.contributions["kind"] == "text").sum() == 1
    payload = result.to_dict()
    assert payload["other"][0]["count"] == len(groups[0]["ids"])
    assert sum(r["weight"] for r in payload["contributions"]) + sum(
        g["weight"] for g in payload["other"]) == pytest.approx(total, abs=1e-5)


def test_shap_is_deterministic_for_a_seed(ds, model, pair):
    a = shap_explanation(model, ds, *pair, max_history=4, npermutations=1, seed=3).contributions
    b = shap_explanation(model, ds, *pair, max_history=4, npermutations=1, seed=3).contributions
    pd.testing.assert_frame_equal(a, b)


def test_shap_on_baselines_explains_history_items(ds):
    from recsys_core.models.ease import EASERecommender
    from recsys_core.models.mf import MFRecommender

    ease = EASERecommender(reg_lambda=10.0).fit(ds, ds.interactions)
    scorer = history_scorer(ease)
    np.testing.assert_allclose(scorer.scores(0), ease.score([0])[0], atol=1e-5)
    result = explain(ease, ds, "u00", "i12", method="shap")
    assert set(result.contributions["kind"]) == {"history_item"}
    total = result.contributions["weight"].sum() + sum(o["weight"] for o in result.other or [])
    assert total == pytest.approx(result.score - result.base_value, abs=1e-5)
    mf = MFRecommender(embedding_dim=4, epochs=1, device="cpu", show_progress=False)
    mf.fit(ds, ds.interactions)
    with pytest.raises(HistoryEditError, match="retraining"):
        explain(mf, ds, "u00", "i12", method="shap")


def test_history_edits_of_text_knn_and_lightgcn(ds, model):
    from recsys_core.models.lightgcn import LightGCNRecommender
    from recsys_core.models.text_knn import TextKNNRecommender

    knn = TextKNNRecommender(item_text_embeddings=model.module.item_text).fit(ds, ds.interactions)
    gcn = LightGCNRecommender(embedding_dim=8, num_layers=2, epochs=1, device="cpu",
                              show_progress=False).fit(ds, ds.interactions)
    user = int(ds.user_idx("u04")[0])
    history = history_ids(ds, "u04")
    for baseline in (knn, gcn):
        scorer = history_scorer(baseline)
        np.testing.assert_allclose(scorer.scores(user), baseline.score([user])[0], atol=1e-5)
        edited = scorer.scores(user, drop=ds.item_idx(sorted(history)[:3]), add=ds.item_idx(["z1"]))
        assert not np.allclose(edited, baseline.score([user])[0])
    # text-kNN's edited score is the cosine with the mean embedding of the edited history.
    kept = sorted(set(ds.item_idx(sorted(history)[3:]).tolist()) | {int(ds.item_idx("z1")[0])})
    emb = knn.item_embeddings.numpy()
    profile = emb[kept].mean(0)
    expected = emb @ (profile / np.linalg.norm(profile))
    np.testing.assert_allclose(history_scorer(knn).scores(
        user, drop=ds.item_idx(sorted(history)[:3]), add=ds.item_idx(["z1"])), expected, atol=1e-5)


def test_sentences_and_chunks():
    text = "One. Two! Three? Four five."
    assert split_sentences(text) == ["One.", "Two!", "Three?", "Four five."]
    assert text_chunks(split_sentences(text), 2) == ["One. Two!", "Three? Four five."]
    assert split_sentences("  ") == []


# ---------------------------------------------------------------------------------- GNNExplainer
def test_gnnexplainer_maps_edge_masks_to_evidence(ds, model, pair):
    result = gnn_explainer_explanation(model, ds, *pair, epochs=10)
    frame = result.contributions
    assert len(frame) and set(frame["kind"]) <= set(KINDS)
    assert frame["weight"].abs().between(0.0, 1.0).all()
    assert set(frame.loc[frame["kind"] == "history_item", "id"]) <= history_ids(ds, pair[0])
    masks = result.details["edge_masks"]
    assert RATES in masks and RATED_BY in masks
    again = gnn_explainer_explanation(model, ds, *pair, epochs=10)
    pd.testing.assert_frame_equal(frame, again.contributions)


# ---------------------------------------------------------------------------------- what-if
def test_what_if_reports_entering_and_leaving_items(ds, model):
    history = sorted(history_ids(ds, "u03"))
    result = what_if(model, ds, "u03", drop=history[:-1], add=["i27"], k=5,
                     items=[history[0], "i20"])
    assert result.dropped == history[:-1] and result.added == ["i27"]
    before, after = list(result.top_before["item_id"]), list(result.top_after["item_id"])
    assert result.entered == [i for i in after if i not in before]
    assert result.left == [i for i in before if i not in after]
    assert "i27" not in after and history[-1] not in after
    assert not set(before) & set(history)
    scores = result.scores.set_index("item_id")
    real = model.score(ds.user_idx("u03"), ds.item_idx([history[0], "i20"]))[0]
    np.testing.assert_allclose(scores["score_before"].to_numpy(), real, atol=1e-5)
    # The edit really changes this user's scores, and the after-scores are the model's own
    # forward pass on the edited graph.
    scorer = history_scorer(model)
    user = int(ds.user_idx("u03")[0])
    edit = scorer.engine.history_edit(user, drop=ds.item_idx(history[:-1]), add=ds.item_idx(["i27"]))
    expected = model.score_with_graph(edited_graph(model, scorer.engine, edit), [user],
                                      ds.item_idx([history[0], "i20"]))[0]
    np.testing.assert_allclose(scores["score_after"].to_numpy(), expected, atol=1e-5)
    assert not np.allclose(scores["score_after"], scores["score_before"])


def test_what_if_ignores_edits_that_change_nothing(ds, model):
    result = what_if(model, ds, "u03", drop=["z1"], add=[sorted(history_ids(ds, "u03"))[0]])
    assert result.dropped == [] and result.added == []
    assert result.entered == [] and result.left == []


# ---------------------------------------------------------------------------------- rationale
def test_rationale_mentions_only_positive_grounded_evidence(ds):
    liked = sorted(history_ids(ds, "u00"))
    item = "i00"
    inter = ds.interactions
    rater = sorted(set(inter.loc[inter["item_id"] == item, "user_id"]) - {"u00", "u03"})[0]
    frame = contribution_frame([
        {"kind": "history_item", "id": liked[0], "label": "Alpha Book", "weight": 0.9,
         "node_type": "item", "index": 0},
        {"kind": "history_item", "id": liked[1], "label": "Beta Book", "weight": -0.5,
         "node_type": "item", "index": 1},
        {"kind": "history_item", "id": "i27", "label": "Not Read Book", "weight": 0.8,
         "node_type": "item", "index": 2},
        {"kind": "attribute", "id": "genre:Fantasy", "label": "genre: Fantasy", "weight": 0.4,
         "node_type": "genre", "index": 0},
        {"kind": "attribute", "id": "genre:Isolated", "label": "genre: Isolated", "weight": 0.4,
         "node_type": "genre", "index": 5},
        {"kind": "text", "id": "sentence:0", "label": "The story of a young mage.",
         "weight": -0.3, "node_type": "text", "index": -1},
        {"kind": "neighbour", "id": rater, "label": f"user {rater}", "weight": 0.2,
         "node_type": "user", "index": 3},
        {"kind": "neighbour", "id": "u03", "label": "user u03", "weight": 0.2,
         "node_type": "user", "index": 3},
        {"kind": "neighbour", "id": "x1", "label": "user x1", "weight": 0.2,
         "node_type": "user", "index": 19},
    ])
    result = Explanation("shap", "u00", item, 1.0, 0.0, frame)
    text = rationale(result, ds)
    assert "Alpha Book" in text and "Fantasy" in text
    assert f"user {rater} also rated it" in text and "connected to u03" in text
    for absent in ("Beta Book", "Not Read Book", "Isolated", "young mage", "x1"):
        assert absent not in text
    empty = Explanation("shap", "u00", item, 1.0, 0.0, frame.assign(weight=-1.0))
    assert "No single piece of evidence" in rationale(empty, ds)


def test_rationale_words_history_by_the_rating_scale(ds):
    inter = ds.interactions.copy()
    history = sorted(history_ids(ds, "u00"))
    rows = inter["user_id"] == "u00"
    inter.loc[rows & (inter["item_id"] == history[0]), "rating"] = 1.0
    inter.loc[rows & (inter["item_id"] == history[1]), "rating"] = 5.0
    rated = ds.subset_interactions(inter)
    frame = contribution_frame([
        {"kind": "history_item", "id": history[0], "label": "One Star Book", "weight": 0.9,
         "node_type": "item", "index": 0},
        {"kind": "history_item", "id": history[1], "label": "Five Star Book", "weight": 0.8,
         "node_type": "item", "index": 1},
    ])
    text = rationale(Explanation("shap", "u00", "i00", 1.0, 0.0, frame), rated)
    assert 'you liked "Five Star Book"' in text and 'you rated "One Star Book" low' in text
    assert "liked \"One Star Book\"" not in text
    implicit = ds.subset_interactions(inter.assign(rating=1.0))
    text = rationale(Explanation("shap", "u00", "i00", 1.0, 0.0, frame), implicit)
    assert 'you interacted with "One Star Book" and "Five Star Book"' in text
    assert "liked" not in text


def test_rationale_names_the_items_text_without_quoting_a_label(ds):
    whole = contribution_frame([{"kind": "text", "id": "item_text",
                                 "label": 'text of "Fantasy Tale 0"', "weight": 0.9,
                                 "node_type": "item", "index": 0}])
    text = rationale(Explanation("attention", "u00", "i00", 1.0, None, whole), ds)
    assert "its own text (title, description and attributes)" in text
    assert "description says" not in text and "text of" not in text
    sentence = whole.assign(id="sentence:0", label="The story of a young mage.")
    text = rationale(Explanation("shap", "u00", "i00", 1.0, 0.0, sentence), ds)
    assert 'its description says "The story of a young mage."' in text


def test_rationale_of_a_real_explanation_quotes_only_positive_history(ds, model, pair):
    result = shap_explanation(model, ds, *pair, max_history=4, npermutations=1)
    text = rationale(result, ds)
    frame = result.contributions
    positive = set(frame.loc[(frame["weight"] > 0) & (frame["kind"] == "history_item"), "label"])
    descriptions = set(frame.loc[frame["kind"] == "text", "label"])
    for quoted in re.findall(r'"([^"]+)"', text):
        assert quoted in positive or any(quoted.rstrip("\u2026") in d for d in descriptions)
    assert text.startswith("Recommended because") or text.startswith("No single")


# ---------------------------------------------------------------------------------- faithfulness
def test_faithfulness_reports_top_and_random_drops(ds, model):
    result = faithfulness(model, ds, "attention", ["u00", "u01", "x2"], k=2,
                          n_random=2, curves=True)
    assert result["users"] == 2 and result["skipped"] == 1  # x2 has a single interaction
    per_user = result["per_user"]
    assert list(per_user["user_id"]) == ["u00", "u01"]
    assert np.isfinite(per_user[["score", "drop_top", "drop_random"]].to_numpy()).all()
    if result["mean_drop_random"] > 0:
        assert result["ratio"] == pytest.approx(result["mean_drop_top"] / result["mean_drop_random"])
    else:  # random removals did not lower the score on average
        assert np.isinf(result["ratio"]) or np.isnan(result["ratio"])
    assert 0.0 <= result["top_beats_random"] <= 1.0
    assert list(result["deletion"]["k"]) == [1, 2] and list(result["insertion"]["k"]) == [1, 2]


def test_greedy_deletion_is_the_best_single_removal_first_and_bounds_the_top_drop(ds, model):
    from recsys_core.explain import greedy_deletion
    from recsys_core.explain.history import history_scorer

    users = ["u00", "u01", "x2"]
    greedy = greedy_deletion(model, ds, users, k=2)
    assert greedy["users"] == 2 and list(greedy["per_user"]["user_id"]) == ["u00", "u01"]
    scorer = history_scorer(model)
    row = greedy["per_user"].iloc[0]
    user, item = int(ds.user_idx("u00")[0]), int(ds.item_idx(row["item_id"])[0])
    history = scorer.history(user)
    singles = [float(scorer.scores(user, [item], drop=np.asarray([j]))[0]) for j in history]
    # the first greedy step is the best single removal, so two steps drop at least that much
    assert row["drop_greedy"] >= row["score"] - min(singles) - 1e-6
    top = faithfulness(model, ds, "attention", users, k=2, n_random=2)
    # the attention ranking removes no more than what the model's own search finds (small slack:
    # greedy is exact only for additive scores)
    assert top["mean_drop_top"] <= greedy["mean_drop_greedy"] * 1.05 + 1e-6
    assert greedy["mean_drop_greedy"] == pytest.approx(greedy["per_user"]["drop_greedy"].mean())


def test_faithfulness_with_every_user_skipped_returns_empty_curves(ds, model):
    result = faithfulness(model, ds, "attention", ["x2"], k=2, n_random=2, curves=True)
    assert result["users"] == 0 and result["skipped"] == 1
    assert np.isnan(result["ratio"])
    assert result["deletion"].empty and list(result["deletion"].columns) == ["k", "top", "random"]
    assert result["insertion"].empty


# ---------------------------------------------------------------------------------- plots
def test_plots_return_figures(ds, model, pair):
    result = shap_explanation(model, ds, *pair, max_history=3, max_text=1, npermutations=1)
    for figure in (shap_figure(result, "waterfall"), shap_figure(result, "bar"),
                   contributions_figure(attention_explanation(model, ds, *pair))):
        assert isinstance(figure, Figure) and figure.axes
    with pytest.raises(ValueError, match="no SHAP values"):
        shap_figure(attention_explanation(model, ds, *pair))
    with pytest.raises(ValueError, match="plot must be one of"):
        shap_figure(result, "beeswarm")


def test_to_dict_is_the_cli_schema(ds, model, pair):
    result = attention_explanation(model, ds, *pair)
    payload = result.to_dict(top=3, rationale="because")
    assert {"score", "base_value", "contributions", "rationale"} <= set(payload)
    assert len(payload["contributions"]) == 3
    for row in payload["contributions"]:
        assert set(row) == {"kind", "id", "label", "weight"} and row["kind"] in KINDS
