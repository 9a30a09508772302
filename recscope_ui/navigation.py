"""The app's pages and the guard that makes every page URL run through ``app.py``.

Streamlit treats a folder named ``pages/`` beside the entry script as a legacy (v1) multipage
app until ``st.navigation`` has run once in the server process. The first visitor after a
server start who arrives by a page URL (a refreshed tab, a bookmark, a shared link) would then
get that page's script alone: raw file names as navigation, no shared sidebar, the default
narrow layout. :func:`require_entrypoint`, the first thing every page does, notices that
case and runs ``app.py`` in its place, which registers :func:`pages` with
``st.navigation`` and keeps the page the URL asked for. (A first visit to the root URL needs
no rerun: Streamlit then runs ``app.py`` itself, whose ``st.navigation`` takes over.) The legacy navigation itself is hidden (``client.showSidebarNavigation = false``
in ``.streamlit/config.toml``), so its file names never show, not even for one frame; the app
draws its own navigation with :func:`sidebar_links`.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Callable

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

from recsys_core.services.runs import DEFAULT_RUNS_DIR

#: ``(script, title, icon)`` of every page, in navigation order; the first is the default.
PAGE_SPECS: list[tuple[str, str, str]] = [
    ("pages/data.py", "Data", ":material/table:"),
    ("pages/graph.py", "Graph", ":material/hub:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/recommendations.py", "Recommendations", ":material/recommend:"),
    ("pages/metrics.py", "Metrics", ":material/monitoring:"),
    ("pages/explain.py", "Explain", ":material/psychology:"),
    ("pages/embeddings.py", "Embeddings", ":material/scatter_plot:"),
]


def pages() -> list[st.Page]:
    """The app's :class:`st.Page` objects (URL paths come from the file names)."""
    return [st.Page(script, title=title, icon=icon, default=index == 0)
            for index, (script, title, icon) in enumerate(PAGE_SPECS)]


def require_entrypoint() -> None:
    """Run ``app.py`` in place of this page when Streamlit ran the page in legacy mode.

    Legacy mode only happens before the first ``st.navigation`` call of the server process;
    switching it off is process-wide and permanent, which is exactly what the app wants.
    ``app.py`` then draws the shared sidebar and runs the page the URL asked for (its identity
    is the hash of its URL path, the same in both modes) inside this same script run, so
    nothing is lost, not even a button click; the rest of the legacy run is skipped.
    """
    if not PagesManager.uses_pages_directory:
        return
    PagesManager.uses_pages_directory = False
    ctx = get_script_run_ctx()
    if ctx is None:  # not inside a Streamlit script run (a plain import)
        return
    runpy.run_path(str(ctx.pages_manager.main_script_path), run_name="__main__")
    st.stop()


def run_page(render: Callable[[], None]) -> None:
    """A page script's body: make sure it runs inside the app, then draw it."""
    require_entrypoint()
    render()


def sidebar_links(nav_pages: list[st.Page]) -> None:
    """The navigation, drawn first in the sidebar so it shows before any slow work."""
    with st.sidebar:
        for page in nav_pages:
            st.page_link(page)


def saved_run_arguments(argv: list[str] | None = None) -> dict[str, str | None]:
    """The saved-run options given after ``--`` on ``streamlit run app.py -- ...``:
    ``run`` (``--run DIR``, a run directory every new session opens) and ``runs_dir``
    (``--runs-dir DIR``, the folder the Train page lists runs from; default ``runs``)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--run")
    parser.add_argument("--runs-dir", dest="runs_dir")
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--"]
    known, _ = parser.parse_known_args(args)
    return {"run": known.run, "runs_dir": known.runs_dir or DEFAULT_RUNS_DIR}
