"""Figures for the app: pyvis graph HTML and plotly charts.

Every function here is pure: it takes data and returns an HTML string or a
:class:`plotly.graph_objects.Figure`; nothing is drawn or saved. User-controlled strings (ids,
titles, category names) are escaped before they reach HTML (see :mod:`recsys_core.html_safety`);
plotly renders hover text and tick labels as text, but its hover templates interpret a few tags,
so hover strings are escaped too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .dataset import ITEM_IDX, RATING_COL, TIME_COL, USER_IDX, Dataset
from .html_safety import escape_html, graph_label, graph_title, plot_text

#: Node colours per node type; attribute types beyond the named ones cycle through the rest.
NODE_COLORS: dict[str, str] = {"user": "#4C78A8", "item": "#F58518"}
_EXTRA_COLORS = [
    "#54A24B",
    "#B279A2",
    "#E45756",
    "#72B7B2",
    "#EECA3B",
    "#9D755D",
    "#BAB0AC",
    "#FF9DA6",
]
CENTER_COLOR = "#D62728"
HIGHLIGHT_EDGE_COLOR = "#D62728"

# pyvis always links Bootstrap from a CDN; the graph needs none of it, and the app must work
# offline, so those tags are removed from the generated page.
_CDN_TAG = re.compile(
    r"<(link|script)\b[^>]*https?://[^>]*>(\s*</script>)?", re.IGNORECASE | re.DOTALL
)
_HTML_COMMENT = re.compile(r"<!--(?:(?!-->).)*?node_modules(?:(?!-->).)*?-->", re.DOTALL)

# Runs after pyvis' drawGraph(): replace each (already escaped) title string by a DOM element
# holding plain text, so vis-network shows it with line breaks and decoded entities. The
# escaped string goes through a <textarea>, whose content the HTML parser treats as text.
_TOOLTIP_SCRIPT = """
<script type="text/javascript">
(function () {
  function toElement(escaped) {
    var decoder = document.createElement("textarea");
    decoder.innerHTML = escaped;
    var div = document.createElement("div");
    div.style.whiteSpace = "pre-line";
    div.style.maxWidth = "360px";
    div.textContent = decoder.value;
    return div;
  }
  function convert(dataset) {
    var updates = [];
    dataset.forEach(function (entry) {
      if (typeof entry.title === "string") {
        updates.push({id: entry.id, title: toElement(entry.title)});
      }
    });
    dataset.update(updates);
  }
  if (typeof nodes !== "undefined") { convert(nodes); }
  if (typeof edges !== "undefined") { convert(edges); }
  window.recscopeGraphReady = true;
})();
</script>
"""


def node_type_color(node_type: str, node_types: Sequence[str] | None = None) -> str:
    """Colour of a node type: fixed for ``user``/``item``, stable per position otherwise."""
    if node_type in NODE_COLORS:
        return NODE_COLORS[node_type]
    others = sorted(t for t in (node_types or [node_type]) if t not in NODE_COLORS)
    pos = others.index(node_type) if node_type in others else abs(hash(node_type))
    return _EXTRA_COLORS[pos % len(_EXTRA_COLORS)]


def describe_nodes(graph: nx.DiGraph, dataset: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    """Display labels and tooltip texts (both unescaped) for the nodes of a k-hop graph.

    Items are labelled by title, users by id; tooltips add the node type, raw id, interaction
    count and (for items) the attribute values.
    """
    counts_user = np.bincount(
        dataset.interactions[USER_IDX].to_numpy(), minlength=dataset.num_users
    )
    counts_item = np.bincount(
        dataset.interactions[ITEM_IDX].to_numpy(), minlength=dataset.num_items
    )
    items = dataset.items
    labels, titles = {}, {}
    for key, attrs in graph.nodes(data=True):
        node_type, idx, raw = (
            attrs.get("node_type"),
            int(attrs.get("index", 0)),
            attrs.get("label", key),
        )
        if node_type == "item":
            title = str(items.at[idx, "title"]) if "title" in items else str(raw)
            lines = [f"item {raw}", title, f"{int(counts_item[idx])} interactions"]
            for col in dataset.attribute_columns:
                values = items.at[idx, col]
                if isinstance(values, (list, tuple)) and values:
                    lines.append(f"{col}: {', '.join(map(str, values))}")
            labels[key] = title
            titles[key] = "\n".join(lines)
        elif node_type == "user":
            labels[key] = f"user {raw}"
            titles[key] = f"user {raw}\n{int(counts_user[idx])} interactions"
        else:
            labels[key] = str(raw)
            titles[key] = f"{node_type}: {raw}"
    return labels, titles


def graph_html(
    graph: nx.DiGraph,
    center: str | None = None,
    labels: Mapping[str, str] | None = None,
    titles: Mapping[str, str] | None = None,
    edge_scores: Mapping[tuple[str, str], float] | None = None,
    height_px: int = 560,
    physics: bool = True,
    max_item_labels: int = 60,
) -> str:
    """Self-contained interactive HTML (vis-network inlined, no CDN) for a small graph.

    Args:
        graph (networkx.DiGraph): Nodes with ``node_type`` and ``label`` attributes, edges with
            ``relation`` and optional ``weight`` (as from
            :func:`recsys_core.graph.k_hop_networkx`).
        center (str, optional): Key of the node to emphasise. (default: :obj:`None`)
        labels (Mapping[str, str], optional): Display label per node key (default: the node's
            ``label`` attribute). Escaped here.
        titles (Mapping[str, str], optional): Hover text per node key; newlines allowed.
            Escaped here.
        edge_scores (Mapping[tuple[str, str], float], optional): Importance in ``[0, 1]`` per
            edge ``(u, v)`` (either direction), e.g. attention; such edges are drawn red with
            width growing with the score and the score in their tooltip. (default: :obj:`None`)
        height_px (int): Canvas height. (default: :obj:`560`)
        physics (bool): Force-directed layout (Barnes-Hut). (default: :obj:`True`)
        max_item_labels (int): With more item nodes than this, items are drawn without a label
            (their title stays in the tooltip) so the picture stays readable; the centre,
            users and attribute values keep theirs. (default: :obj:`60`)

    Returns:
        A complete HTML document, safe to embed with ``st.iframe``.
    """
    from pyvis.network import Network

    labels = labels or {}
    titles = titles or {}
    scores = {}
    for (u, v), s in (edge_scores or {}).items():
        scores[(u, v)] = scores[(v, u)] = float(s)
    node_types = sorted({d.get("node_type", "node") for _, d in graph.nodes(data=True)})

    n_items = sum(d.get("node_type") == "item" for _, d in graph.nodes(data=True))
    hide_items = n_items > max_item_labels

    net = Network(height=f"{height_px}px", width="100%", directed=False, cdn_resources="in_line")
    for key, attrs in graph.nodes(data=True):
        node_type = attrs.get("node_type", "node")
        is_center = key == center
        label = labels.get(key, attrs.get("label", key))
        net.add_node(
            key,
            label=" "
            if hide_items and node_type == "item" and not is_center
            else graph_label(label),
            title=graph_title(titles.get(key, f"{node_type}: {attrs.get('label', key)}")),
            color=CENTER_COLOR if is_center else node_type_color(node_type, node_types),
            size=26 if is_center else (14 if node_type in ("user", "item") else 10),
            shape="star" if is_center else ("dot" if node_type in ("user", "item") else "diamond"),
            borderWidth=3 if is_center else 1,
        )
    weights = [float(d.get("weight", 1.0)) for _, _, d in graph.edges(data=True)]
    w_max = max(weights) if weights else 1.0
    for u, v, attrs in graph.edges(data=True):
        relation = str(attrs.get("relation", ""))
        weight = float(attrs.get("weight", 1.0))
        text = relation if relation != "rates" else f"rates (rating {weight:g})"
        edge = {
            "title": graph_title(text),
            "width": 1.0 + 2.0 * weight / max(w_max, 1e-9),
            "color": "#9A9A9A",
        }
        if (u, v) in scores:
            s = scores[(u, v)]
            edge.update(
                color=HIGHLIGHT_EDGE_COLOR,
                width=1.5 + 8.0 * s,
                title=graph_title(f"{text}\nimportance {s:.3f}"),
            )
        net.add_edge(u, v, **edge)
    net.options = {
        "nodes": {"font": {"size": 13, "multi": False, "face": "sans-serif"}},
        "edges": {"smooth": False},
        "interaction": {"hover": True, "tooltipDelay": 120, "navigationButtons": False},
        "physics": {
            "enabled": bool(physics),
            "solver": "barnesHut",
            "barnesHut": {
                "gravitationalConstant": -6000,
                "springLength": 110,
                "springConstant": 0.03,
                "damping": 0.35,
            },
            "stabilization": {"enabled": True, "iterations": 150, "fit": True},
        },
    }
    page = net.generate_html()
    page = _HTML_COMMENT.sub("", page)
    page = _CDN_TAG.sub("", page)
    legend = _legend_html(node_types, center is not None)
    page = page.replace("<body>", "<body>\n" + legend, 1)
    page = page.replace("</body>", _TOOLTIP_SCRIPT + "</body>", 1)
    return page


def explanation_subgraph(
    edges: pd.DataFrame,
    user: int,
    item: int,
    top: int = 25,
    weight_column: str = "contribution",
    user_id: str = "",
    item_id: str = "",
) -> tuple[nx.DiGraph, dict[tuple[str, str], float]]:
    """The pair's most important incoming edges as a small graph plus per-edge importances.

    Args:
        edges (pandas.DataFrame): One row per (edge, layer, head) with ``source_type``,
            ``source_index``, ``source_id``, ``target_type``, ``target_index``, ``target_id``,
            ``relation`` and ``weight_column`` (e.g. attention explanations'
            ``details["edges"]`` or GNNExplainer edge masks).
        user (int): User index of the pair.
        item (int): Item index of the pair.
        top (int): Edges kept, by absolute importance summed over layers and heads.
            (default: :obj:`25`)
        weight_column (str): Column holding the importance. (default: :obj:`"contribution"`)
        user_id (str): Raw id of the user (node label). (default: :obj:`""`)
        item_id (str): Raw id of the item (node label). (default: :obj:`""`)

    Returns:
        ``(graph, edge_scores)``: a graph for :func:`graph_html` (nodes keyed
        ``"<type>:<index>"``) always holding the user and the item, and importances scaled to
        ``[0, 1]`` for its ``edge_scores`` argument.
    """
    graph = nx.DiGraph()
    graph.add_node(f"user:{user}", node_type="user", index=int(user), label=str(user_id))
    graph.add_node(f"item:{item}", node_type="item", index=int(item), label=str(item_id))
    if edges is None or not len(edges):
        return graph, {}
    keys = ["source_type", "source_index", "target_type", "target_index"]
    grouped = (
        edges.assign(_abs=edges[weight_column].abs())
        .groupby(keys, sort=False)
        .agg(
            importance=("_abs", "sum"),
            relation=("relation", "first"),
            source_id=("source_id", "first"),
            target_id=("target_id", "first"),
        )
        .reset_index()
    )
    grouped = grouped[
        (grouped["source_type"] + ":" + grouped["source_index"].astype(str))
        != (grouped["target_type"] + ":" + grouped["target_index"].astype(str))
    ]
    grouped = grouped.nlargest(top, "importance")
    peak = float(grouped["importance"].max()) if len(grouped) else 1.0
    scores = {}
    for r in grouped.itertuples(index=False):
        u, v = f"{r.source_type}:{int(r.source_index)}", f"{r.target_type}:{int(r.target_index)}"
        for key, nt, idx, raw in (
            (u, r.source_type, r.source_index, r.source_id),
            (v, r.target_type, r.target_index, r.target_id),
        ):
            if key not in graph:
                graph.add_node(key, node_type=str(nt), index=int(idx), label=str(raw))
        graph.add_edge(u, v, relation=str(r.relation).split("__")[-1].split(",")[0], weight=1.0)
        scores[(u, v)] = float(r.importance) / peak if peak > 0 else 0.0
    return graph, scores


def edge_mask_frame(
    edge_masks: Mapping[tuple[str, str, str], tuple], dataset: Dataset
) -> pd.DataFrame:
    """GNNExplainer-style ``{edge_type: (edge_index [2, k], mask [k])}`` as one edge table.

    Returns:
        DataFrame with ``relation``, ``source_type``, ``source_index``, ``source_id``,
        ``target_type``, ``target_index``, ``target_id`` and ``mask`` (for
        :func:`explanation_subgraph` with ``weight_column="mask"``). Raw ids of attribute
        nodes are not known here and are left as their indices.
    """
    frames = []
    ids = {"user": dataset.user_ids, "item": dataset.item_ids}
    for (src, rel, dst), (edge_index, mask) in edge_masks.items():
        ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        values = np.asarray(mask, dtype=np.float64).reshape(-1)
        frames.append(
            pd.DataFrame(
                {
                    "relation": rel,
                    "source_type": src,
                    "source_index": ei[0],
                    "source_id": ids[src][ei[0]] if src in ids else ei[0].astype(str),
                    "target_type": dst,
                    "target_index": ei[1],
                    "target_id": ids[dst][ei[1]] if dst in ids else ei[1].astype(str),
                    "mask": values,
                }
            )
        )
    columns = [
        "relation",
        "source_type",
        "source_index",
        "source_id",
        "target_type",
        "target_index",
        "target_id",
        "mask",
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def deletion_curves_fig(curves: Mapping[str, pd.DataFrame], title: str) -> go.Figure:
    """Mean score change against the number of history items removed (or kept), for the
    explanation's top items (solid) and random ones (dotted), one colour per method.

    Args:
        curves (Mapping[str, pandas.DataFrame]): Method name -> frame with ``k``, ``top`` and
            ``random`` columns.
        title (str): Figure title (it says what the y axis measures).
    """
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    for j, (method, frame) in enumerate(curves.items()):
        color = palette[j % len(palette)]
        fig.add_trace(
            go.Scatter(
                x=frame["k"],
                y=frame["top"],
                mode="lines+markers",
                name=f"{plot_text(method)}: top-k",
                line=dict(color=color),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=frame["k"],
                y=frame["random"],
                mode="lines+markers",
                name=f"{plot_text(method)}: random k",
                line=dict(color=color, dash="dot"),
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="history items (k)",
        height=340,
        margin=dict(t=50, b=40, l=50, r=10),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def contributions_bar_fig(
    contributions: pd.DataFrame, top: int = 15, title: str = "Contributions"
) -> go.Figure:
    """Signed horizontal bars of the largest contributions (``label``, ``weight``, ``kind``)."""
    frame = contributions.reindex(
        contributions["weight"].abs().sort_values(ascending=False, kind="stable").index
    ).head(top)
    frame = frame.iloc[::-1]
    kinds = {
        "history_item": "#4C78A8",
        "attribute": "#54A24B",
        "text": "#B279A2",
        "neighbour": "#F58518",
    }
    fig = go.Figure(
        go.Bar(
            x=frame["weight"],
            y=[f"{plot_text(label, 50)}" for label in frame["label"]],
            orientation="h",
            marker_color=[kinds.get(k, "#9D755D") for k in frame.get("kind", [""] * len(frame))],
            customdata=[
                plot_text(str(k).replace("_", " ")) for k in frame.get("kind", [""] * len(frame))
            ],
            hovertemplate="%{y}<br>%{customdata}: %{x:.4f}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line_color="#444", line_width=1)
    fig.update_layout(
        title=title,
        height=max(260, 26 * len(frame) + 90),
        margin=dict(t=50, b=40, l=10, r=10),
        xaxis_title="contribution to the score",
    )
    return fig


def attention_heatmap_fig(
    edges: pd.DataFrame, labels: Mapping[tuple[str, int], str], top: int = 15
) -> go.Figure:
    """Mean attention weight per source node (rows) and layer/head (columns)."""
    frame = edges.copy()
    frame["column"] = "layer " + frame["layer"].astype(str) + " · head " + frame["head"].astype(str)
    frame["node"] = list(zip(frame["source_type"], frame["source_index"].astype(int), strict=True))
    keep = frame.groupby("node")["contribution"].apply(lambda s: s.abs().sum()).nlargest(top).index
    frame = frame[frame["node"].isin(keep)]
    table = frame.pivot_table(index="node", columns="column", values="alpha", aggfunc="mean")
    table = table.reindex(keep)
    ylabels = [plot_text(labels.get(node, f"{node[0]} {node[1]}"), 40) for node in table.index]
    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=list(table.columns),
            y=ylabels,
            colorscale="Oranges",
            colorbar=dict(title="attention"),
            hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Attention weights of the most important sources",
        height=max(260, 24 * len(table) + 110),
        margin=dict(t=50, b=40, l=10, r=10),
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def _legend_html(node_types: Sequence[str], with_center: bool) -> str:
    chips = []
    for nt in node_types:
        chips.append(
            f'<span class="rs-chip"><span class="rs-dot" style="background:'
            f'{node_type_color(nt, node_types)}"></span>{escape_html(nt)}</span>'
        )
    if with_center:
        chips.append(
            f'<span class="rs-chip"><span class="rs-dot" style="background:'
            f'{CENTER_COLOR}"></span>selected</span>'
        )
    style = (
        "<style>.rs-legend{font:13px sans-serif;margin:4px 0 6px 0}"
        ".rs-chip{display:inline-block;margin-right:14px}"
        ".rs-dot{display:inline-block;width:11px;height:11px;border-radius:50%;"
        "margin-right:5px;vertical-align:-1px}</style>"
    )
    return style + '<div class="rs-legend">' + "".join(chips) + "</div>"


def graph_node_data(page: str) -> tuple[list[dict], list[dict]]:
    """The node and edge lists embedded in a page from :func:`graph_html` (for tests/tools)."""
    found = re.findall(r"new vis\.DataSet\((\[.*?\])\);", page, flags=re.DOTALL)
    if len(found) < 2:
        raise ValueError("no vis-network data found in the page")
    return json.loads(found[0]), json.loads(found[1])


# ---------------------------------------------------------------------------------- data plots
def _log_bins(values: np.ndarray, bins: int = 30) -> np.ndarray:
    hi = max(float(values.max()), 1.0) if len(values) else 1.0
    edges = np.unique(np.round(np.logspace(0, np.log10(hi + 1), bins + 1)))
    return edges if len(edges) > 1 else np.array([1.0, 2.0])


def degree_histogram_fig(counts: np.ndarray, entity: str) -> go.Figure:
    """Histogram of interactions per ``entity`` with log-spaced bins and log axes.

    Args:
        counts (numpy.ndarray): Interaction count per user (or item); zeros are reported in the
            title (they cannot sit on a log axis).
        entity (str): ``"user"`` or ``"item"``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    zeros = int((counts == 0).sum())
    positive = counts[counts > 0]
    edges = _log_bins(positive)
    hist, _ = np.histogram(positive, bins=edges)
    lo, hi = edges[:-1], edges[1:]
    filled = np.nonzero(hist)[0]
    if len(filled):  # drop empty bins at both ends so the axis starts where the data does
        keep = slice(filled[0], filled[-1] + 1)
        hist, lo, hi = hist[keep], lo[keep], hi[keep]
    labels = [
        f"{int(a)}" if hi_ - a <= 1 else f"{int(a)}–{int(hi_) - 1}"
        for a, hi_ in zip(lo, hi, strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=np.sqrt(lo * np.maximum(hi - 1, lo)),
            y=hist,
            width=(hi - lo) * 0.9,
            customdata=labels,
            marker_color=NODE_COLORS.get(entity, "#4C78A8"),
            hovertemplate="%{customdata} interactions: %{y} " + entity + "s<extra></extra>",
        )
    )
    extra = f" ({zeros} with none)" if zeros else ""
    fig.update_layout(
        title=f"Interactions per {entity}{extra}",
        xaxis_title=f"interactions per {entity} (log)",
        yaxis_title=f"{entity}s (log)",
        bargap=0.05,
        height=340,
        margin=dict(t=50, b=40, l=50, r=10),
    )
    # Decades only: plotly's default log ticks label 2 and 5 of each decade without the
    # exponent, which reads as nonsense ("2, 100, 5") on a small chart.
    fig.update_xaxes(type="log", dtick=1, range=[np.log10(lo[0] * 0.9), np.log10(hi[-1] * 1.1)])
    fig.update_yaxes(type="log", dtick=1)
    return fig


def interaction_counts(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Interactions per user and per item (index order)."""
    inter = dataset.interactions
    return (
        np.bincount(inter[USER_IDX].to_numpy(), minlength=dataset.num_users),
        np.bincount(inter[ITEM_IDX].to_numpy(), minlength=dataset.num_items),
    )


def rating_histogram_fig(dataset: Dataset) -> go.Figure:
    """Distribution of rating values (a single bar for implicit data)."""
    ratings = dataset.interactions[RATING_COL].to_numpy(np.float64)
    values, counts = np.unique(ratings[np.isfinite(ratings)], return_counts=True)
    if len(values) > 30:  # continuous ratings: bin them
        counts, edges = np.histogram(ratings[np.isfinite(ratings)], bins=30)
        values = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=values,
            y=counts,
            marker_color="#54A24B",
            hovertemplate="rating %{x}: %{y} interactions<extra></extra>",
        )
    )
    fig.update_layout(
        title="Rating distribution",
        xaxis_title="rating",
        yaxis_title="interactions",
        height=340,
        margin=dict(t=50, b=40, l=50, r=10),
    )
    return fig


def activity_over_time_fig(dataset: Dataset, max_points: int = 400) -> go.Figure:
    """Interactions and active users per period (day/week/month chosen by the time span)."""
    ts = dataset.interactions[TIME_COL].to_numpy(np.float64)
    known = np.isfinite(ts)
    fig = go.Figure()
    if not known.any():
        fig.add_annotation(
            text="No timestamps in the interactions",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
            font=dict(size=15),
        )
        fig.update_layout(
            title="Activity over time",
            height=340,
            xaxis=dict(visible=False),
            yaxis=dict(visible=False),
        )
        return fig
    frame = pd.DataFrame(
        {
            "t": pd.to_datetime(ts[known], unit="s"),
            "user": dataset.interactions[USER_IDX].to_numpy()[known],
        }
    )
    span_days = (frame["t"].max() - frame["t"].min()).days
    freq = "D" if span_days <= max_points else ("W" if span_days <= 7 * max_points else "MS")
    name = {"D": "day", "W": "week", "MS": "month"}[freq]
    grouped = frame.groupby(pd.Grouper(key="t", freq=freq))
    per = pd.DataFrame({"interactions": grouped.size(), "active users": grouped["user"].nunique()})
    fig.add_trace(
        go.Scatter(
            x=per.index,
            y=per["interactions"],
            name="interactions",
            mode="lines",
            line=dict(color="#4C78A8"),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=per.index,
            y=per["active users"],
            name="active users",
            mode="lines",
            line=dict(color="#F58518"),
        )
    )
    missing = int((~known).sum())
    extra = f" ({missing} without timestamp)" if missing else ""
    fig.update_layout(
        title=f"Activity per {name}{extra}",
        xaxis_title="time",
        yaxis_title=f"count per {name}",
        height=340,
        margin=dict(t=50, b=40, l=50, r=10),
        legend=dict(orientation="h", y=1.12),
    )
    return fig


def attribute_counts_fig(dataset: Dataset, column: str, top: int = 25) -> go.Figure:
    """Items per value of one attribute column (top values)."""
    values = pd.Series(
        [v for vs in dataset.items[column] if isinstance(vs, (list, tuple)) for v in vs],
        dtype=object,
    )
    counts = values.value_counts().head(top)
    fig = go.Figure(
        go.Bar(
            x=counts.values[::-1],
            y=[plot_text(v, 40) for v in counts.index[::-1]],
            orientation="h",
            marker_color="#B279A2",
            hovertemplate="%{y}: %{x} items<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Items per {plot_text(column)}",
        xaxis_title="items",
        height=max(260, 22 * len(counts) + 80),
        margin=dict(t=50, b=40, l=10, r=10),
    )
    return fig


# ------------------------------------------------------------------------------ training plots
def training_curves_fig(history: Sequence[Mapping], title: str = "Training") -> go.Figure:
    """Loss (left) and validation metric (right) per epoch from progress events.

    Args:
        history (sequence of dict): Progress events; those with an ``epoch`` and a ``loss``
            and/or a ``valid_*`` key are plotted.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation"))
    rows = [h for h in history if h.get("epoch") is not None]
    loss = []
    # The refit on all interactions (after early stopping) restarts at epoch 1: its own line.
    for refit, name, color in ((False, "loss", "#4C78A8"), (True, "loss, refit on all data",
                                                            "#72B7B2")):
        pts = [(h["epoch"], h["loss"]) for h in rows
               if _finite(h.get("loss")) and (h.get("stage") == "refit") == refit]
        if pts:
            loss += pts
            x, y = zip(*pts, strict=True)
            fig.add_trace(
                go.Scatter(x=x, y=y, mode="lines+markers", name=name, line=dict(color=color)),
                row=1,
                col=1,
            )
    valid_keys = sorted(
        {k for h in rows for k in h if k.startswith("valid_") and _finite(h.get(k))}
    )
    colors = ["#F58518", "#54A24B", "#B279A2", "#E45756"]
    for i, key in enumerate(valid_keys):
        pts = [(h["epoch"], h[key]) for h in rows if _finite(h.get(key))]
        x, y = zip(*pts, strict=True)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=key.removeprefix("valid_"),
                line=dict(color=colors[i % len(colors)]),
            ),
            row=1,
            col=2,
        )
    if not loss and not valid_keys:
        fig.add_annotation(
            text="waiting for the first epoch…",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
        )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(
        title=title,
        height=320,
        margin=dict(t=60, b=40, l=50, r=10),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def compare_curves_fig(histories: Mapping[str, Sequence[Mapping]]) -> go.Figure:
    """Training loss and validation NDCG per epoch of several runs, one colour per run."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation ndcg"))
    palette = px.colors.qualitative.Plotly
    for j, (name, history) in enumerate(histories.items()):
        rows = [h for h in history if h.get("epoch") is not None and h.get("stage") != "refit"]
        color = palette[j % len(palette)]
        for col, key in ((1, "loss"), (2, "valid_ndcg")):
            pts = [(h["epoch"], h[key]) for h in rows if _finite(h.get(key))]
            if pts:
                x, y = zip(*pts, strict=True)
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=y,
                        mode="lines",
                        name=plot_text(name),
                        legendgroup=name,
                        showlegend=col == 1 or len(pts) == 0,
                        line=dict(color=color),
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(
        height=320, margin=dict(t=40, b=40, l=50, r=10), legend=dict(orientation="h", y=-0.25)
    )
    return fig


def item_item_grid_fig(grid: Sequence[Mapping], chosen: Mapping | None = None) -> go.Figure:
    """Validation NDCG of the flagship's item-item path per (lambda, relative weight) tried
    (see :func:`recsys_core.models.item_item.select_item_item`), the chosen cell marked."""
    frame = pd.DataFrame([g for g in grid if "bridge_scale" not in g])
    fig = go.Figure()
    if len(frame):
        table = frame.pivot_table(index="reg_lambda", columns="relative_weight",
                                  values="valid_ndcg", aggfunc="mean")
        x = [f"{w:.3g}" for w in table.columns]
        y = [f"{lam:g}" for lam in table.index]
        fig.add_trace(go.Heatmap(
            z=table.to_numpy(), x=x, y=y, colorscale="Viridis",
            colorbar=dict(title="valid NDCG"),
            hovertemplate="lambda %{y}, weight %{x}: NDCG %{z:.4f}<extra></extra>"))
        if chosen and chosen.get("relative_weight", 0) > 0:
            fig.add_trace(go.Scatter(
                x=[f"{chosen['relative_weight']:.3g}"], y=[f"{chosen['reg_lambda']:g}"],
                mode="markers", marker=dict(symbol="x", size=14, color="white",
                                            line=dict(width=2, color="black")),
                name="chosen", hoverinfo="skip"))
    fig.update_layout(
        title="Item-item path: validation NDCG per setting",
        xaxis_title="relative weight", yaxis_title="lambda", height=360,
        margin=dict(t=50, b=40, l=60, r=10), showlegend=False)
    return fig


def _finite(value) -> bool:
    try:
        return value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------- metric plots
def metrics_at_k_fig(frame: pd.DataFrame, metrics: Sequence[str] = ("recall", "ndcg")) -> go.Figure:
    """Metric@K lines per model.

    Args:
        frame (pandas.DataFrame): Long format with columns ``model``, ``k``, ``metric`` and
            ``value``.
        metrics (sequence of str): Metrics to draw, one panel each.
    """
    metrics = [m for m in metrics if m in set(frame["metric"])] or list(frame["metric"].unique())[
        :2
    ]
    fig = make_subplots(
        rows=1, cols=max(len(metrics), 1), subplot_titles=[f"{m}@K" for m in metrics]
    )
    palette = px.colors.qualitative.Plotly
    for j, model in enumerate(frame["model"].unique()):
        for i, metric in enumerate(metrics):
            part = frame[(frame["model"] == model) & (frame["metric"] == metric)].sort_values("k")
            fig.add_trace(
                go.Scatter(
                    x=part["k"],
                    y=part["value"],
                    mode="lines+markers",
                    name=plot_text(model),
                    legendgroup=str(model),
                    showlegend=i == 0,
                    line=dict(color=palette[j % len(palette)]),
                ),
                row=1,
                col=i + 1,
            )
    fig.update_xaxes(title_text="K")
    fig.update_layout(
        height=360, margin=dict(t=50, b=40, l=50, r=10), legend=dict(orientation="h", y=-0.2)
    )
    return fig


def metric_bars_fig(frame: pd.DataFrame, value_columns: Sequence[str], title: str) -> go.Figure:
    """Grouped bars: one group per value column, one bar per model (``frame['model']``)."""
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    for j, (_, row) in enumerate(frame.iterrows()):
        fig.add_trace(
            go.Bar(
                name=plot_text(row["model"]),
                x=list(value_columns),
                y=[row[c] for c in value_columns],
                marker_color=palette[j % len(palette)],
            )
        )
    fig.update_layout(
        barmode="group",
        title=title,
        height=340,
        margin=dict(t=50, b=40, l=50, r=10),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def per_user_histogram_fig(
    values: Mapping[str, np.ndarray], metric: str, bins: int = 20
) -> go.Figure:
    """Overlaid histograms of a per-user metric, one per model."""
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    for j, (model, vals) in enumerate(values.items()):
        fig.add_trace(
            go.Histogram(
                x=np.asarray(vals, dtype=float),
                name=plot_text(model),
                xbins=dict(start=0.0, end=1.0 + 1e-9, size=1.0 / bins),
                opacity=0.6,
                marker_color=palette[j % len(palette)],
            )
        )
    fig.update_layout(
        barmode="overlay",
        title=f"Per-user {metric}",
        xaxis_title=metric,
        yaxis_title="users",
        height=340,
        margin=dict(t=50, b=40, l=50, r=10),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


# --------------------------------------------------------------------------------- embeddings
def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of ``x`` ``[n, d]`` via SVD (deterministic signs)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        return np.zeros((len(x), 2))
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    # Fix the sign of each component so the picture does not flip between runs.
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    coords = centred @ (comps * signs[:, None]).T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords


def embedding_map_fig(
    points: pd.DataFrame, color: str = "category", height: int = 560
) -> go.Figure:
    """Scatter of a 2-D embedding map.

    Args:
        points (pandas.DataFrame): Columns ``x``, ``y``, ``kind`` (``user``/``item``),
            ``label`` and ``color`` (the value to colour by) plus ``key`` (row id for selection).
            Items are drawn as dots, users as crosses.
        color (str): Legend title. (default: :obj:`"category"`)
    """
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly + px.colors.qualitative.Set2
    groups = list(pd.unique(points["color"]))
    for j, value in enumerate(groups):
        part = points[points["color"] == value]
        shown = False  # one legend entry per value; it toggles its items and users together
        for kind, symbol, size in (("item", "circle", 7), ("user", "x", 6)):
            sub = part[part["kind"] == kind]
            if not len(sub):
                continue
            fig.add_trace(
                go.Scattergl(
                    x=sub["x"],
                    y=sub["y"],
                    mode="markers",
                    name=plot_text(value, 40),
                    legendgroup=str(j),
                    showlegend=not shown,
                    marker=dict(
                        size=size,
                        symbol=symbol,
                        color=palette[j % len(palette)],
                        opacity=0.75 if kind == "item" else 0.45,
                    ),
                    customdata=np.stack(
                        [sub["key"].astype(str), [plot_text(t, 80) for t in sub["label"]]], axis=1
                    ),
                    hovertemplate="%{customdata[1]}<extra></extra>",
                )
            )
            shown = True
    fig.update_layout(
        height=height,
        margin=dict(t=30, b=30, l=30, r=10),
        legend_title=color,
        dragmode="lasso",
        xaxis_title="PC 1",
        yaxis_title="PC 2",
    )
    return fig
