"""View models the pages draw (recsys_core.views) and the cold-start text, on tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_core.dataset import Dataset
from recsys_core.explain.gnn_explainer import DEFAULT_EPOCHS, gnn_explainer_explanation
from recsys_core.models.ease import EASERecommender
from recsys_core.services.cold_start import cold_start_text
from recsys_core.services.workspace import prepare_workspace
from recsys_core.views.embeddings import central_items, embedding_map, listed_items
from recsys_core.views.explain import faithfulness_users, score_and_rank, what_if_ranks
from recsys_core.views.metrics import POPULARITY_BIAS_CAPTION, headline, metrics_table


def two_topic_dataset() -> Dataset:
    """12 users, 16 items in two topics (users read their own topic), two attribute columns."""
    rows = [(f"u{u}", f"i{(u % 2) * 8 + j}", 4.0, 1e9 + 10 * u + j)
            for u in range(12) for j in range(u % 3, u % 3 + 5)]
    items = pd.DataFrame({
        "item_id": [f"i{j}" for j in range(16)],
        "title": [f"Book {j}" for j in range(16)],
        "description": [f"About topic {j // 8}." for j in range(16)],
        "genre": [["Fantasy" if j < 8 else "Crime"] for j in range(16)],
        "tags": [["short", "classic"] if j % 2 else [] for j in range(16)],
    })
    return Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]),
                   items, ["genre", "tags"])


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return two_topic_dataset()


# ---------------------------------------------------------------------------------- cold start
def test_a_new_items_text_is_built_like_a_catalogue_items(ds):
    catalogue = ds.item_texts()
    for j in (0, 1):
        row = ds.items.iloc[j]
        text = ds.new_item_text(row["title"], row["description"],
                                {"genre": row["genre"], "tags": row["tags"], "unknown": ["x"]})
        assert text == catalogue[j]
    assert catalogue[1] == "Book 1. About topic 0. Genre: Fantasy. Tags: short, classic."
    ws = prepare_workspace(ds, source="tests")
    assert cold_start_text(ws, "New", "Fresh.", {"tags": ["classic"]}) == \
        "New. Fresh. Tags: classic."


# ---------------------------------------------------------------------------------- embeddings
def test_the_map_shows_item_neighbourhoods_not_the_gap_between_types(ds):
    rng = np.random.default_rng(0)
    topic = np.repeat([[3.0, 0.0], [-3.0, 0.0]], 8, axis=0)
    items = np.hstack([topic, rng.normal(scale=0.1, size=(16, 6))])
    points = embedding_map(items, ds, ds.interactions, "genre")
    assert list(points.columns) == ["x", "y", "kind", "key", "label", "color"]
    item_pts, user_pts = points[points["kind"] == "item"], points[points["kind"] == "user"]
    assert len(item_pts) == 16 and len(user_pts) == 12
    # Items split by topic along the first component; each user sits on their topic's side.
    fantasy = item_pts[item_pts["color"] == "Fantasy"]["x"]
    crime = item_pts[item_pts["color"] == "Crime"]["x"]
    assert (fantasy.min() > crime.max()) or (crime.min() > fantasy.max())
    side = np.sign(fantasy.mean())
    for _, user in user_pts.iterrows():
        assert np.sign(user["x"]) == (side if user["color"] == "Fantasy" else -side)
    # Users lie inside the items' range, not in a blob of their own.
    assert item_pts["x"].min() <= user_pts["x"].min() and user_pts["x"].max() <= item_pts["x"].max()


def test_central_items_and_listed_items(ds):
    points = embedding_map(np.eye(16), ds, ds.interactions, "genre")
    central = central_items(points, n=3)
    assert len(central) == 3 and set(central["kind"]) == {"item"}
    table = listed_items(ds, np.arange(16), points[points["key"].isin(["item:1", "user:0"])])
    assert table.to_dict("records") == [{"item_id": "i1", "title": "Book 1", "genre": "Fantasy",
                                         "tags": "short, classic", "interactions": 1}]


# ---------------------------------------------------------------------------------- explain
def test_score_rank_and_what_if_ranks(ds):
    model = EASERecommender().fit(ds, ds.interactions)
    scores = model.score(ds.user_idx(["u0"]), None)[0]
    seen = set(model.train_matrix[int(ds.user_idx("u0")[0])].indices)
    unseen = [i for i in np.argsort(-scores, kind="stable") if i not in seen]
    best = str(ds.item_ids[unseen[0]])
    assert score_and_rank(model, ds, "u0", best) == (pytest.approx(scores[unseen[0]]), 1)
    history_item = str(ds.item_ids[sorted(seen)[0]])
    assert score_and_rank(model, ds, "u0", history_item)[1] is None
    before, after = what_if_ranks(model, "u0", best)
    assert before == after == 1
    dropped = [str(ds.item_ids[i]) for i in sorted(seen)]
    before, after = what_if_ranks(model, "u0", best, dropped)
    assert before == 1 and after >= 1


def test_faithfulness_users_puts_the_user_first_and_is_seeded(ds):
    users = faithfulness_users(ds.interactions, "u3", n=4, k=2)
    assert users[0] == "u3" and len(users) == 4 and len(set(users)) == 4
    assert users == faithfulness_users(ds.interactions, "u3", n=4, k=2)
    assert faithfulness_users(ds.interactions, "u3", n=4, k=10) == []


def test_the_gnnexplainer_default_is_the_published_constant():
    import inspect

    default = inspect.signature(gnn_explainer_explanation).parameters["epochs"].default
    assert default == DEFAULT_EPOCHS == 50


# ---------------------------------------------------------------------------------- metrics
def test_headline_metrics_keep_warm_and_cold_items_apart():
    metrics = {
        "summary": {"recall": 0.1, "catalog_coverage": 0.5, "popularity_bias": 0.7,
                    "n_users": 3},
        "warm_items": {"recall": 0.3, "ndcg": 0.2}, "cold_items": {"recall": 0.05, "ndcg": 0.04},
        "long_tail": {"recall": 0.01},
    }
    table = metrics_table({"m #1": (1.234, metrics)}, 20)
    row = table.iloc[0]
    assert row["warm recall@20"] == 0.3 and row["cold recall@20"] == 0.05
    assert row["popularity percentile"] == 0.7 and row["train seconds"] == 1.23
    assert "recall@20" not in table.columns  # no mixed warm + cold headline
    assert headline(metrics, 20) == "warm recall@20 0.300 · cold recall@20 0.050"
    assert headline(None, 20) == ""
    assert "percentile" in POPULARITY_BIAS_CAPTION and "more popular" not in POPULARITY_BIAS_CAPTION
