"""Train page: choose a model and its hyper-parameters, watch training live, compare runs;
open saved runs (from the runs folder or an uploaded zip), download a run or its report."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from recscope_ui import flagship, navigation, ui
from recsys_core import viz
from recsys_core.device import describe_device, pick_device
from recsys_core.errors import RecScopeError
from recsys_core.models import DEFAULT_MODEL, available_models
from recsys_core.services.jobs import FAILED, STOPPED
from recsys_core.services.plans import model_defaults
from recsys_core.services.runs import (
    attach_test,
    export_run_zip,
    find_saved_runs,
    open_saved_run,
    run_info,
)
from recsys_core.views.flagship import flagship_parts

#: Largest zipped run the uploader takes (MB; the server-wide cap is in .streamlit/config.toml).
RUN_ZIP_LIMIT_MB = 200
#: Largest test-interactions file the uploader takes (MB).
TEST_LIMIT_MB = 100
#: Arguments the form never shows: data handed over by the app or file-system options.
HIDDEN = {
    "item_text_embeddings",
    "encoder",
    "template",
    "checkpoint_dir",
    "resume",
    "show_progress",
    "device",
}
#: Arguments shown first; the rest go under "Advanced".
PRIMARY = [
    "epochs",
    "time_limit",
    "embedding_dim",
    "num_layers",
    "conv",
    "heads",
    "lr",
    "loss",
    "num_negatives",
    "batch_size",
    "reg_lambda",
    "patience",
]
CHOICES = {"loss": ["bpr", "bce", "softmax"], "conv": ["gat", "gcn", "sage", "gin"]}
DESCRIPTIONS = {
    "gnn-llm": "Graph attention network over users, items and attribute nodes; items start from "
    "their all-MiniLM-L6-v2 text embedding, so cold items are recommendable. The "
    "flagship.",
    "lightgcn": "LightGCN: linear propagation of ID embeddings over the user-item graph.",
    "mf": "Matrix factorisation trained with BPR.",
    "ease": "EASE: closed-form item-item linear autoencoder (a very strong baseline).",
    "pop": "Most popular items (the floor every model must beat).",
    "text-knn": "Content only: cosine between a user's mean text embedding and each item's.",
}


def render() -> None:
    st.title("Train")
    ui.guarded(_body)


def _body() -> None:
    ui.show_flash()
    ws = ui.workspace()
    device = describe_device(pick_device())
    models = available_models()
    left, right = st.columns([2, 3])
    with left:
        st.subheader("New run")
        st.caption(f"Device: **{device}** (CUDA, then Apple MPS, then CPU).")
        default = models.index(DEFAULT_MODEL) if DEFAULT_MODEL in models else 0
        name = st.selectbox("Model", models, index=default, key="t-model")
        st.caption(DESCRIPTIONS.get(name, ""))
        params = _param_form(name)
        busy = ws.training
        if st.button(
            "Start training",
            type="primary",
            disabled=busy,
            key="t-start",
            help="Runs in the background: switch pages freely, it keeps going.",
        ):
            ui.start_training(ws, name, params)
            st.rerun()
        if busy:
            st.caption("One run at a time: wait for the current one or stop it.")
    with right:
        st.subheader("Progress")
        _live()
    st.subheader("Runs")
    _runs(ws)
    st.subheader("Saved runs")
    _saved_runs(ws)


def _param_form(name: str) -> dict[str, Any]:
    """Widgets for the model's constructor arguments; returns the values that differ from the
    defaults (plus the app's time budget for the flagship)."""
    defaults = model_defaults(name)
    prefill = dict(ui.AUTO_FLAGSHIP_PARAMS) if name == DEFAULT_MODEL else {}
    shown = [k for k in defaults if k not in HIDDEN]
    primary = [k for k in PRIMARY if k in shown]
    advanced = [k for k in shown if k not in primary]
    values: dict[str, Any] = {}
    for key in primary:
        values[key] = _widget(name, key, prefill.get(key, defaults[key]))
    if advanced:
        with st.expander("Advanced"):
            for key in advanced:
                values[key] = _widget(name, key, prefill.get(key, defaults[key]))
    return {k: v for k, v in values.items() if v != defaults[k] or k in prefill}


def _widget(model: str, key: str, default: Any) -> Any:
    wkey = f"t-{model}-{key}"
    label = key.replace("_", " ")
    if key in CHOICES:
        options = CHOICES[key]
        return st.selectbox(
            label, options, index=options.index(default) if default in options else 0, key=wkey
        )
    if isinstance(default, bool):
        return st.checkbox(label, value=default, key=wkey)
    if isinstance(default, int):
        return int(st.number_input(label, value=default, step=1, min_value=0, key=wkey))
    if isinstance(default, float) or default is None:
        value = st.number_input(
            label,
            value=default,
            format="%g",
            key=wkey,
            placeholder="none" if default is None else None,
            step=None if default is None else abs(default) / 10 or 0.1,
        )
        return None if value is None else float(value)
    return st.text_input(label, value=str(default), key=wkey)


def _live() -> None:
    ws = st.session_state[ui.STATE_KEY]
    if ws.job is not None:
        # Outside the once-a-second fragment: a button that is redrawn every second can lose
        # a click that lands mid-redraw; the callback runs before the next script run.
        st.button(
            "Stop",
            key="t-stop",
            disabled=ws.job.stop_requested,
            on_click=ws.job.stop,
            help="Ends training at the next step and keeps the best weights so far.",
        )
        _live_job()
        return
    last = ws.finished_jobs[-1] if ws.finished_jobs else None
    if last is not None and last.status == FAILED:
        st.error(last.error)
    elif last is not None:
        note = " (stopped early; best weights kept)" if last.status == STOPPED else ""
        st.success(f"Finished {ui.md(last.label)} in {last.elapsed:.0f} s{note}.")
    run = ws.runs.active
    if run is not None and run.history:
        st.plotly_chart(
            viz.training_curves_fig(run.history, f"{run.run_id}: training curves"),
            key="t-curves-active",
        )
    elif run is None:
        st.info("No run yet: choose a model and start training.")
    else:
        st.caption(f"{ui.md(run.run_id)} has no training curve (it is fitted in one step).")


@st.fragment(run_every=ui.REFRESH_SECONDS)
def _live_job() -> None:
    """Refreshes itself every second while the job runs; reruns the page when it ends."""
    ws = st.session_state[ui.STATE_KEY]
    new_runs = ws.collect()
    job = ws.job
    if new_runs or job is None:
        st.rerun(scope="app")
    st.progress(job.fraction, text=ui.md(f"{job.label} — {job.describe()}"))
    if job.stop_requested:
        st.caption("Stopping…")
    model = job.latest.get("model")
    history = [h for h in job.history if h.get("model") == model and h.get("epoch") is not None]
    st.plotly_chart(
        viz.training_curves_fig(history, f"{model or 'model'}: live training curves"),
        key="t-curves-live",
    )


def _runs(ws) -> None:
    if not len(ws.runs):
        st.caption("Trained models appear here; the sidebar selects the active one.")
        return
    summary = ws.runs.summary()
    ui.number_table(summary, [c for c in summary.columns if "recall@" in c or "ndcg@" in c])
    ui.download_csv("Download runs (CSV)", summary, "runs.csv")
    curves = {r.run_id: r.history for r in ws.runs if r.history}
    if len(curves) >= 2:  # one run's curves are already under "Progress"
        chosen = st.multiselect(
            "Compare training curves", list(curves), default=list(curves)[-3:], key="t-compare"
        )
        if chosen:
            st.plotly_chart(
                viz.compare_curves_fig({k: curves[k] for k in chosen}), key="t-compare-fig"
            )
    left, right = st.columns(2)
    with left:
        run_id = st.selectbox(
            "Run",
            ws.runs.ids(),
            index=ws.runs.ids().index(ws.runs.active_id) if ws.runs.active_id in ws.runs else 0,
            key="t-run",
        )
        run = ws.runs.get(run_id)
        b1, b2 = st.columns(2)
        if b1.button("Make active", key="t-activate"):
            ws.runs.active_id = run_id
            st.rerun()
        if b2.button("Remove", key="t-remove"):
            ws.runs.remove(run_id)
            st.rerun()
        _flagship_parts(run)
        _item_item_choice(run)
    with right:
        _run_downloads(ws, run)


def _flagship_parts(run) -> None:
    """The flagship's validation NDCG as each score part is added (when the run is one)."""
    if flagship_parts(run.model).empty:
        return
    with st.expander("What each part adds on validation"):
        flagship.parts_section(run, "t-parts")


def _item_item_choice(run) -> None:
    """The flagship's item-item path settings tried on validation (when it chose any)."""
    choice = getattr(run.model, "item_item_choice", None)
    if choice is None or not choice.grid:
        return
    from recsys_core.models.item_item import describe_choice

    with st.expander("Item-item path, chosen on validation"):
        st.caption(describe_choice(choice.summary()))
        st.plotly_chart(viz.item_item_grid_fig(choice.grid, choice.summary()), key="t-ii-fig")
        ui.download_csv("Download the settings tried (CSV)", pd.DataFrame(choice.grid),
                        "item_item_choice.csv", key="t-ii-csv")


# ---------------------------------------------------------------------------------- saved runs
def _run_downloads(ws, run) -> None:
    """The run as a zip (weights, settings, data and splits) and its HTML report."""
    from recsys_core.run import safe_folder_name

    name = safe_folder_name(run.run_id)
    st.caption(
        "Download a run as a zip (safetensors weights + JSON + Parquet data and splits): it "
        "opens again here (**Saved runs** below) and, unzipped, with "
        "`python -m recsys_core recommend --run DIR`."
    )
    if "zip" not in run.cache:
        if st.button("Prepare run download", key="t-zip"):
            with st.spinner("Saving the run…"):
                run.cache["zip"] = export_run_zip(ws, run)
            st.rerun()
    else:
        st.download_button(
            "Download run (.zip)",
            run.cache["zip"],
            file_name=f"{name}.zip",
            mime="application/zip",
            icon=":material/download:",
            key="t-zip-dl",
        )
    pseudonymizer = ui.session_pseudonymizer()
    key = ("report", pseudonymizer is not None)
    st.caption(
        "The report is one HTML file that opens offline: data, settings, metrics against "
        "baselines with confidence intervals, slices, the explanations' faithfulness and "
        "three example users" + (" (privacy mode: pseudonyms, small groups suppressed)."
                                 if pseudonymizer is not None else ".")
    )
    if key not in run.cache:
        if not len(ws.test):
            st.caption("A report needs held-out interactions: add a test file below.")
        elif st.button("Prepare report", key="t-report"):
            from recsys_core.report import build_report

            bar = st.progress(0.0, text="Preparing the report…")

            def progress(event: dict[str, Any]) -> None:
                bar.progress(float(event.get("fraction") or 0.0),
                             text=ui.md(f"Report: {event.get('stage', '')}"))

            run.cache[key] = build_report(
                run.model, ws.dataset.subset_interactions(ws.train), run_info(ws, run), ws.test,
                test_name=f"the test split of {ws.source}", pseudonymizer=pseudonymizer,
                on_progress=progress,
            ).encode("utf-8")
            st.rerun()
    else:
        st.download_button(
            "Download report (HTML)",
            run.cache[key],
            file_name=f"report_{name}.html",
            mime="text/html",
            icon=":material/download:",
            key="t-report-dl",
        )


def _saved_runs(ws) -> None:
    """Open a run saved earlier: from the runs folder, or an uploaded zip."""
    runs_dir = navigation.saved_run_arguments()["runs_dir"]
    left, right = st.columns(2)
    with left:
        entries = find_saved_runs(runs_dir)
        if not entries:
            st.caption(
                f"No saved runs in `{ui.md(runs_dir)}` yet. `python -m recsys_core train ... "
                f"--out {ui.md(runs_dir)}/NAME` puts one there; start the app with "
                "`-- --runs-dir DIR` to list another folder."
            )
        else:
            labels = {str(e.path): e.label() for e in entries}
            chosen = st.selectbox(
                f"Runs in {runs_dir}", list(labels), format_func=labels.get, key="t-saved"
            )
            if st.button("Open run", key="t-open"):
                from recsys_core.run import read_run

                with st.spinner("Opening the run…"):
                    _open(ws, read_run(chosen))
    with right:
        upload = st.file_uploader(
            f"Or upload a zipped run (up to {RUN_ZIP_LIMIT_MB} MB)",
            type=["zip"],
            key="t-run-zip-upload",
            max_upload_size=RUN_ZIP_LIMIT_MB,
            help="A zip written by 'Download run': run.json, model.safetensors and Parquet "
            "files only. Anything else (a pickle, an unknown file, a changed file) is refused.",
        )
        if upload is not None and st.session_state.get("t-run-zip-done") != upload.file_id:
            st.session_state["t-run-zip-done"] = upload.file_id  # open each upload once
            from recsys_core.run import read_run_zip

            try:
                with st.spinner("Checking and opening the zipped run…"):
                    saved = read_run_zip(upload.getvalue(), name=upload.name)
            except RecScopeError as exc:
                st.session_state["t-run-zip-error"] = str(exc)
            else:
                _open(ws, saved)
        error = st.session_state.get("t-run-zip-error")
        if error and upload is not None:
            st.error(ui.md(error))
        elif error:
            st.session_state.pop("t-run-zip-error", None)
    if not len(ws.test):
        _test_upload(ws)


def _open(ws, saved) -> None:
    st.session_state.pop("t-run-zip-error", None)
    target, run, new = open_saved_run(saved, ws)
    if new:
        ui.replace_workspace(target, auto_train=False)
        where = "on its own data (the session's data and runs were set aside)"
    else:
        where = "beside this session's runs (same data and split)"
    ui.flash(f"Opened {run.run_id} {where}.")
    st.rerun()


def _test_upload(ws) -> None:
    st.info(
        "This run was saved without held-out interactions, so the Metrics page and the "
        "report have nothing to evaluate on. Add a test file (interactions of the run's "
        "users and items that it was not trained on)."
    )
    upload = st.file_uploader(
        f"Test interactions (up to {TEST_LIMIT_MB} MB)",
        type=["csv", "tsv", "txt", "parquet", "data", "dat"],
        key="t-test-upload",
        max_upload_size=TEST_LIMIT_MB,
    )
    if upload is None:
        return
    test = ui.load_files((upload.name, upload.getvalue()))
    skipped = attach_test(ws, test.interactions, upload.name)
    left_out = ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in skipped.items() if n)
    ui.flash(f"Test split set: {len(ws.test):,} interactions of "
             f"{ws.test['user_id'].nunique():,} users"
             + (f"; left out: {left_out}." if left_out else "."))
    st.rerun()


ui.run_page(render)
