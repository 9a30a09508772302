"""Figures and graph HTML of recsys_core.viz, and the escaping helpers they rely on."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from graph_page import graph_node_data

from recsys_core import viz
from recsys_core.dataset import Dataset
from recsys_core.graph import build_hetero_graph, k_hop_networkx
from recsys_core.html_safety import escape_html, escape_markdown, graph_label, graph_title
from recsys_core.views.embeddings import pca_2d
from recsys_core.views.graph import (
    EDGE_COLUMNS,
    edge_mask_frame,
    explanation_subgraph,
    labelled_graph_html,
)

EVIL_TITLE = '<img src=x onerror=alert(1)> <a href="javascript:alert(2)">click</a> & co'
EVIL_CATEGORY = "<script>alert(3)</script>"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "<b>i3</b>", "i4"],
            "title": [EVIL_TITLE, "Plain", '=HYPERLINK("http://x")', "Cold one"],
            "description": ["", "", "", ""],
            "genre": [["Drama"], [EVIL_CATEGORY], ["Drama", "href"], ["Comedy"]],
        }
    )
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3", "<u4>"],
            "item_id": ["i1", "i2", "<b>i3</b>", "i1", "i2"],
            "rating": [5.0, 3.0, 4.0, 1.0, 2.0],
            "timestamp": [1.6e9, 1.6e9 + 86400, 1.6e9 + 40 * 86400, np.nan, 1.6e9 + 90 * 86400],
        }
    )
    edges = pd.DataFrame({"src": ["u1"], "dst": ["u2"]})
    return Dataset(inter, items, ["genre"], user_edges=edges)


@pytest.fixture(scope="module")
def page(dataset) -> str:
    data = build_hetero_graph(dataset)
    graph = k_hop_networkx(data, "user", 0, num_hops=3, max_nodes=50)
    page, _ = labelled_graph_html(graph, dataset, center="user:0",
                                  edge_scores={("user:0", "item:0"): 0.75})
    return page


# ---------------------------------------------------------------------------------- graph html
def test_graph_html_is_offline(page):
    # vis-network is inlined, and no tag loads anything over the network.
    assert "vis.Network" in page and "new vis.DataSet" in page
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page, flags=re.IGNORECASE)
    assert tags, "expected inline script tags"
    for tag in tags:
        assert not re.search(r"(src|href)\s*=", tag, flags=re.IGNORECASE), tag
    assert "cdn" not in " ".join(tags).lower()
    assert "node_modules" not in page


def test_graph_html_escapes_every_label_and_title(page):
    nodes, edges = graph_node_data(page)
    assert nodes and edges
    for entry in nodes + edges:  # tooltips become DOM text, so they are escaped
        assert "<" not in entry.get("title", ""), entry
    titles = " ".join(n["title"] for n in nodes)
    assert "&lt;img src=x onerror=alert(1)&gt;" in titles
    assert "&lt;script&gt;" in titles
    # Labels are drawn on the canvas as plain text (no markup mode), shown as typed.
    labels = [n["label"] for n in nodes]
    assert any("<img" in label for label in labels)
    assert '"multi": false' in page
    # Raw markup never appears anywhere in the page outside vis-network's own code.
    assert "onerror=alert(1)>" not in page
    assert "<script>alert(3)" not in page


def test_graph_html_never_uses_raw_html_tooltips(page):
    # pyvis' link template (popup.innerHTML) is selected when a title contains "href".
    assert "popup.innerHTML" not in page
    nodes, _ = graph_node_data(page)
    assert not any("href" in n["title"] for n in nodes)
    # Our script turns escaped titles into text-only DOM nodes.
    assert "textContent" in page and "recscopeGraphReady" in page


def test_graph_html_colours_legend_and_highlight(page, dataset):
    nodes, edges = graph_node_data(page)
    centre = next(n for n in nodes if n["id"] == "user:0")
    assert centre["color"] == viz.CENTER_COLOR and centre["shape"] == "star"
    items = [n for n in nodes if n["id"].startswith("item:")]
    assert items and all(n["color"] == viz.NODE_COLORS["item"] for n in items)
    genre = [n for n in nodes if n["id"].startswith("genre:")]
    assert genre and all(n["shape"] == "diamond" for n in genre)
    highlighted = [e for e in edges if e["color"] == viz.HIGHLIGHT_EDGE_COLOR]
    assert len(highlighted) == 1 and "importance 0.750" in highlighted[0]["title"]
    assert 'class="rs-legend"' in page and ">genre</span>" in page


def test_graph_html_edge_width_follows_rating(dataset):
    data = build_hetero_graph(dataset)
    graph = k_hop_networkx(data, "user", 0, num_hops=1)
    _, edges = graph_node_data(viz.graph_html(graph))
    widths = {e["to"]: e["width"] for e in edges}
    assert widths["item:0"] > widths["item:1"]  # rating 5 vs 3


def test_graph_html_without_physics_and_empty_graph():
    import networkx as nx

    page = viz.graph_html(nx.DiGraph(), physics=False)
    nodes, edges = graph_node_data(page)
    assert nodes == [] and edges == []
    assert '"enabled": false' in page


# ---------------------------------------------------------------------------------- escaping
@pytest.mark.parametrize(
    "text",
    [
        "[click](javascript:alert(1))",
        "![x](http://evil/x.png)",
        "<b>bold</b>",
        ":red[alert]",
        "$x^2$",
        "**strong** _em_ `code`",
        "# heading",
        "a & b",
    ],
)
def test_escape_markdown_neutralises_syntax(text):
    out = escape_markdown(text)
    assert "<" not in out and ">" not in out
    for ch in "[]()*_`#$:":
        assert ch not in out.replace("\\" + ch, "")


def test_escape_helpers():
    assert escape_html('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert graph_label("a<b&c (x[") == "a<b&c (x["  # the canvas draws text, never markup
    assert graph_label("two\nlines") == "two lines"
    assert "href" not in graph_title("an href here") and "hre" in graph_title("an href here")
    assert escape_markdown("x" * 50, max_length=10).endswith("…")
    assert escape_html("a\x00b\x1fc") == "abc"


# ---------------------------------------------------------------------------------- plots
def test_degree_histogram_log_axes_and_zero_count():
    counts = np.array([0, 1, 1, 2, 5, 9, 40, 300])
    fig = viz.degree_histogram_fig(counts, "user")
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert sum(fig.data[0].y) == 7  # the zero is reported in the title, not plotted
    assert "1 with none" in fig.layout.title.text


def test_data_figures(dataset):
    assert isinstance(viz.rating_histogram_fig(dataset), go.Figure)
    activity = viz.activity_over_time_fig(dataset)
    assert len(activity.data) == 2 and "without timestamp" in activity.layout.title.text
    no_time = dataset.subset_interactions(dataset.interactions.assign(timestamp=np.nan))
    empty = viz.activity_over_time_fig(no_time)
    assert not empty.data and "No timestamps" in empty.layout.annotations[0].text
    attr = viz.attribute_counts_fig(dataset, "genre")
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in list(attr.data[0].y)


def test_training_and_metric_figures():
    history = [
        {"epoch": 1, "loss": 0.9, "valid_ndcg": 0.1},
        {"epoch": 2, "loss": 0.7, "valid_ndcg": None},
        {"epoch": 3, "loss": 0.6, "valid_ndcg": 0.2},
        {"stage": "encode", "fraction": 1},
    ]
    fig = viz.training_curves_fig(history)
    assert [len(t.x) for t in fig.data] == [3, 2]
    assert viz.training_curves_fig([]).layout.annotations[-1].text.startswith("waiting")
    compare = viz.compare_curves_fig({"a": history, "b": history[:1]})
    assert len(compare.data) == 4
    refit = history + [{"epoch": 1, "loss": 0.8, "valid_ndcg": None, "stage": "refit"},
                       {"epoch": 2, "loss": 0.65, "valid_ndcg": None, "stage": "refit"}]
    fig = viz.training_curves_fig(refit)
    assert [t.name for t in fig.data] == ["loss", "loss, refit on all data", "ndcg"]
    assert [len(t.x) for t in fig.data] == [3, 2, 2]
    assert [len(t.x) for t in viz.compare_curves_fig({"a": refit}).data] == [3, 2]
    frame = pd.DataFrame(
        {
            "model": ["m1"] * 4 + ["<m2>"] * 4,
            "k": [5, 10] * 4,
            "metric": (["recall"] * 2 + ["ndcg"] * 2) * 2,
            "value": np.linspace(0.1, 0.8, 8),
        }
    )
    at_k = viz.metrics_at_k_fig(frame)
    assert len(at_k.data) == 4 and {t.name for t in at_k.data} == {"m1", "&lt;m2&gt;"}
    bars = viz.metric_bars_fig(pd.DataFrame({"model": ["a", "b"], "x": [0.1, None]}), ["x"], "t")
    assert len(bars.data) == 2
    hist = viz.per_user_histogram_fig({"a": np.random.default_rng(0).random(50)}, "ndcg")
    assert hist.data[0].type == "histogram"


def test_pca_2d_is_deterministic_and_centred():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)) * np.array([5, 2, 1, 1, 1, 1, 1, 1])
    a, b = pca_2d(x), pca_2d(x.copy())
    assert a.shape == (200, 2) and np.allclose(a, b)
    assert np.allclose(a.mean(axis=0), 0, atol=1e-9)
    assert a[:, 0].var() > a[:, 1].var()
    assert abs(np.corrcoef(a[:, 0], a[:, 1])[0, 1]) < 1e-6
    assert pca_2d(np.zeros((0, 4))).shape == (0, 2)
    assert pca_2d(np.ones((3, 1))).shape == (3, 2)


def test_embedding_map_keys_and_escaping():
    points = pd.DataFrame(
        {
            "x": [0.0, 1.0, 2.0],
            "y": [0.0, 1.0, 0.5],
            "kind": ["item", "item", "user"],
            "key": ["item:0", "item:1", "user:0"],
            "label": [EVIL_TITLE, "b", "user u"],
            "color": ["A", "<B>", "A"],
        }
    )
    fig = viz.embedding_map_fig(points)
    keys = [row[0] for trace in fig.data for row in trace.customdata]
    assert sorted(keys) == ["item:0", "item:1", "user:0"]
    hover = [row[1] for trace in fig.data for row in trace.customdata]
    assert all("<" not in h for h in hover)
    assert {t.name for t in fig.data} >= {"&lt;B&gt;"}


# ---------------------------------------------------------------------------------- explain
def _edges() -> pd.DataFrame:
    rows = []
    for layer in (0, 1):
        for head in (0, 1):
            rows += [
                ("rates", "item", 5, "i5", "user", 0, "u0", layer, head, 0.6, 0.30),
                ("rates", "item", 6, "i6", "user", 0, "u0", layer, head, 0.4, -0.10),
                ("has_genre", "genre", 1, "Drama", "item", 2, "i2", layer, head, 1.0, 0.05),
                ("rated_by", "user", 3, "u3", "item", 2, "i2", layer, head, 0.2, 0.01),
            ]
    return pd.DataFrame(
        rows,
        columns=[*EDGE_COLUMNS, "layer", "head", "alpha", "contribution"],
    )


def test_explanation_subgraph_keeps_the_pair_and_ranks_edges():
    graph, scores = explanation_subgraph(
        _edges(), user=0, item=2, top=3, user_id="u0", item_id="i2"
    )
    assert {"user:0", "item:2"} <= set(graph.nodes)
    assert graph.nodes["user:0"]["label"] == "u0"
    assert len(scores) == 3 and max(scores.values()) == 1.0
    assert scores[("item:5", "user:0")] == 1.0  # |0.30| x 4 is the largest
    assert ("user:3", "item:2") not in scores  # smallest dropped by top=3
    empty, none = explanation_subgraph(_edges().iloc[:0], 0, 2)
    assert set(empty.nodes) == {"user:0", "item:2"} and none == {}
    page = viz.graph_html(graph, center="item:2", edge_scores=scores)
    _, edges = graph_node_data(page)
    assert sum(e["color"] == viz.HIGHLIGHT_EDGE_COLOR for e in edges) == 3


def test_edge_mask_frame_and_explain_figures(dataset):
    import torch

    masks = {
        ("user", "rates", "item"): (torch.tensor([[0, 1], [0, 2]]), torch.tensor([0.9, 0.1])),
        ("item", "has_genre", "genre"): (torch.tensor([[0], [1]]), torch.tensor([0.5])),
    }
    frame = edge_mask_frame(masks, dataset)
    assert len(frame) == 3 and list(frame["source_id"][:2]) == ["u1", "u2"]
    assert frame["mask"].max() == pytest.approx(0.9)
    graph, scores = explanation_subgraph(frame, 0, 0, weight_column="mask")
    assert scores[("user:0", "item:0")] == 1.0
    contributions = pd.DataFrame(
        {
            "kind": ["text", "attribute", "history_item"],
            "label": ['text of "Dune"', "<b>x</b>", "Plain"],
            "weight": [0.3, -0.5, 0.1],
        }
    )
    bar = viz.contributions_bar_fig(contributions, top=2)
    assert list(bar.data[0].y) == ['text of "Dune"', "&lt;b&gt;x&lt;/b&gt;"]  # |w| order, flipped
    labels = {("item", 5): "Item five"}
    heat = viz.attention_heatmap_fig(_edges(), labels, top=2)
    assert heat.data[0].z.shape == (2, 4) and heat.data[0].y[0] == "Item five"
    curves = pd.DataFrame({"k": [1, 2], "top": [0.2, 0.3], "random": [0.05, 0.1]})
    fig = viz.deletion_curves_fig({"attention": curves, "shap": curves}, "t")
    assert len(fig.data) == 4 and fig.data[1].line.dash == "dot"


def test_plot_text_keeps_quotes_and_escapes_tags():
    from recsys_core.html_safety import plot_text

    assert plot_text('say "hi" <b>') == 'say "hi" &lt;b&gt;'
    fig = viz.degree_histogram_fig(np.array([1, 3, 30, 300]), "item")
    assert fig.layout.xaxis.dtick == 1 and fig.layout.yaxis.dtick == 1


def test_item_item_grid_fig_marks_the_chosen_setting():
    grid = [{"reg_lambda": lam, "relative_weight": w, "valid_ndcg": 0.2 + 0.001 * lam / 100 + w}
            for lam in (50.0, 200.0) for w in (0.25, 0.5)]
    grid.append({"reg_lambda": 200.0, "relative_weight": 0.5, "bridge_scale": 0.0,
                 "valid_ndcg": 0.9})  # bridge rows are not part of the heatmap
    fig = viz.item_item_grid_fig(grid, {"reg_lambda": 200.0, "relative_weight": 0.5})
    heat, mark = fig.data
    assert list(heat.y) == ["50", "200"] and list(heat.x) == ["0.25", "0.5"]
    np.testing.assert_allclose(heat.z, [[0.4505, 0.7005], [0.452, 0.702]])
    assert list(mark.x) == ["0.5"] and list(mark.y) == ["200"]
    off = viz.item_item_grid_fig(grid, {"reg_lambda": 50.0, "relative_weight": 0.0})
    assert len(off.data) == 1  # the path is off: nothing chosen to mark
