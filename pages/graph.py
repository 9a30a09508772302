"""Graph page: the heterogeneous graph around one user or item (pyvis, offline) and its stats."""

from __future__ import annotations

import numpy as np
import streamlit as st

from recscope_ui import ui
from recsys_core.graph import graph_summary, k_hop_networkx
from recsys_core.views.graph import graph_for_view, labelled_graph_html

MAX_MATCHES = 500


def render() -> None:
    st.title("Graph")
    ui.guarded(_body)


def _body() -> None:
    ws = ui.workspace()
    ds = ws.dataset
    data, sampled = _view_graph(ws)
    st.caption(
        "Users, items and attribute nodes (one type per item and per user attribute) with every "
        "interaction as an edge (width = rating), plus user-user edges when given. "
        "Drag to move, scroll to zoom, hover for details."
    )
    if sampled:
        st.caption(sampled)
    left, right = st.columns([1, 3])
    with left:
        node_type = st.radio("Centre on", ["user", "item"], horizontal=True, key="g-type")
        query = st.text_input(
            "Search",
            key="g-search",
            placeholder="user id" if node_type == "user" else "title or item id",
        )
        options = _matches(ws, node_type, query)
        if not options:
            st.warning("Nothing matches the search. Clear it to see every node.")
            return
        labels = _labels(ws, node_type)
        centre = st.selectbox(
            f"{node_type.capitalize()} ({len(options):,} shown)",
            options,
            index=_typical(ws, node_type, options),
            format_func=lambda i: labels[i],
            key=f"g-centre-{node_type}",
        )
        hops = st.slider(
            "Hops",
            1,
            3,
            2,
            key="g-hops",
            help="Neighbourhood depth: 2 hops from a user reaches the items they "
            "interacted with and those items' other users and attributes.",
        )
        cap = st.slider(
            "Max nodes",
            20,
            400,
            150,
            step=10,
            key="g-cap",
            help="Larger neighbourhoods are sampled hop by hop (closest nodes "
            "first) down to this many nodes.",
        )
        physics = st.toggle("Force layout", value=True, key="g-physics")
    setting = (node_type, int(centre), hops, cap, physics)
    view = ws.cache.get("graph_view")
    if view is None or view[0] != setting:  # the latest view is kept: reruns cost nothing
        graph = k_hop_networkx(data, node_type, int(centre), num_hops=hops, max_nodes=cap)
        html, node_labels = labelled_graph_html(
            graph, ds, center=f"{node_type}:{int(centre)}", height_px=600, physics=physics
        )
        view = ws.cache["graph_view"] = (setting, graph, node_labels, html)
    _, graph, node_labels, html = view
    with right:
        st.iframe(html, height=660, alt="Interactive neighbourhood graph")
        counts = {}
        for _, attrs in graph.nodes(data=True):
            counts[attrs["node_type"]] = counts.get(attrs["node_type"], 0) + 1
        st.caption(
            f"{graph.number_of_nodes()} nodes ("
            + ", ".join(f"{n} {ui.md(t)}" for t, n in sorted(counts.items()))
            + f"), {graph.number_of_edges()} edges."
        )

    st.subheader("Graph statistics")
    summary = _summary(ws)
    left, right = st.columns(2)
    with left:
        st.markdown("**Node types**")
        st.dataframe(summary["nodes"], hide_index=True)
        ui.download_csv("Download node stats", summary["nodes"], "graph_nodes.csv")
    with right:
        st.markdown("**Edge types**")
        st.dataframe(summary["edges"][["edge_type", "edges", "mean_degree"]], hide_index=True)
        ui.download_csv("Download edge stats", summary["edges"], "graph_edges.csv")
    nodes = [
        {"node": k, "type": a["node_type"], "id": a["label"], "label": node_labels.get(k, "")}
        for k, a in graph.nodes(data=True)
    ]
    with st.expander("Nodes in this view"):
        import pandas as pd

        frame = pd.DataFrame(nodes)
        st.dataframe(frame, hide_index=True)
        ui.download_csv("Download the nodes of this view", frame, "graph_view_nodes.csv")


def _view_graph(ws):
    """The graph neighbourhoods are drawn from (a sample on large data) and its note."""
    if "graph_view_data" not in ws.cache:
        ws.cache["graph_view_data"] = graph_for_view(ws.graph())
    return ws.cache["graph_view_data"]


def _summary(ws):
    if "graph_summary" not in ws.cache:
        ws.cache["graph_summary"] = graph_summary(ws.graph())
    return ws.cache["graph_summary"]


def _labels(ws, node_type: str) -> dict[int, str]:
    key = f"graph_labels_{node_type}"
    if key not in ws.cache:
        ds = ws.dataset
        if node_type == "user":
            fmt = ui.user_label(ws)
            ws.cache[key] = {i: fmt(u) for i, u in enumerate(ds.user_ids)}
        else:
            titles = ds.items["title"].astype(str).tolist()
            ws.cache[key] = {
                i: f"{t} ({iid})"
                for i, (t, iid) in enumerate(zip(titles, ds.item_ids, strict=True))
            }
    return ws.cache[key]


def _typical(ws, node_type: str, options: list[int]) -> int:
    """Position of a node with median activity: its neighbourhood is readable, unlike the
    busiest node's (which fills the node cap with its own neighbours)."""
    counts = ws.item_counts() if node_type == "item" else _user_counts(ws)
    values = counts[options]
    positive = values[values > 0]
    if not len(positive):
        return 0
    return int(np.abs(values - np.median(positive)).argmin())


def _user_counts(ws) -> np.ndarray:
    if "user_counts" not in ws.cache:
        ws.cache["user_counts"] = np.bincount(
            ws.train["user_idx"].to_numpy(), minlength=ws.dataset.num_users
        )
    return ws.cache["user_counts"]


def _matches(ws, node_type: str, query: str) -> list[int]:
    """Node indices matching the search (most active first), at most :data:`MAX_MATCHES`."""
    ds = ws.dataset
    if node_type == "user":
        order = [ds.user_index[u] for u in ui.user_options(ws)]
    else:
        counts = ws.item_counts()
        order = sorted(range(ds.num_items), key=lambda i: (-counts[i], i))
    query = (query or "").strip().lower()
    if query:
        labels = _labels(ws, node_type)
        order = [i for i in order if query in labels[i].lower()]
    return order[:MAX_MATCHES]


ui.run_page(render)
