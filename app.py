"""RecScope: the Streamlit entry point.

    streamlit run app.py                                   # shipped demo data
    streamlit run app.py -- --interactions F [--items F] [--user-edges F]

Sets the page config, draws the sidebar shared by every page (data set, active model, device,
training progress) and runs the page chosen in the navigation. Pages live in ``pages/`` and are
registered here explicitly.
"""

from __future__ import annotations

import streamlit as st

from pages import ui
from recsys_core.device import configure_cpu_threads, describe_device, pick_device
from recsys_core.errors import RecScopeError

st.set_page_config(page_title="RecScope", page_icon=":material/hub:", layout="wide")

try:  # one core stays with the web server, so pages stay responsive while a model trains
    configure_cpu_threads(reserve=1)
except ValueError as exc:
    st.sidebar.warning(f"{exc} Using torch's default thread count.")

PAGES = [
    st.Page("pages/data.py", title="Data", icon=":material/table:", default=True),
    st.Page("pages/graph.py", title="Graph", icon=":material/hub:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/recommendations.py", title="Recommendations", icon=":material/recommend:"),
    st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:"),
    st.Page("pages/explain.py", title="Explain", icon=":material/psychology:"),
    st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
]


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
            summary = (run.cache.get("metrics") or {}).get("summary") or {}
            recall = summary.get("recall")
            st.caption(
                f"{ui.md(run.model_name)}"
                + (f" · recall@20 {recall:.3f}" if recall is not None else "")
                + f" · trained in {run.train_seconds:.0f} s on {ui.md(run.device)}"
                + (" · stopped early" if run.status == "stopped" else "")
            )
        else:
            st.caption("Active model: none yet")
        st.caption(f"Device: {device_name()}")
        if ws.job is not None:
            st.caption("Training in the background")
        ui.training_monitor(compact=True)


ui.guarded(sidebar)
st.navigation(PAGES).run()
