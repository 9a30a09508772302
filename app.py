"""RecScope: the Streamlit entry point.

    streamlit run app.py                                   # shipped demo data
    streamlit run app.py -- --interactions F [--items F] [--user-edges F]
    streamlit run app.py -- --run runs/my-run [--runs-dir runs]   # a saved run

Sets the page config, draws the sidebar shared by every page (data set, active model, device,
training progress) and runs the page chosen in the navigation. Pages live in ``pages/`` and are
registered here explicitly (``recscope_ui.navigation``).
"""

from __future__ import annotations

import streamlit as st

from recscope_ui import navigation, ui
from recsys_core.device import configure_cpu_threads, describe_device, pick_device
from recsys_core.errors import RecScopeError
from recsys_core.services.evaluation import HEADLINE_K
from recsys_core.services.runs import open_saved_run
from recsys_core.views.metrics import headline

st.set_page_config(page_title="RecScope", page_icon=":material/hub:", layout="wide")
# Registered first, drawn first: the navigation shows before the sidebar's slower work.
NAV_PAGES = navigation.pages()
current_page = st.navigation(NAV_PAGES, position="hidden")
navigation.sidebar_links(NAV_PAGES)


@st.cache_resource(show_spinner=False)
def thread_setting_problem() -> str | None:
    """Set torch's CPU threads once per server process (never per rerun or job): one core
    stays with the web server, so pages stay responsive while a model trains."""
    try:
        configure_cpu_threads(reserve=1)
    except ValueError as exc:
        return f"{exc} Using torch's default thread count."
    return None


if (problem := thread_setting_problem()) is not None:
    st.sidebar.warning(problem)


@st.cache_resource(show_spinner=False)
def device_name() -> str:
    return describe_device(pick_device())


def sidebar() -> None:
    try:
        ws = ui.workspace()
    except RecScopeError:
        st.sidebar.caption("No data loaded: the Data page says why and takes an upload.")
        return
    ds = ws.dataset
    with st.sidebar:
        st.markdown("### RecScope")
        st.caption(
            f"Data: **{ui.md(ds.name, 40)}** ({ui.md(ws.source, 40)})  \n"
            f"{ds.num_users:,} users · {ds.num_items:,} items · "
            f"{len(ds.interactions):,} interactions"
        )
        ids = ws.runs.ids()
        if ids:
            active = ws.runs.active_id if ws.runs.active_id in ids else ids[-1]
            choice = st.selectbox(
                "Active model",
                ids,
                index=ids.index(active),
                help="The model the Recommendations, Explain and Embeddings "
                "pages use. Train more on the Train page.",
            )
            ws.runs.active_id = choice
            run = ws.runs.active
            summary = headline(run.cache.get("metrics"), HEADLINE_K)
            st.caption(
                f"{ui.md(run.model_name)}"
                + (f" · {summary}" if summary else "")
                + f" · trained in {run.train_seconds:.0f} s on {ui.md(run.device)}"
                + (" · stopped early" if run.status == "stopped" else "")
            )
        else:
            st.caption("Active model: none yet")
        st.caption(f"Device: {device_name()}")
        ui.privacy_switch()
        if ws.job is not None:
            st.caption("Training in the background")
        ui.training_monitor(compact=True)


def open_command_line_run() -> None:
    """``--run DIR``: a new session starts on that saved run (its data, no training)."""
    directory = navigation.saved_run_arguments()["run"]
    if not directory or ui.STATE_KEY in st.session_state or st.session_state.get(RUN_OPENED):
        return
    st.session_state[RUN_OPENED] = True  # once: on failure the session goes on with the demo
    from recsys_core.run import read_run

    with st.spinner("Opening the saved run…"):
        ws, run, _ = open_saved_run(read_run(directory))
    st.session_state[ui.STATE_KEY] = ws
    ui.flash(f"Opened the saved run {run.run_id} from {directory}.")


RUN_OPENED = "recscope_cli_run_opened"
ui.guarded(open_command_line_run)
ui.guarded(sidebar)
current_page.run()
