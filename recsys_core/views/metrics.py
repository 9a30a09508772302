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


#: The Metrics page's split choices, in words.
SPLIT_LABELS = {
    "random": "Random per user (the workspace's split; models as trained)",
    "temporal": "Temporal leave-last-out (each user's latest interaction; models refitted)",
    "time-cut": "Global time cut (the latest interactions; models refitted)",
}
CI_CAPTION = (
    "Each metric is a mean over the test users. Its {confidence:.0%} interval comes from a "
    "per-user bootstrap: the test users are resampled with replacement {resamples:,} times and "
    "the interval holds the central {confidence:.0%} of the resampled means. It says how much "
    "the number would move on another sample of users like these; intervals that overlap "
    "are no evidence of a difference. Every item is ranked (warm and cold together)."
)
PAIRED_CAPTION = (
    "Both models are scored on the same test users, so the test works on each user's "
    "difference: the paired bootstrap resamples users and asks how often a mean difference "
    "as far from the observed one as it is from zero turns up; Wilcoxon's signed-rank test "
    "ranks the per-user differences. A p-value below 0.05 means a difference this large is "
    "unlikely if the two models were equally good on such users. The interval is the paired "
    "bootstrap's, for the difference of the means."
)


def ci_table(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The Metrics page's table of metrics with intervals.

    Args:
        frame (pandas.DataFrame): :func:`recsys_core.services.evaluation.confidence_table`.
        k (int): The cut-off.

    Returns:
        pandas.DataFrame: ``model``, ``metric`` (``"ndcg@K"``), ``value``, ``low``, ``high``,
        ``±`` (half the interval) and ``test users``.
    """
    out = pd.DataFrame({
        "model": frame["model"].astype(str),
        "metric": [f"{m}@{k}" for m in frame["metric"]],
        "value": frame["value"].astype(float),
        "low": frame["low"].astype(float),
        "high": frame["high"].astype(float),
    })
    out["±"] = (out["high"] - out["low"]) / 2.0
    out["test users"] = frame["n_users"].astype(int).to_numpy()
    return out


def paired_table(tests: pd.DataFrame, k: int, label_a: str, label_b: str,
                 alpha: float = 0.05) -> pd.DataFrame:
    """The Metrics page's paired-test table: one row per metric.

    Args:
        tests (pandas.DataFrame): :func:`recsys_core.significance.paired_tests` output.
        k (int): The cut-off.
        label_a (str): Model A's name.
        label_b (str): Model B's name.
        alpha (float): Level under which a p-value counts as significant.
            (default: :obj:`0.05`)
    """
    return pd.DataFrame({
        "metric": [f"{m}@{k}" for m in tests["metric"]],
        label_a: tests["mean_a"].astype(float),
        label_b: tests["mean_b"].astype(float),
        "difference": tests["difference"].astype(float),
        "low": tests["low"].astype(float),
        "high": tests["high"].astype(float),
        "p-value": tests["p_value"].astype(float),
        f"significant at {alpha:g}": tests["p_value"].astype(float) < alpha,
        "users": tests["n_users"].astype(int),
        "method": tests["method"].astype(str),
    })


def paired_verdict(tests: pd.DataFrame, label_a: str, label_b: str, metric: str, k: int,
                   alpha: float = 0.05) -> str:
    """One sentence on the paired test of ``metric``, e.g. for a caption (plain text)."""
    row = tests.set_index("metric").loc[metric]
    n = int(row["n_users"])
    dropped = int(row["n_dropped_a"]) + int(row["n_dropped_b"])
    left_out = f"; {dropped} user(s) scored by only one model left out" if dropped else ""
    if row["p_value"] < alpha:
        better = label_a if row["difference"] > 0 else label_b
        head = f"{better} is better on {metric}@{k}"
    else:
        head = f"No significant difference on {metric}@{k}"
    return (f"{head}: {row['mean_a']:.4f} vs {row['mean_b']:.4f}, difference "
            f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}], "
            f"p = {row['p_value']:.3g} ({row['method']}, {n:,} users{left_out}).")


__all__ = ["CI_CAPTION", "COVERAGE_CAPTION", "PAIRED_CAPTION", "POPULARITY_BIAS_CAPTION",
           "SPLIT_LABELS", "ci_table", "headline", "metrics_table", "paired_table",
           "paired_verdict"]
