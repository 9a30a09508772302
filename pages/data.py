"""Data page: what is loaded (summary, plots, previews, ingestion report) and uploading new data."""

from __future__ import annotations

import streamlit as st

from recscope_ui import ui
from recsys_core import viz
from recsys_core.errors import DataError, RecScopeError
from recsys_core.views.data import interaction_counts

AUTO = "(auto-detect)"
UPLOAD_TYPES = ["csv", "tsv", "txt", "tab", "psv", "dat", "data", "item", "user", "parquet"]


def render() -> None:
    st.title("Data")
    ui.guarded(_body)


def _body() -> None:
    try:
        ws = ui.workspace()
    except RecScopeError as exc:
        # The files given at start-up cannot be read: say why, and offer the upload instead.
        st.error(str(exc))
        _upload()
        return
    ui.show_flash()
    ds = ws.dataset
    counts_user, counts_item = interaction_counts(ds)
    st.caption(
        f"**{ui.md(ds.name, 60)}** from {ui.md(ws.source, 60)}. Every interaction is kept "
        "as a positive (implicit feedback); problems found while reading are counted in "
        "the ingestion report."
    )
    cols = st.columns(6)
    cols[0].metric("Users", f"{ds.num_users:,}")
    cols[1].metric("Items", f"{ds.num_items:,}")
    cols[2].metric("Interactions", f"{len(ds.interactions):,}")
    cols[3].metric(
        "Cold items",
        f"{int((counts_item == 0).sum()):,}",
        help="Items with metadata but no interaction: recommendable only from text.",
    )
    cols[4].metric(
        "Attributes",
        len(ds.attribute_columns) + len(ds.user_attribute_columns),
        help="Item: "
        + (", ".join(ds.attribute_columns) or "none")
        + ". User: "
        + (", ".join(ds.user_attribute_columns) or "none")
        + ".",
    )
    n_edges = 0 if ds.user_edges is None else len(ds.user_edges)
    cols[5].metric("User-user edges", f"{n_edges:,}")

    overview, preview, report, upload = st.tabs(
        ["Overview", "Preview", "Ingestion report", "Upload data"]
    )
    with overview:
        left, right = st.columns(2)
        left.plotly_chart(viz.degree_histogram_fig(counts_user, "user"), key="deg-user")
        right.plotly_chart(viz.degree_histogram_fig(counts_item, "item"), key="deg-item")
        left, right = st.columns(2)
        left.plotly_chart(viz.rating_histogram_fig(ds), key="ratings")
        right.plotly_chart(viz.activity_over_time_fig(ds), key="activity")
        if ds.attribute_columns:
            column = st.selectbox("Attribute", ds.attribute_columns, key="data-attr")
            st.plotly_chart(viz.attribute_counts_fig(ds, column), key="attr-counts")
    with preview:
        _previews(ws)
    with report:
        _report(ds)
    with upload:
        _upload()


def _previews(ws) -> None:
    ds = ws.dataset
    st.subheader("Interactions")
    inter = ds.interactions[["user_id", "item_id", "rating", "timestamp"]]
    st.dataframe(inter.head(1000), hide_index=True, height=260)
    st.caption(f"First {min(1000, len(inter)):,} of {len(inter):,} rows.")
    ui.download_csv("Download interactions (CSV)", inter, "interactions_clean.csv")
    st.subheader("Items")
    items = ds.items.copy()
    for col in ds.attribute_columns:
        items[col] = items[col].map(ui.join_values)
    st.dataframe(items.head(1000), hide_index=True, height=260)
    ui.download_csv("Download items (CSV)", items, "items_clean.csv")
    if ds.user_attribute_columns:
        st.subheader("User attributes")
        st.dataframe(ds.users.head(1000), hide_index=True, height=200)
        st.caption(
            "Each column is a node type in the graph (numbers grouped into the bins the "
            "ingestion report states)."
        )
        ui.download_csv("Download user attributes (CSV)", ds.users, "users_clean.csv")
    if ds.user_edges is not None and len(ds.user_edges):
        st.subheader("User-user edges")
        st.dataframe(ds.user_edges.head(1000), hide_index=True, height=200)
        ui.download_csv("Download user edges (CSV)", ds.user_edges, "user_edges_clean.csv")
    st.subheader("Evaluation split")
    st.caption(
        f"Models are fitted on {len(ws.train):,} interactions and evaluated on "
        f"{len(ws.test):,} held out: 10% of each user's interactions (users with at least "
        "5) plus every interaction of 5% of the items (the cold-item test)."
    )


def _report(ds) -> None:
    report = ds.report
    if report is None:
        st.info("This dataset was built in code, so there is no ingestion report.")
        return
    to_markdown = getattr(report, "to_markdown", None)
    if callable(to_markdown):
        # The report escapes user-supplied names itself (file and column names).
        st.markdown(to_markdown())
    else:
        st.text(str(report))
    to_dict = getattr(report, "to_dict", None)
    if callable(to_dict):
        import json

        st.download_button(
            "Download report (JSON)",
            json.dumps(to_dict(), indent=1, default=str),
            file_name="ingestion_report.json",
            mime="application/json",
            icon=":material/download:",
        )


def _upload() -> None:
    st.markdown(
        "Upload your own data: **interactions** (one row per user-item event: user id, "
        "item id, optional rating and timestamp), optional **items** (id, title, "
        "description, categories/tags), optional **user edges** (two user id "
        "columns) and optional **user attributes** (user id plus columns such as age, "
        "gender, occupation; MovieLens u.user works as it is). CSV, TSV and Parquet are "
        "read; columns are detected by name and can be set below."
    )
    inter = _uploader("Interactions", "interactions", "up-interactions")
    items = _uploader("Items", "items", "up-items")
    edges = _uploader("User edges", "user_edges", "up-edges")
    users = _uploader("User attributes", "users", "up-users")
    if inter is None:
        st.caption("Choose an interactions file to see the column mapping.")
        return
    inter_source, items_source = _source(inter), _source(items)
    options = {}
    try:
        columns = _columns(inter_source, "interactions")
    except DataError as exc:
        st.error(str(exc))
        return
    st.markdown("**Column mapping** (interactions)")
    options.update(_column_selects(
        [("user_col", "User id"), ("item_col", "Item id"), ("rating_col", "Rating"),
         ("time_col", "Timestamp")], columns, "map"))
    if items_source is not None:
        try:
            options.update(_item_column_options(_columns(items_source, "items")))
        except DataError as exc:
            st.error(str(exc))
            return
    auto_train = st.checkbox("Train the default models right away", value=True, key="up-autotrain")
    if st.button("Load data", type="primary", key="up-load"):
        try:
            dataset = ui.load_files(
                inter_source,
                items_source,
                _source(edges),
                options=tuple(sorted(options.items())),
                users=_source(users),
            )
        except DataError as exc:
            st.error(str(exc))
            return
        from recsys_core.services.workspace import prepare_workspace

        ui.replace_workspace(
            prepare_workspace(dataset, source="upload: " + inter.name), auto_train=auto_train
        )
        ui.flash(
            f"Loaded {dataset.num_users:,} users, {dataset.num_items:,} items and "
            f"{len(dataset.interactions):,} interactions from {inter.name}."
        )
        st.rerun()


def _item_column_options(columns: list[str]) -> dict[str, object]:
    """The items file's column mapping (what ``validate`` / ``train`` take as
    ``--items-id-col``, ``--title-col``, ``--text-cols``, ``--categorical-cols``): detected
    unless set here. Lists are tuples, so the options stay hashable for the file cache."""
    st.markdown("**Column mapping** (items)")
    options: dict[str, object] = _column_selects(
        [("items_id_col", "Item id"), ("title_col", "Title")], columns, "item-map")
    text_col, categorical_col = st.columns(2)
    for col, (role, label) in zip(
        (text_col, categorical_col),
        [("text_cols", "Text columns"), ("categorical_cols", "Categorical columns")],
        strict=True,
    ):
        chosen = col.multiselect(label, columns, key=f"item-map-{role}",
                                 placeholder="detected")
        if chosen:
            options[role] = tuple(chosen)
    st.caption("Rows that repeat an item id (a long table such as one (item, tag) pair per "
               "row) merge into one item with every attribute value.")
    return options


def _column_selects(roles: list[tuple[str, str]], columns: list[str],
                    key_prefix: str) -> dict[str, object]:
    """One select per ``(role, label)`` in a row, auto-detection first; the roles set."""
    chosen = {}
    for col, (role, label) in zip(st.columns(len(roles)), roles, strict=True):
        choice = col.selectbox(label, [AUTO, *columns], key=f"{key_prefix}-{role}")
        if choice != AUTO:
            chosen[role] = choice
    return chosen


def _uploader(label: str, role: str, key: str):
    """A file uploader for one input (``role`` in :data:`ui.UPLOAD_LIMIT_MB`, its size cap);
    every input but the interactions is optional."""
    limit = ui.UPLOAD_LIMIT_MB[role]
    optional = "" if role == "interactions" else "optional, "
    return st.file_uploader(
        f"{label} ({optional}up to {limit} MB)",
        type=UPLOAD_TYPES,
        key=key,
        max_upload_size=limit,
        help=("Larger files: train from the command line (`python -m recsys_core train "
              "--interactions FILE ...`) or start the app on a file path "
              "(`streamlit run app.py -- --interactions FILE`), both read in chunks."),
    )


def _source(upload) -> tuple[str, bytes] | None:
    """An uploaded file as the ``(display_name, bytes)`` source :func:`ui.load_files` reads."""
    return (upload.name, upload.getvalue()) if upload is not None else None


@st.cache_data(show_spinner=False, max_entries=8)
def _columns(source: tuple[str, bytes], role: str) -> list[str]:
    """The header of an upload (``role`` names the file in error messages)."""
    from recsys_core.ingest import DEFAULT_MAX_ROWS
    from recsys_core.ingest.readers import sniff_table

    return list(sniff_table(source, role=role, max_rows=DEFAULT_MAX_ROWS).columns)


ui.run_page(render)
