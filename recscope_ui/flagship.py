"""Streamlit sections the Train and Metrics pages share about the flagship's parts: the
validation decomposition of a trained run (:func:`recsys_core.views.flagship.flagship_parts`)
and its ablation variants, retrained in the background
(:func:`recsys_core.services.plans.ablation_plan`)."""

from __future__ import annotations

import streamlit as st

from recscope_ui import ui
from recsys_core.services.evaluation import HEADLINE_K
from recsys_core.services.fitting import training_target
from recsys_core.services.jobs import TrainingJob
from recsys_core.services.plans import ablation_plan
from recsys_core.services.workspace import Workspace
from recsys_core.views.flagship import (
    ablation_comparison_fig,
    ablation_table,
    flagship_parts,
    flagship_parts_fig,
    selection_rule,
    variant_runs,
)


def parts_section(run, key: str) -> bool:
    """Table, bar chart and CSV of the run's validation NDCG as each part is added.

    Args:
        run (Run): A run of the session.
        key (str): Prefix of the widget keys (unique per page).

    Returns:
        bool: Whether anything was drawn (``False`` for models other than the flagship).
    """
    parts = flagship_parts(run.model)
    if parts.empty:
        return False
    st.caption(
        f"Validation NDCG of **{ui.md(run.run_id)}** as its score parts are added (read from "
        f"the run, nothing retrained). {selection_rule(run.model)}"
    )
    number = st.column_config.NumberColumn(format="%.4f")
    st.dataframe(
        parts,
        hide_index=True,
        column_config={parts.columns[1]: number, "gain": number,
                       "gain %": st.column_config.NumberColumn(format="%+.1f%%")},
    )
    st.plotly_chart(flagship_parts_fig(parts), key=f"{key}-fig")
    ui.download_csv("Download the decomposition (CSV)", parts, "flagship_parts.csv",
                    key=f"{key}-csv")
    return True


def start_ablations(ws: Workspace, run) -> TrainingJob:
    """Retrain ``run``'s settings with each part of the flagship switched off in turn, one
    variant after the other, in the session's background job."""
    plan, weights = ablation_plan(run, ws.dataset)
    labels = [step[3]["label"] for step in plan]
    job = TrainingJob(
        training_target(ws, plan, ui.text_encoder, weights),
        f"ablations of {run.run_id}: " + ", ".join(labels),
        meta={"plan": labels, "ablation_of": run.run_id},
    )
    return ws.start_job(job)


def contributions_section(ws: Workspace, run, key: str) -> None:
    """A button that retrains the run's ablation variants, their progress, and the table,
    bar chart and CSV comparing them with the full run.

    Args:
        ws (Workspace): The session's workspace.
        run (Run): The full flagship run.
        key (str): Prefix of the widget keys (unique per page).
    """
    plan, _ = ablation_plan(run, ws.dataset)
    what = ", ".join(step[3]["label"] for step in plan)
    st.caption(
        f"Retrains the settings of **{ui.md(run.run_id)}** on the same data and split with "
        "one part switched off at a time, each as its own run (never made active), and "
        "compares their held-out metrics with the full run. "
        + (f"Variants: {ui.md(what)}." if plan else "No part of this run can be switched off.")
    )
    running = ws.job is not None and ws.job.meta.get("ablation_of") == run.run_id
    if st.button(
        f"Train the {len(plan)} variants",
        key=f"{key}-start",
        disabled=ws.training or not plan,
        help="Runs in the background, one variant after the other: switch pages freely.",
    ):
        start_ablations(ws, run)
        st.rerun()
    if running:
        ui.training_monitor()
    elif ws.training:
        st.caption("One job at a time: wait for the current one or stop it on the Train page.")
    if not variant_runs(ws.runs, run):
        return
    table = ablation_table(ws, run, HEADLINE_K)
    number = st.column_config.NumberColumn(format="%.4f")
    st.dataframe(
        table,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%+.1f%%") if "%" in c
                       else number for c in table.columns if c not in ("variant", "run")},
    )
    st.plotly_chart(ablation_comparison_fig(table), key=f"{key}-fig")
    ui.download_csv("Download the comparison (CSV)", table, "flagship_ablations.csv",
                    key=f"{key}-csv")
