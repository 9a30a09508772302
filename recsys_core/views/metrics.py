"""The Metrics page's summary table and the sidebar's one-line summary of a model."""

from __future__ import annotations

from typing import Any

import pandas as pd

POPULARITY_BIAS_CAPTION = (
    "Popularity bias: the mean popularity percentile of the recommended items (0.5: as "
    "popular as a random catalogue item; 1: always the most popular; see "
    "recsys_core.metrics.popularity_bias)."
)
COVERAGE_CAPTION = "Coverage: share of the catalogue appearing in any top-K list."


def metrics_table(results: dict[str, tuple[float, dict[str, Any]]], k: int) -> pd.DataFrame:
    """One row per model: warm-item and cold-item metrics side by side, then the slices and
    beyond-accuracy measures.

    Warm metrics rank only items with training interactions against the test interactions
    with those items; cold metrics rank only items without any against theirs. (Ranking the
    whole catalogue against every test interaction would mix the two: a model that cannot
    score cold items loses their test interactions in a comparison it never entered.)

    Args:
        results (dict): Run id -> ``(train seconds, evaluate_model output)``.
        k (int): The cut-off the metrics were computed at.
    """
    rows = []
    for run_id, (seconds, m) in results.items():
        s = m["summary"]
        warm = m.get("warm_items") or {}
        cold = m.get("cold_items") or {}
        light = (s.get("slices") or {}).get("light_users") or {}
        rows.append({
            "model": run_id,
            f"warm recall@{k}": warm.get("recall"),
            f"warm ndcg@{k}": warm.get("ndcg"),
            f"cold recall@{k}": cold.get("recall"),
            f"cold ndcg@{k}": cold.get("ndcg"),
            f"warm precision@{k}": warm.get("precision"),
            "warm hit rate": warm.get("hit_rate"),
            "warm mrr": warm.get("mrr"),
            f"long-tail recall@{k}": (m.get("long_tail") or {}).get("recall"),
            f"light-user recall@{k}": light.get("recall"),
            "coverage": s.get("catalog_coverage"),
            "novelty": s.get("novelty"),
            "popularity percentile": s.get("popularity_bias"),
            "test users": s.get("n_users"),
            "train seconds": round(float(seconds), 2),
        })
    return pd.DataFrame(rows)


def headline(metrics: dict[str, Any] | None, k: int) -> str:
    """The sidebar's summary of a model: warm and cold recall@K, each shown only when known
    (``""`` before evaluation).

    Args:
        metrics (dict, optional): :func:`~recsys_core.services.evaluation.evaluate_model` output.
        k (int): The cut-off.
    """
    parts = []
    for name in ("warm", "cold"):
        value = ((metrics or {}).get(f"{name}_items") or {}).get("recall")
        if value is not None:
            parts.append(f"{name} recall@{k} {value:.3f}")
    return " · ".join(parts)


__all__ = ["COVERAGE_CAPTION", "POPULARITY_BIAS_CAPTION", "headline", "metrics_table"]
