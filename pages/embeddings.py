"""Embeddings page: a 2-D map (PCA) of item embeddings, users among their items, coloured by
category."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from recscope_ui import ui
from recsys_core import viz
from recsys_core.views.embeddings import (
    central_items,
    embedding_map,
    listed_items,
    sampling_note,
    selected_keys,
)

MODEL_SPACE = "Model embeddings"
TEXT_SPACE = "Text embeddings (language model)"


def render() -> None:
    st.title("Embeddings")
    ui.guarded(_body)


def _body() -> None:
    ws = ui.workspace()
    run = ws.runs.active
    has_model_space = run is not None and callable(getattr(run.model, "embeddings", None))
    spaces = ([MODEL_SPACE] if has_model_space else []) + (
        [TEXT_SPACE] if ws.item_text is not None else []
    )
    if not spaces:
        if run is None:
            ui.require_model(ws)
        else:
            st.info(
                f"{ui.md(run.run_id)} has no embeddings and the item texts are not encoded "
                "yet. Pick an embedding model (gnn-llm, lightgcn, mf) in the sidebar."
            )
            ui.training_monitor()
        return
    ds = ws.dataset
    c1, c2, c3 = st.columns([2, 2, 1])
    space = c1.radio("Space", spaces, horizontal=True, key="e-space")
    color_by = c2.selectbox("Colour by", ds.attribute_columns or ["(none)"], key="e-color")
    show_users = c3.toggle("Show users", value=True, key="e-users")
    if space == MODEL_SPACE:
        st.caption(
            f"Final item vectors of **{ui.md(run.run_id)}** (the space its scores are dot "
            "products in), projected on their first two principal components: items that sit "
            "together are scored alike. Dots are items; a cross is a user, placed at the mean "
            "of the items in their training history (coloured by the value most common there)."
        )
    else:
        st.caption(
            "all-MiniLM-L6-v2 embeddings of the item texts (dots), projected on their first "
            "two principal components; a user (cross) sits at the mean of the items in their "
            "training history."
        )
    points = _points(ws, run, space, color_by)
    note = sampling_note(points, ds, ws.train)
    if note:
        st.caption(note)
    if not show_users:
        points = points[points["kind"] == "item"]
    fig = viz.embedding_map_fig(points, color=color_by)
    event = st.plotly_chart(
        fig, key="e-map", on_select="rerun", selection_mode=("box", "lasso", "points")
    )
    st.caption(
        "Drag a box or lasso (toolbar) around points to list them below; double-click to clear."
    )
    keys = selected_keys(_selection_points(event), [trace.customdata for trace in fig.data])
    selected = points[points["key"].isin(keys)]
    if selected.empty:
        st.caption(
            "No points selected yet — the table shows the items closest to the centre "
            "of the map's most common colour instead."
        )
        selected = central_items(points)
    _selected_table(ws, selected)


def _points(ws, run, space: str, color_by: str) -> pd.DataFrame:
    key = ("embedding_points", run.run_id if (run and space == MODEL_SPACE) else "text", color_by)
    if key not in ws.cache:
        if space == MODEL_SPACE:
            item_vectors = np.asarray(run.model.embeddings()[1], dtype=np.float64)
        else:
            item_vectors = np.asarray(ws.item_text, dtype=np.float64)
        ws.cache[key] = embedding_map(item_vectors, ws.dataset, ws.train, color_by)
    return ws.cache[key]


def _selection_points(event) -> list:
    try:
        return event.selection.points if event is not None else []
    except AttributeError:
        return (event or {}).get("selection", {}).get("points", [])


def _selected_table(ws, selected: pd.DataFrame) -> None:
    table = listed_items(ws.dataset, ws.item_counts(), selected)
    users = selected[selected["kind"] == "user"]
    st.markdown(f"**{len(table)} items** and **{len(users)} users** listed")
    st.dataframe(table, hide_index=True)
    ui.download_csv("Download listed items (CSV)", table, "embedding_selection.csv", key="e-dl")
    if len(users):
        st.dataframe(
            pd.DataFrame(
                {"user": users["label"].to_numpy(), "main category": users["color"].to_numpy()}
            ),
            hide_index=True,
        )


ui.run_page(render)
