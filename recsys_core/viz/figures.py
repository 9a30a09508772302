"""Plotly charts of the data, training, metrics and the embedding map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..dataset import RATING_COL, TIME_COL, USER_IDX, Dataset
from ..html_safety import plot_text
from .colors import NODE_COLORS
from .layout import compact_layout


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
    compact_layout(
        fig,
        title=f"Interactions per {entity}{extra}",
        xaxis_title=f"interactions per {entity} (log)",
        yaxis_title=f"{entity}s (log)",
        bargap=0.05,
    )
    # Decades only: plotly's default log ticks label 2 and 5 of each decade without the
    # exponent, which reads as nonsense ("2, 100, 5") on a small chart.
    fig.update_xaxes(type="log", dtick=1, range=[np.log10(lo[0] * 0.9), np.log10(hi[-1] * 1.1)])
    fig.update_yaxes(type="log", dtick=1)
    return fig

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
    return compact_layout(
        fig, title="Rating distribution", xaxis_title="rating", yaxis_title="interactions"
    )


def activity_over_time_fig(dataset: Dataset, max_points: int = 400) -> go.Figure:
    """Interactions and active users per period (day/week/month chosen by the time span)."""
    ts = dataset.interactions[TIME_COL].to_numpy(np.float64)
    known = np.isfinite(ts)
    fig = go.Figure()
    if not known.any():
        _note(fig, "No timestamps in the interactions", font=dict(size=15))
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
    for column, color in (("interactions", "#4C78A8"), ("active users", "#F58518")):
        fig.add_trace(
            go.Scatter(x=per.index, y=per[column], name=column, mode="lines", line=dict(color=color))
        )
    missing = int((~known).sum())
    extra = f" ({missing} without timestamp)" if missing else ""
    return compact_layout(
        fig,
        title=f"Activity per {name}{extra}",
        xaxis_title="time",
        yaxis_title=f"count per {name}",
        legend=dict(orientation="h", y=1.12),
    )


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
    loss = False
    # The refit on all interactions (after early stopping) restarts at epoch 1: its own line.
    for refit, name, color in ((False, "loss", "#4C78A8"), (True, "loss, refit on all data",
                                                            "#72B7B2")):
        stage = [h for h in rows if (h.get("stage") == "refit") == refit]
        trace = _epoch_line(stage, "loss", mode="lines+markers", name=name,
                            line=dict(color=color))
        if trace is not None:
            loss = True
            fig.add_trace(trace, row=1, col=1)
    valid_keys = sorted(
        {k for h in rows for k in h if k.startswith("valid_") and _finite(h.get(k))}
    )
    colors = ["#F58518", "#54A24B", "#B279A2", "#E45756"]
    for i, key in enumerate(valid_keys):
        trace = _epoch_line(rows, key, mode="lines+markers", name=key.removeprefix("valid_"),
                            line=dict(color=colors[i % len(colors)]))
        fig.add_trace(trace, row=1, col=2)
    if not loss and not valid_keys:
        _note(fig, "waiting for the first epoch…")
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
            trace = _epoch_line(rows, key, mode="lines", name=plot_text(name),
                                legendgroup=name, showlegend=col == 1, line=dict(color=color))
            if trace is not None:
                fig.add_trace(trace, row=1, col=col)
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


def _epoch_line(rows: Sequence[Mapping], key: str, **style) -> go.Scatter | None:
    """``key`` per epoch over the progress events with a finite value, as a line styled by
    ``style`` (``go.Scatter`` arguments); None when no event has one."""
    pts = [(h["epoch"], h[key]) for h in rows if _finite(h.get(key))]
    if not pts:
        return None
    x, y = zip(*pts, strict=True)
    return go.Scatter(x=x, y=y, **style)


def _note(fig: go.Figure, text: str, **style) -> None:
    """``text`` in the middle of an empty chart (``style``: annotation arguments)."""
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       **style)


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
    return compact_layout(fig, height=360, legend=dict(orientation="h", y=-0.2))


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
    return compact_layout(fig, barmode="group", title=title, legend=dict(orientation="h", y=-0.2))


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
    return compact_layout(
        fig,
        barmode="overlay",
        title=f"Per-user {metric}",
        xaxis_title=metric,
        yaxis_title="users",
        legend=dict(orientation="h", y=-0.2),
    )


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


def metrics_ci_fig(frame: pd.DataFrame, title: str = "Metrics with confidence intervals"
                   ) -> go.Figure:
    """Grouped bars with error bars: one group per metric, one bar per model, each bar's
    whisker spanning its confidence interval.

    Args:
        frame (pandas.DataFrame): Long format with ``model``, ``metric``, ``value``, ``low``
            and ``high`` (e.g. :func:`recsys_core.services.evaluation.confidence_table`).
        title (str): Figure title. (default: :obj:`"Metrics with confidence intervals"`)
    """
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    for j, model in enumerate(pd.unique(frame["model"])):
        part = frame[frame["model"] == model]
        value = part["value"].to_numpy(dtype=float)
        fig.add_trace(go.Bar(
            name=plot_text(model),
            x=[plot_text(m) for m in part["metric"]],
            y=value,
            error_y=dict(type="data", symmetric=False,
                         array=part["high"].to_numpy(dtype=float) - value,
                         arrayminus=value - part["low"].to_numpy(dtype=float)),
            customdata=np.stack([part["low"].to_numpy(dtype=float),
                                 part["high"].to_numpy(dtype=float)], axis=1),
            hovertemplate="%{x}: %{y:.4f} [%{customdata[0]:.4f}, %{customdata[1]:.4f}]",
            marker_color=palette[j % len(palette)],
        ))
    return compact_layout(fig, barmode="group", title=plot_text(title), height=360,
                          legend=dict(orientation="h", y=-0.2))


def paired_difference_fig(frame: pd.DataFrame, label_a: str, label_b: str) -> go.Figure:
    """The difference ``A - B`` of every metric with its interval, as points with whiskers
    around a zero line (an interval that crosses zero is no evidence of a difference).

    Args:
        frame (pandas.DataFrame): :func:`recsys_core.significance.paired_tests` output
            (``metric``, ``difference``, ``low``, ``high``, ``p_value``).
        label_a (str): Model A's name.
        label_b (str): Model B's name.
    """
    diff = frame["difference"].to_numpy(dtype=float)
    fig = go.Figure(go.Scatter(
        x=diff, y=[plot_text(m) for m in frame["metric"]], mode="markers",
        marker=dict(size=10, color="#636efa"),
        error_x=dict(type="data", symmetric=False,
                     array=frame["high"].to_numpy(dtype=float) - diff,
                     arrayminus=diff - frame["low"].to_numpy(dtype=float)),
        customdata=frame["p_value"].to_numpy(dtype=float),
        hovertemplate="%{y}: %{x:+.4f} (p = %{customdata:.3g})<extra></extra>",
    ))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig.update_layout(
        title=f"{plot_text(label_a, 40)} minus {plot_text(label_b, 40)}",
        xaxis_title="difference of the per-user means", height=300,
        margin=dict(t=50, b=40, l=80, r=10), showlegend=False)
    return fig
