"""Metrics page: trained models side by side on the held-out split."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from recscope_ui import flagship, ui
from recsys_core import viz
from recsys_core.services.evaluation import HEADLINE_K, evaluate_model
from recsys_core.views.flagship import flagship_parts, flagship_run
from recsys_core.views.metrics import COVERAGE_CAPTION, POPULARITY_BIAS_CAPTION, metrics_table

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
        f"the {len(ws.test):,} held-out interactions. **Warm** metrics rank only items with "
        "training interactions against the test interactions with them; **cold** metrics "
        "rank only items with none (5% of items were held out entirely) against theirs; "
        "**long tail** ranks only items outside the most popular ones that hold 80% of "
        "training interactions."
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
        results[run_id] = (run.train_seconds, run.cache["metrics"])

    table = metrics_table(results, K)
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

    run = flagship_run(ws.runs)
    if run is not None and not flagship_parts(run.model).empty:
        st.subheader("The flagship, part by part")
        flagship.parts_section(run, "m-parts")
    if run is not None:
        st.subheader("What each part contributes (retrained)")
        flagship.contributions_section(ws, run, "m-ablate")

    at_k = pd.concat(
        [m["at_k"].assign(model=run_id) for run_id, (_, m) in results.items()], ignore_index=True
    )
    st.subheader("Recall and NDCG over K")
    st.caption("Every item ranked against every held-out interaction (warm and cold together).")
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
                f"warm recall@{K}",
                f"cold recall@{K}",
                f"long-tail recall@{K}",
                f"light-user recall@{K}",
            ]
        ]
        st.plotly_chart(
            viz.metric_bars_fig(slices, list(slices.columns[1:]), "Recall by slice"), key="m-slices"
        )
    with right:
        beyond = table[["model", "coverage", "popularity percentile"]]
        st.plotly_chart(
            viz.metric_bars_fig(
                beyond,
                ["coverage", "popularity percentile"],
                "Catalogue coverage and popularity bias",
            ),
            key="m-beyond",
        )
        st.caption(f"{COVERAGE_CAPTION} {POPULARITY_BIAS_CAPTION}")

    st.subheader("Per-user distribution")
    st.caption("Every item ranked against every held-out interaction (warm and cold together).")
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


ui.run_page(render)
