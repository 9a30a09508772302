"""What each part of the flagship contributes: its validation decomposition (from one trained
run, nothing retrained) and the comparison of a run with its ablation variants (each part
switched off and retrained, see :mod:`recsys_core.models.ablations`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..models.ablations import ABLATIONS_BY_KEY

#: The flagship's registry name.
FLAGSHIP = "gnn-llm"
#: Rows of :func:`flagship_parts`, in the order the scores are added up.
PART_LEARNED, PART_PRIOR, PART_FILTER, PART_ITEM_ITEM = (
    "learned embeddings", "+ popularity prior", "+ graph filter", "+ item-item path")


def is_flagship(model: Any) -> bool:
    """Whether ``model`` is a flagship (``gnn-llm``) instance."""
    return getattr(model, "name", None) == FLAGSHIP


def flagship_run(runs) -> Any:
    """The flagship run the pages decompose: the active run when it is a flagship (the run
    it is a variant of, when it is an ablation variant still in the session), else the most
    recent flagship run that is no variant; ``None`` without one.

    Args:
        runs (RunRegistry): The session's runs.
    """
    active = runs.active
    if active is not None and is_flagship(active.model):
        parent = getattr(active, "meta", {}).get("ablation_of")
        return runs.get(parent) if parent in runs else active
    for run in reversed(list(runs)):
        if is_flagship(run.model) and not getattr(run, "meta", {}).get("ablation_of"):
            return run
    return None


def selection_rule(model: Any) -> str:
    """The rule that switches the flagship's closed-form parts on, in words."""
    margin = float(getattr(model, "selection_margin", 0.01))
    k = _eval_k(model)
    return (f"Each closed-form part switches on only when it lifts validation NDCG@{k} by at "
            f"least {margin:.0%} (relative) over the score without it; the validation split "
            "is carved from the training interactions, never the test split. Each kind of "
            "side information in the graph attention (an attribute type, user-user edges) "
            "stays only where removing it would lower validation NDCG.")


def flagship_parts(model: Any) -> pd.DataFrame:
    """The flagship's validation NDCG@K as its score parts are added one by one.

    Rows: ``learned embeddings`` (graph attention alone), ``+ popularity prior``,
    ``+ graph filter`` (the graph network: the learned score, the prior and the closed-form
    graph filter) and ``+ item-item path`` (everything). Read from
    ``model.train_result.selected`` (nothing is recomputed); a part that was disabled in the
    model's settings keeps its row, marked off, with the score of the row above.

    Args:
        model (GNNLLMRecommender): A fitted flagship.

    Returns:
        pandas.DataFrame: ``part``, ``valid ndcg@K``, ``gain`` (absolute, over the row
        above), ``gain %`` (relative, in percent), ``on`` (bool) and ``settings`` (what was
        chosen, in words). Empty when ``model`` is not a fitted flagship.
    """
    from ..models.graph_filter import describe_filter_choice, describe_relations
    from ..models.item_item import describe_choice
    from ..models.popularity_prior import describe_prior_choice

    k = _eval_k(model)
    column = f"valid ndcg@{k}"
    columns = ["part", column, "gain", "gain %", "on", "settings"]
    result = getattr(model, "train_result", None)
    if not is_flagship(model) or result is None:
        return pd.DataFrame(columns=columns)
    selected = getattr(result, "selected", None) or {}
    validation = selected.get("validation") or {}
    learned = _number(validation.get("valid_ndcg_learned", result.best_valid_ndcg))
    prior = _number(validation.get("valid_ndcg_prior", learned))  # older runs: no prior
    graph = _number(validation.get("valid_ndcg_graph", prior))
    full = _number(validation.get("valid_ndcg", graph))
    learned_settings = f"{result.best_epoch} epochs (early stopping)"
    if result.refit_epochs:
        learned_settings += f", refit for {result.refit_epochs} on all interactions"
    if selected.get("relations"):
        learned_settings += "; " + describe_relations(selected["relations"])
    filter_summary, item_summary = selected.get("graph_filter"), selected.get("item_item")
    prior_summary = selected.get("popularity_prior")
    rows = [
        (PART_LEARNED, learned, True, learned_settings),
        (PART_PRIOR, prior, _is_on(prior_summary),
         describe_prior_choice(prior_summary) if prior_summary
         else "popularity prior not chosen (switched off in the settings, or a run saved "
              "before it existed)"),
        (PART_FILTER, graph, _is_on(filter_summary),
         describe_filter_choice(filter_summary) if filter_summary
         else "graph filter switched off in the settings (graph_filter=False)"),
        (PART_ITEM_ITEM, full, _is_on(item_summary),
         describe_choice(item_summary) if item_summary
         else "item-item path switched off in the settings (item_item=False)"),
    ]
    frame = pd.DataFrame(
        [{"part": part, column: ndcg, "on": on, "settings": settings}
         for part, ndcg, on, settings in rows])
    previous = frame[column].shift(1)
    frame["gain"] = frame[column] - previous
    frame["gain %"] = 100.0 * frame["gain"] / previous.where(previous > 0)
    return frame[columns]


def flagship_parts_fig(parts: pd.DataFrame, title: str = "Validation NDCG, part by part"
                       ) -> go.Figure:
    """Bars of :func:`flagship_parts`: the validation NDCG after each part, labelled with
    the gain of the step; parts that are off are grey.

    Args:
        parts (pandas.DataFrame): Output of :func:`flagship_parts`.
        title (str): Figure title. (default: :obj:`"Validation NDCG, part by part"`)
    """
    fig = go.Figure()
    if parts.empty:
        fig.update_layout(title=title, height=320)
        return fig
    column = parts.columns[1]
    labels = [
        "" if not np.isfinite(_number(gain))
        else f"{gain:+.4f}" + (f" ({pct:+.1f}%)" if np.isfinite(_number(pct)) else "")
        for gain, pct in zip(parts["gain"], parts["gain %"], strict=True)
    ]
    fig.add_trace(go.Bar(
        x=list(parts["part"]), y=list(parts[column]), text=labels, textposition="outside",
        marker_color=["#1f77b4" if on else "#b0b0b0" for on in parts["on"]],
        hovertemplate="%{x}<br>" + column + " %{y:.4f}<extra></extra>",
    ))
    finite = parts[column][np.isfinite(parts[column].astype(float))]
    top = float(finite.max()) if len(finite) else 1.0
    fig.update_layout(title=title, height=340, yaxis_title=column,
                      yaxis_range=[0, top * 1.15 if top > 0 else 1.0],
                      margin=dict(t=50, b=40, l=60, r=10), showlegend=False)
    return fig


def variant_runs(runs, full) -> list:
    """The ablation variants of run ``full`` in the session (the latest of each), in the
    order of :data:`~recsys_core.models.ablations.ABLATIONS`.

    Args:
        runs (RunRegistry): The session's runs.
        full (Run): The run the variants ablate.
    """
    latest = {}
    for run in runs:
        meta = getattr(run, "meta", {}) or {}
        if meta.get("ablation_of") == full.run_id:
            latest[meta.get("ablation")] = run
    order = list(ABLATIONS_BY_KEY)
    return [latest[key] for key in sorted(latest, key=lambda k: (
        order.index(k) if k in order else len(order), str(k)))]


def ablation_table(ws, full, k: int = 20) -> pd.DataFrame:
    """:func:`ablation_comparison` of run ``full`` and its variants in workspace ``ws``; runs
    not evaluated yet are evaluated on the held-out split first (cached with the run, as the
    Metrics page does).

    Args:
        ws (Workspace): The session's workspace.
        full (Run): The full run.
        k (int): The cut-off of :func:`recsys_core.services.evaluation.evaluate_model`'s headline
            metrics. (default: :obj:`20`)
    """
    from ..services.evaluation import evaluate_model

    variants = variant_runs(ws.runs, full)
    for run in [full, *variants]:
        if run.cache.get("metrics") is None:
            run.cache["metrics"] = evaluate_model(run.model, ws)
    return ablation_comparison(
        {"run": full.run_id, "metrics": full.cache["metrics"]},
        [{"run": r.run_id, "ablation": r.meta.get("ablation"), "metrics": r.cache["metrics"]}
         for r in variants], k)


def ablation_comparison(full: Mapping[str, Any], variants: list[Mapping[str, Any]],
                        k: int = 20) -> pd.DataFrame:
    """A run against its ablation variants on the held-out split's headline metrics.

    Args:
        full (mapping): The full run: ``run`` (its id) and ``metrics``
            (:func:`recsys_core.services.evaluation.evaluate_model` output).
        variants (list of mapping): Per variant: ``run``, ``ablation`` (a key of
            :data:`~recsys_core.models.ablations.ABLATIONS_BY_KEY`) and ``metrics``.
        k (int): The cut-off the metrics were computed at. (default: :obj:`20`)

    Returns:
        pandas.DataFrame: One row per run, the full run first: ``variant`` (in words),
        ``run``, warm recall / NDCG and cold recall at ``k``, and for each its change
        against the full run in percent (``Δ warm recall@k %``; negative: the part that was
        switched off helps; empty where either run has no figure, e.g. no cold items).
        Cold items show what text and attributes are for: on the ablation benchmark's
        cold-start split they pay where, on warm items, they hardly move the figures.
    """
    metrics = {"warm recall": ("warm_items", "recall"), "warm ndcg": ("warm_items", "ndcg"),
               "cold recall": ("cold_items", "recall")}

    def row(variant: str, run: Mapping[str, Any]) -> dict[str, Any]:
        values = run.get("metrics") or {}
        out: dict[str, Any] = {"variant": variant, "run": run["run"]}
        for name, (part, metric) in metrics.items():
            out[f"{name}@{k}"] = _number((values.get(part) or {}).get(metric))
        return out

    rows = [row(ABLATIONS_BY_KEY["full"].label, full)]
    for variant in variants:
        ablation = ABLATIONS_BY_KEY.get(variant.get("ablation"))
        rows.append(row(ablation.label if ablation else str(variant.get("ablation")), variant))
    frame = pd.DataFrame(rows)
    for name in metrics:
        column = f"{name}@{k}"
        base = frame[column].iloc[0]
        frame[f"Δ {column} %"] = (100.0 * (frame[column] - base) / base
                                  if np.isfinite(base) and base > 0 else np.nan)
    return frame


def ablation_comparison_fig(comparison: pd.DataFrame, title: str = "Each part switched off"
                            ) -> go.Figure:
    """Grouped bars of :func:`ablation_comparison`: warm recall and NDCG per variant, the full
    run first, and cold recall where the held-out split has cold items."""
    fig = go.Figure()
    columns = [c for c in comparison.columns if "%" not in c and (
        c.startswith("warm ") or (c.startswith("cold ") and comparison[c].notna().any()))]
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c")
    for j, column in enumerate(columns):
        fig.add_trace(go.Bar(
            name=column, x=list(comparison["variant"]), y=list(comparison[column]),
            marker_color=palette[j % len(palette)],
            hovertemplate="%{x}<br>" + column + " %{y:.4f}<extra></extra>",
        ))
    fig.update_layout(barmode="group", title=title, height=360,
                      margin=dict(t=50, b=40, l=60, r=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def _eval_k(model: Any) -> int:
    config = getattr(model, "train_config", None)
    return int(getattr(config, "eval_k", 20))


def _is_on(summary: Mapping[str, Any] | None) -> bool:
    return bool(summary) and float(summary.get("relative_weight", 0.0)) > 0


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


__all__ = ["FLAGSHIP", "PART_FILTER", "PART_ITEM_ITEM", "PART_LEARNED", "PART_PRIOR",
           "ablation_comparison", "ablation_comparison_fig", "ablation_table", "variant_runs",
           "flagship_parts", "flagship_parts_fig", "flagship_run", "is_flagship",
           "selection_rule"]
