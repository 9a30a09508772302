"""Streamlit helpers shared by the pages: session workspace, caches, training monitor, guards.

The one seam for tests: a :class:`~recsys_core.services.workspace.Workspace` stored in
``st.session_state[STATE_KEY]`` before the first run is used as is (no demo data is loaded and
no training starts). Without one, :func:`workspace` loads the files given on the command line
(``streamlit run app.py -- --interactions F ...``) or the shipped demo data, and starts the
default training job in the background.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from recscope_ui import navigation
from recsys_core.csv_safety import to_csv_string
from recsys_core.errors import RecScopeError
from recsys_core.html_safety import escape_markdown
from recsys_core.privacy import (
    Pseudonymizer,
    pseudonymize_file_name,
    pseudonymize_user_table,
)
from recsys_core.services.fitting import training_target
from recsys_core.services.jobs import FAILED, TrainingJob
from recsys_core.services.plans import default_training_plan
from recsys_core.services.workspace import Workspace, prepare_workspace

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "data"
DEMO_TEXT_CACHE = DEMO_DIR / "text_cache"
DEMO_FILES = {
    "interactions": DEMO_DIR / "interactions.csv",
    "items": DEMO_DIR / "items.csv",
    "user_edges": DEMO_DIR / "user_edges.csv",
}
DEMO_LABEL = "demo data"
DEMO_NAME = "demo book catalogue"
STATE_KEY = "recscope_workspace"
#: Session-state key of the privacy switch (on: pseudonyms in every shown or downloaded id).
PRIVACY_KEY = "recscope_privacy"
#: Per-uploader size caps in MB (the server-wide cap is in .streamlit/config.toml).
UPLOAD_LIMIT_MB = {"interactions": 200, "items": 100, "user_edges": 50, "users": 50}
#: Flagship settings for the automatic first model: early stopping plus a wall-clock budget so
#: a 2-core CPU has a model within about a minute; the Train page exposes every argument.
AUTO_FLAGSHIP_PARAMS: dict[str, Any] = {"time_limit": 35.0}
#: Seconds between refreshes of the live training views.
REFRESH_SECONDS = 1.0

log = logging.getLogger("recscope.app")


# ---------------------------------------------------------------------------------- inputs
def command_line_files(argv: list[str] | None = None) -> dict[str, str | None]:
    """Files given after ``--`` on ``streamlit run app.py -- --interactions F ...``
    (``--items``, ``--user-edges``, ``--users``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--interactions")
    parser.add_argument("--items")
    parser.add_argument("--user-edges", dest="user_edges")
    parser.add_argument("--users")
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--"]
    known, _ = parser.parse_known_args(args)
    return {
        "interactions": known.interactions,
        "items": known.items,
        "user_edges": known.user_edges,
        "users": known.users,
    }


def default_sources() -> tuple[dict[str, str | None], str]:
    """The files to open on first load and a label for them."""
    given = command_line_files()
    if given["interactions"]:
        return given, Path(given["interactions"]).name
    return {k: str(v) if v.exists() else None for k, v in DEMO_FILES.items()}, DEMO_LABEL


@st.cache_data(show_spinner="Reading the data files…", max_entries=4)
def load_files(
    interactions: Any,
    items: Any = None,
    user_edges: Any = None,
    options: tuple = (),
    stamp: tuple = (),
    users: Any = None,
) -> Any:
    """:func:`recsys_core.ingest.load_dataset`, cached per input (``stamp``: file mtimes so an
    edited file is read again). Sources are paths or ``(display_name, bytes)`` pairs;
    ``users`` is the optional user attributes file."""
    from recsys_core.ingest import load_dataset

    return load_dataset(interactions, items, user_edges, users, **dict(options))


def file_stamp(*paths: str | None) -> tuple:
    return tuple(
        (p, Path(p).stat().st_mtime) if p and Path(p).exists() else (p, None) for p in paths
    )


@st.cache_resource(show_spinner=False)
def text_encoder():
    """The shared, read-only text encoder (one per server process); it also reads the demo
    catalogue's embeddings shipped in ``data/text_cache``, so the demo encodes nothing."""
    from recsys_core.text import default_encoder

    return default_encoder(seed_cache_dirs=(str(DEMO_TEXT_CACHE),))


# ---------------------------------------------------------------------------------- workspace
def workspace() -> Workspace:
    """This session's workspace, created (demo data + background training) on first use."""
    ws = st.session_state.get(STATE_KEY)
    if ws is None:
        sources, label = default_sources()
        if not sources.get("interactions"):
            raise RecScopeError(
                "No data to open: the demo files are missing from data/ and no "
                "--interactions file was given. Upload files on the Data page."
            )
        options = (("name", DEMO_NAME),) if label == DEMO_LABEL else ()
        dataset = load_files(
            sources["interactions"],
            sources.get("items"),
            sources.get("user_edges"),
            options=options,
            stamp=file_stamp(*sources.values()),
            users=sources.get("users"),
        )
        ws = prepare_workspace(dataset, source=label)
        st.session_state[STATE_KEY] = ws
        start_default_training(ws)
    ws.collect()
    return ws


def replace_workspace(ws: Workspace, auto_train: bool = True) -> None:
    """Switch the session to new data, stopping any training on the old."""
    old = st.session_state.get(STATE_KEY)
    if old is not None and old.job is not None:
        old.job.stop()
    st.session_state[STATE_KEY] = ws
    if auto_train:
        start_default_training(ws)


def start_default_training(ws: Workspace) -> TrainingJob:
    """Baselines (seconds) then the flagship, in a background thread of this session."""
    plan, weights = default_training_plan(flagship_params=AUTO_FLAGSHIP_PARAMS)
    label = "default models: " + ", ".join(name for name, _, _ in plan)
    job = TrainingJob(
        training_target(ws, plan, text_encoder, weights),
        label,
        meta={"plan": [name for name, _, _ in plan]},
    )
    return ws.start_job(job)


def start_training(ws: Workspace, model_name: str, params: dict[str, Any]) -> TrainingJob:
    """One model with the given hyper-parameters, in the background."""
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    job = TrainingJob(
        training_target(ws, [(model_name, params, True)], text_encoder),
        f"{model_name} ({shown})" if shown else model_name,
        meta={"plan": [model_name]},
    )
    return ws.start_job(job)


# ---------------------------------------------------------------------------------- monitor
def training_monitor(compact: bool = False) -> None:
    """Live progress of the session's job (refreshes itself while a job runs)."""
    ws = workspace()
    if ws.job is not None:
        _monitor(compact)
    elif ws.last_error and not compact:
        st.error(ws.last_error)


@st.fragment(run_every=REFRESH_SECONDS)
def _monitor(compact: bool) -> None:
    ws: Workspace = st.session_state[STATE_KEY]
    before = ws.job
    new_runs = ws.collect()
    if new_runs or ws.job is None:
        # A model arrived or the job ended: refresh the whole page so it uses the new run.
        if before is not None and before.status == FAILED:
            log.warning("training failed: %s\n%s", before.error, before.error_details or "")
        st.rerun(scope="app")
    job = ws.job
    text = f"{job.label} — {job.describe()}"
    if compact:
        st.progress(job.fraction, text=escape_markdown(job.describe()))
    else:
        st.progress(job.fraction, text=escape_markdown(text))


def require_model(ws: Workspace):
    """The active run, or ``None`` after telling the user a model is on its way."""
    run = ws.runs.active
    if run is None:
        if ws.job is not None:
            st.info(
                "The first model is training in the background; this page fills in as soon "
                "as it is ready (usually a few seconds for the baselines)."
            )
            training_monitor()
        else:
            st.warning("No trained model yet. Train one on the **Train** page.")
            if ws.last_error:
                st.error(ws.last_error)
    return run


# ---------------------------------------------------------------------------------- guards
def run_page(render: Callable[[], None]) -> None:
    """A page script's body: make sure it runs inside the app (see
    :func:`recscope_ui.navigation.run_page`), then draw it."""
    navigation.run_page(render)


def guarded(render: Callable[[], None]) -> None:
    """Run a page body; any error is shown as a message with what to do, never a traceback."""
    try:
        render()
    except RecScopeError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - the page must survive anything
        log.error("page error\n%s", traceback.format_exc())
        st.error(
            f"Something went wrong while drawing this page ({type(exc).__name__}: "
            f"{exc}). Try other settings, or reload the page; the details are in the "
            "server log."
        )


def flash(message: str) -> None:
    """Show ``message`` (plain text) as a success note on the next run of the page."""
    st.session_state["recscope_flash"] = message


def show_flash() -> None:
    message = st.session_state.pop("recscope_flash", None)
    if message:
        st.success(md(message))


def download_csv(label: str, frame: pd.DataFrame, file_name: str, key: str | None = None) -> None:
    """A download button for a formula-injection-safe CSV of ``frame``; in privacy mode its
    user ids (and any user id in the file name) are the session's pseudonyms."""
    pseudonymizer = session_pseudonymizer()
    if pseudonymizer is not None:
        known = _known_users()
        frame = pseudonymize_user_table(frame, pseudonymizer, known)
        file_name = pseudonymize_file_name(file_name, pseudonymizer, known)
    st.download_button(
        label,
        to_csv_string(frame).encode("utf-8"),
        file_name=file_name,
        mime="text/csv",
        key=key or f"dl-{file_name}",
        icon=":material/download:",
    )


def number_table(frame: pd.DataFrame, columns: Iterable[str], **options: Any) -> None:
    """``frame`` as ``st.dataframe`` without its index, the ``columns`` shown to 4 decimals.

    Args:
        frame (pandas.DataFrame): The table.
        columns (Iterable[str]): Number columns shown with 4 decimals.
        **options: Other ``st.dataframe`` arguments (``height``, ...); a ``column_config``
            adds to the 4-decimal columns' settings (and wins for a column in both).
    """
    number = st.column_config.NumberColumn(format="%.4f")
    config = {c: number for c in columns} | options.pop("column_config", {})
    st.dataframe(frame, hide_index=True, column_config=config, **options)


def md(value: Any, max_length: int | None = None) -> str:
    """Escape a user-supplied string for Markdown."""
    return escape_markdown(value, max_length)


def item_titles(ws: Workspace) -> pd.Series:
    """Item titles indexed by item id."""
    if "titles" not in ws.cache:
        ws.cache["titles"] = pd.Series(
            ws.dataset.items["title"].astype(str).to_numpy(), index=ws.dataset.item_ids
        )
    return ws.cache["titles"]


def join_values(value: Any) -> str:
    """An attribute cell (a list) as ``"a, b"``."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def format_time(seconds: Any) -> str:
    try:
        return "" if pd.isna(seconds) else time.strftime("%Y-%m-%d", time.gmtime(float(seconds)))
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def user_options(ws: Workspace) -> list[str]:
    """Users sorted by training activity (most active first), for select boxes."""
    if "user_options" not in ws.cache:
        counts = ws.train["user_id"].value_counts()
        rest = [u for u in ws.dataset.user_ids if u not in counts.index]
        ws.cache["user_options"] = list(counts.index.astype(str)) + list(map(str, rest))
    return ws.cache["user_options"]


def typical_user_index(ws: Workspace) -> int:
    """Position in :func:`user_options` of a user with median activity (a readable default;
    the busiest users have hundreds of interactions)."""
    if "typical_user" not in ws.cache:
        counts = ws.train["user_id"].value_counts()
        options = user_options(ws)
        median = float(counts.median()) if len(counts) else 0.0
        values = counts.reindex(options).fillna(0).to_numpy()
        ws.cache["typical_user"] = int(abs(values - median).argmin()) if len(values) else 0
    return ws.cache["typical_user"]


def user_picker(ws: Workspace, key: str, container: Any = st) -> str:
    """A searchable user select box in ``container`` (default: the page): users by training
    activity, one of median activity preselected, labelled by :func:`user_label`."""
    return container.selectbox(
        "User (type to search)",
        user_options(ws),
        index=typical_user_index(ws),
        format_func=user_label(ws),
        key=key,
    )


def user_label(ws: Workspace) -> Callable[[str], str]:
    counts = ws.train["user_id"].value_counts()
    pseudonymizer = session_pseudonymizer()

    def label(user_id: str) -> str:
        shown = user_id if pseudonymizer is None else pseudonymizer.pseudonym(user_id)
        return f"user {shown} ({int(counts.get(user_id, 0))} interactions)"

    return label


# ---------------------------------------------------------------------------------- privacy
def privacy_on() -> bool:
    """Whether this session's privacy switch is on."""
    return bool(st.session_state.get(PRIVACY_KEY, False))


def privacy_switch() -> None:
    """The sidebar's privacy switch (shared by every page)."""
    st.toggle(
        "Privacy mode",
        key=PRIVACY_KEY,
        help="Show and download salted pseudonyms (u_…) instead of user ids. The salt is "
        "made for this session, kept in memory only and never written out; item titles "
        "stay. See docs/SECURITY.md for what this does and does not protect.",
    )


def session_pseudonymizer() -> Pseudonymizer | None:
    """The workspace's pseudonymizer when privacy mode is on, else ``None``."""
    if not privacy_on():
        return None
    ws = st.session_state.get(STATE_KEY)
    if ws is None:
        return None
    if getattr(ws, "pseudonymizer", None) is None:  # fail closed: never fall back to raw ids
        ws.pseudonymizer = Pseudonymizer.random()
    return ws.pseudonymizer


def shown_user(user_id: str) -> str:
    """A user id as the session may show it: its pseudonym in privacy mode."""
    pseudonymizer = session_pseudonymizer()
    return str(user_id) if pseudonymizer is None else pseudonymizer.pseudonym(user_id)


def _known_users() -> dict[str, int]:
    ws = st.session_state.get(STATE_KEY)
    return ws.dataset.user_index if ws is not None else {}
