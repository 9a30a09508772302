"""The Graph and Embeddings pages sample data over their limits and say so (AppTest)."""

from __future__ import annotations

import pytest
from test_app_pages import all_text, assert_clean, page_test, tiny_workspace

from recsys_core.graph import RATES
from recsys_core.views import embeddings as embedding_views
from recsys_core.views import graph as graph_views

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py


@pytest.fixture
def workspace():
    return tiny_workspace(models=("ease",))


def test_graph_page_samples_interactions_over_the_limit(workspace, monkeypatch):
    total = len(workspace.dataset.interactions)
    at = page_test("graph", workspace).run()
    assert_clean(at)
    assert "Sampled" not in all_text(at)
    monkeypatch.setattr(graph_views, "GRAPH_VIEW_MAX_INTERACTIONS", 40)
    workspace.cache.pop("graph_view_data", None)
    workspace.cache.pop("graph_view", None)
    at = page_test("graph", workspace).run()
    assert_clean(at)
    text = all_text(at)
    assert f"Sampled: this data set has {total:,} interactions" in text
    view, _ = workspace.cache["graph_view_data"]
    assert view[RATES].num_edges == 40 == view["item", "rated_by", "user"].num_edges
    assert workspace.graph()[RATES].num_edges == total  # the statistics keep every edge
    assert len(at.get("iframe")) == 1


def test_embeddings_page_samples_points_over_the_limit(workspace, monkeypatch):
    at = page_test("embeddings", workspace).run()
    assert_clean(at)
    assert "Sampled" not in all_text(at)
    monkeypatch.setattr(embedding_views, "MAP_MAX_ITEMS", 12)
    monkeypatch.setattr(embedding_views, "MAP_MAX_USERS", 7)
    for key in [k for k in workspace.cache if isinstance(k, tuple)]:
        workspace.cache.pop(key)
    at = page_test("embeddings", workspace).run()
    assert_clean(at)
    num_items = workspace.dataset.num_items
    assert f"Sampled: the map draws 12 of {num_items:,} items and 7 of" in all_text(at)
    points = next(v for k, v in workspace.cache.items() if isinstance(k, tuple))
    assert (points["kind"] == "item").sum() == 12 and (points["kind"] == "user").sum() == 7
