"""Metrics page: trained models side by side on the held-out split."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from recscope_ui import ui
from recsys_core import viz
from recsys_core.session import HEADLINE_K, evaluate_model

K = HEADLINE_K


def render() -> None:
    st.title("Metrics")
    ui.guarded(_body)


def _body() -> None:
    ws = ui.workspace()
    if not len(ws.runs):
        ui.require_model(ws)
        return
    st.caption(
        f"Every model ranks all items it has not seen in training for each of the "
        f"{ws.test['user_id'].nunique():,} test users; metrics compare that ranking with "
        f"the {len(ws.test):,} held-out interactions. **Cold items** ranks only items "
        "with no training interaction (5% of items were held out entirely), **long "
        "tail** only items outside the most popular ones that hold 80% of training "
        "interactions."
    )
    ids = ws.runs.ids()
    chosen = st.multiselect("Models", ids, default=ids, key="m-runs")
    if not chosen:
        st.info("Pick at least one model.")
        return
    results = {}
    for run_id in chosen:
        run = ws.runs.get(run_id)
        if "metrics" not in run.cache or run.cache["metrics"] is None:
            with st.spinner(f"Evaluating {run_id}…"):
                run.cache["metrics"] = evaluate_model(run.model, ws)
        results[run_id] = (run, run.cache["metrics"])

    table = _table(results)
    st.subheader(f"Summary at K = {K}")
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.4f")
            for c in table.columns
            if c not in ("model", "train seconds", "test users")
        },
    )
    ui.download_csv("Download summary (CSV)", table, "metrics_summary.csv", key="m-dl-summary")

    st.subheader("Settings chosen on validation")
    st.caption(
        "Which settings each model chose on its validation split, carved from the training "
        "interactions (the test split is never used to choose). Peers are tuned on the same "
        "split as the flagship, so the comparison above is fair."
    )
    choices = ws.runs.validation_choices()
    st.dataframe(
        choices,
        hide_index=True,
        column_config={f"valid ndcg@{K}": st.column_config.NumberColumn(format="%.4f")},
    )

    at_k = pd.concat(
        [m["at_k"].assign(model=run_id) for run_id, (_, m) in results.items()], ignore_index=True
    )
    st.subheader("Recall and NDCG over K")
    st.plotly_chart(viz.metrics_at_k_fig(at_k, ("recall", "ndcg")), key="m-at-k")
    ui.download_csv(
        "Download metrics@K (CSV)",
        at_k[["model", "k", "metric", "value"]],
        "metrics_at_k.csv",
        key="m-dl-atk",
    )

    left, right = st.columns(2)
    with left:
        slices = table[
            [
                "model",
                f"recall@{K}",
                f"cold recall@{K}",
                f"long-tail recall@{K}",
                f"light-user recall@{K}",
            ]
        ]
        st.plotly_chart(
            viz.metric_bars_fig(slices, list(slices.columns[1:]), "Recall by slice"), key="m-slices"
        )
    with right:
        beyond = table[["model", "coverage", "popularity bias"]]
        st.plotly_chart(
            viz.metric_bars_fig(
                beyond, ["coverage", "popularity bias"], "Catalogue coverage and popularity bias"
            ),
            key="m-beyond",
        )
        st.caption(
            "Coverage: share of the catalogue appearing in any top-K list. Popularity "
            "bias: how much more popular the recommended items are than the catalogue "
            "average (see recsys_core.metrics.popularity_bias)."
        )

    st.subheader("Per-user distribution")
    metric = st.selectbox(
        "Metric",
        ["ndcg", "recall", "precision", "reciprocal_rank", "average_precision"],
        key="m-per-user",
    )
    values = {run_id: m["per_user"][metric].to_numpy() for run_id, (_, m) in results.items()}
    st.plotly_chart(viz.per_user_histogram_fig(values, f"{metric}@{K}"), key="m-hist")
    per_user = pd.concat(
        [m["per_user"].assign(model=run_id) for run_id, (_, m) in results.items()],
        ignore_index=True,
    )
    ui.download_csv(
        "Download per-user metrics (CSV)", per_user, "metrics_per_user.csv", key="m-dl-per-user"
    )


def _table(results) -> pd.DataFrame:
    rows = []
    for run_id, (run, m) in results.items():
        s = m["summary"]
        light = (s.get("slices") or {}).get("light_users") or {}
        rows.append(
            {
                "model": run_id,
                f"recall@{K}": s.get("recall"),
                f"ndcg@{K}": s.get("ndcg"),
                f"precision@{K}": s.get("precision"),
                "hit rate": s.get("hit_rate"),
                "mrr": s.get("mrr"),
                f"cold recall@{K}": m["cold_items"].get("recall"),
                f"cold ndcg@{K}": m["cold_items"].get("ndcg"),
                f"long-tail recall@{K}": m["long_tail"].get("recall"),
                f"light-user recall@{K}": light.get("recall"),
                "coverage": s.get("catalog_coverage"),
                "novelty": s.get("novelty"),
                "popularity bias": s.get("popularity_bias"),
                "test users": s.get("n_users"),
                "train seconds": round(run.train_seconds, 2),
            }
        )
    return pd.DataFrame(rows)


ui.run_page(render)
