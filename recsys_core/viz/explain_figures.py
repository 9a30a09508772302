"""Plotly charts of explanations: contributions, attention and deletion curves."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ..html_safety import plot_text
from .layout import compact_layout


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
        for column, name, dash in (("top", "top-k", None), ("random", "random k", "dot")):
            fig.add_trace(
                go.Scatter(
                    x=frame["k"],
                    y=frame[column],
                    mode="lines+markers",
                    name=f"{plot_text(method)}: {name}",
                    line=dict(color=color, dash=dash),
                )
            )
    return compact_layout(
        fig, title=title, xaxis_title="history items (k)", legend=dict(orientation="h", y=-0.25)
    )


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
