"""Metrics page: trained models side by side on the held-out split, with confidence intervals
and a paired test."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from recscope_ui import flagship, ui
from recsys_core import viz
from recsys_core.errors import RecScopeError
from recsys_core.services.evaluation import (
    HEADLINE_K,
    compare_models,
    confidence_table,
    refit_on_split_target,
    run_metrics,
    split_evaluation,
)
from recsys_core.services.jobs import TrainingJob
from recsys_core.significance import METRICS, PAIRED_METHODS
from recsys_core.splits import DEFAULT_TIME_CUT_QUANTILE, SPLIT_METHODS
from recsys_core.views.flagship import flagship_parts, flagship_run
from recsys_core.views.metrics import (
    CI_CAPTION,
    COVERAGE_CAPTION,
    PAIRED_CAPTION,
    POPULARITY_BIAS_CAPTION,
    SPLIT_LABELS,
    ci_table,
    metrics_table,
    paired_table,
    paired_verdict,
)
from recsys_core.viz.figures import metrics_ci_fig, paired_difference_fig

CONFIDENCE = 0.95
RESAMPLES = 1000


def render() -> None:
    st.title("Metrics")
    ui.guarded(_body)


def _body() -> None:
    ws = ui.workspace()
    if not len(ws.runs):
        ui.require_model(ws)
        return
    left, middle, right = st.columns([3, 1, 2])
    split = left.selectbox("Split", SPLIT_METHODS, format_func=SPLIT_LABELS.get, key="m-split")
    K = int(middle.number_input("K", min_value=1, max_value=500, value=HEADLINE_K, step=1,
                                key="m-k", help="Length of each user's list for the @K metrics"))
    quantile = DEFAULT_TIME_CUT_QUANTILE
    if split == "time-cut":
        quantile = right.slider("Time cut (share of interactions before it)", 0.5, 0.95,
                                DEFAULT_TIME_CUT_QUANTILE, 0.05, key="m-quantile")
    ids = ws.runs.ids()
    chosen = st.multiselect("Models", ids, default=ids, key="m-runs")
    if not chosen:
        st.info("Pick at least one model.")
        return
    if split == "random":
        test = ws.test
        st.caption(
            f"Every model ranks all items it has not seen in training for each of the "
            f"{test['user_id'].nunique():,} test users; metrics compare that ranking with "
            f"the {len(test):,} held-out interactions. **Warm** metrics rank only items with "
            "training interactions against the test interactions with them; **cold** metrics "
            "rank only items with none (5% of items were held out entirely) against theirs; "
            "**long tail** ranks only items outside the most popular ones that hold 80% of "
            "training interactions."
        )
        results = {}
        for run_id in chosen:
            run = ws.runs.get(run_id)
            with st.spinner(f"Evaluating {run_id} at K = {K}…"):
                results[run_id] = (run.train_seconds, run_metrics(run, ws, K))
    else:
        results = _split_results(ws, chosen, split, quantile, K)
        if results is None:
            return

    table = metrics_table(results, K)
    st.subheader(f"Summary at K = {K}")
    ui.number_table(
        table, [c for c in table.columns if c not in ("model", "train seconds", "test users")]
    )
    ui.download_csv("Download summary (CSV)", table, "metrics_summary.csv", key="m-dl-summary")

    st.subheader("Settings chosen on validation")
    st.caption(
        "Which settings each model chose on its validation split, carved from the training "
        "interactions (the test split is never used to choose). Peers are tuned on the same "
        "split as the flagship, so the comparison above is fair."
    )
    choices = ws.runs.validation_choices()
    ui.number_table(choices, [f"valid ndcg@{HEADLINE_K}"])

    run = flagship_run(ws.runs)
    if split == "random" and run is not None and not flagship_parts(run.model).empty:
        st.subheader("The flagship, part by part")
        flagship.parts_section(run, "m-parts")
    if split == "random" and run is not None:
        st.subheader("What each part contributes (retrained)")
        flagship.contributions_section(ws, run, "m-ablate")

    _uncertainty_section(results, K)

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


def _split_results(ws, chosen: list[str], split: str, quantile: float, k: int):
    """The chosen models refitted on a time-aware split, evaluated at ``k``; ``None`` (after
    offering the refit) while they are not all ready."""
    done = split_evaluation(ws, split, quantile)
    missing = [r for r in chosen if done is None or r not in done.models]
    if not missing:
        st.caption(
            f"**{ui.md(done.description)}**: {len(done.workspace.train):,} training and "
            f"{len(done.workspace.test):,} test interactions of "
            f"{done.workspace.test['user_id'].nunique():,} users. Each model was refitted with "
            "its settings on this split's training part (no new tuning)."
        )
        results = {}
        for run_id in chosen:
            with st.spinner(f"Evaluating {run_id} at K = {k}…"):
                results[run_id] = (done.seconds[run_id], done.metrics(run_id, k))
        return results
    running = ws.job is not None and ws.job.meta.get("split") == (split, quantile)
    st.info(
        "The models were trained on the workspace's random split, so their test users' "
        "later interactions are in their training data. To evaluate on this split, each "
        "chosen model is refitted with its own settings on the split's training part."
    )
    if st.button(
        f"Refit {len(chosen)} model(s) on this split",
        key="m-refit",
        disabled=ws.training,
        help="Runs in the background; the session's runs stay as they are.",
    ):
        try:
            target = refit_on_split_target(ws, chosen, split, quantile=quantile,
                                           encoder_factory=ui.text_encoder)
        except RecScopeError as exc:
            st.error(str(exc))
            return None
        ws.start_job(TrainingJob(target, f"refit on the {split} split",
                                 meta={"plan": list(chosen), "split": (split, quantile)}))
        st.rerun()
    if running:
        ui.training_monitor()
    elif ws.training:
        st.caption("One job at a time: wait for the current one or stop it on the Train page.")
    return None


def _uncertainty_section(results: dict, k: int) -> None:
    """Confidence intervals of every model and the paired test between two of them."""
    st.subheader(f"Confidence intervals at K = {k}")
    st.caption(CI_CAPTION.format(confidence=CONFIDENCE, resamples=RESAMPLES))
    evaluated = {run_id: m for run_id, (_, m) in results.items()}
    intervals = ci_table(confidence_table(evaluated, CONFIDENCE, RESAMPLES), k)
    ui.number_table(intervals, ["value", "low", "high", "±"])
    st.plotly_chart(metrics_ci_fig(intervals,
                                   f"Metrics@{k} with {CONFIDENCE:.0%} intervals"),
                    key="m-ci-fig")
    ui.download_csv("Download intervals (CSV)", intervals, "metrics_intervals.csv",
                    key="m-dl-ci")

    st.subheader("Paired test between two models")
    ids = list(evaluated)
    if len(ids) < 2:
        st.info("Pick two models above to compare them with a paired test.")
        return
    st.caption(PAIRED_CAPTION)
    a_col, b_col, method_col = st.columns(3)
    label_a = a_col.selectbox("Model A", ids, index=0, key="m-pair-a")
    label_b = b_col.selectbox("Model B", ids, index=1, key="m-pair-b")
    method = method_col.radio("Test", PAIRED_METHODS, horizontal=True, key="m-pair-method",
                              format_func={"bootstrap": "paired bootstrap",
                                           "wilcoxon": "Wilcoxon signed-rank"}.get)
    if label_a == label_b:
        st.info("Pick two different models.")
        return
    tests = compare_models(evaluated[label_a], evaluated[label_b], method=method,
                           confidence=CONFIDENCE, n_resamples=RESAMPLES)
    metric = "ndcg" if "ndcg" in set(tests["metric"]) else METRICS[0]
    st.markdown(ui.md(paired_verdict(tests, label_a, label_b, metric, k)))
    table = paired_table(tests, k, label_a, label_b)
    ui.number_table(table, [label_a, label_b, "difference", "low", "high"],
                    column_config={"p-value": st.column_config.NumberColumn(format="%.4g")})
    st.plotly_chart(paired_difference_fig(tests, label_a, label_b), key="m-pair-fig")
    ui.download_csv("Download paired test (CSV)", table, "metrics_paired_test.csv",
                    key="m-dl-pair")


ui.run_page(render)
