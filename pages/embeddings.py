"""Embeddings page: a 2-D map (PCA) of item and user embeddings, coloured by category."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from recscope_ui import ui
from recsys_core import viz
from recsys_core.dataset import ITEM_IDX, USER_IDX

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
            f"Final user and item vectors of **{ui.md(run.run_id)}**; users and items share "
            "one space (score = dot product, plus the flagship's item-item term when it "
            "has one), projected together on the first two "
            "principal components. Dots are items, crosses users (coloured by the value "
            "most common in their history)."
        )
    else:
        st.caption(
            "all-MiniLM-L6-v2 embeddings of the item texts (dots); a user (cross) is the "
            "mean of the items in their training history."
        )
    points = _points(ws, run, space, color_by)
    if not show_users:
        points = points[points["kind"] == "item"]
    fig = viz.embedding_map_fig(points, color=color_by)
    event = st.plotly_chart(
        fig, key="e-map", on_select="rerun", selection_mode=("box", "lasso", "points")
    )
    st.caption(
        "Drag a box or lasso (toolbar) around points to list them below; double-click to clear."
    )
    keys = _selected_keys(event, fig)
    selected = points[points["key"].isin(keys)]
    if selected.empty:
        st.caption(
            "No points selected yet — the table shows the items closest to the centre "
            "of the map's densest category instead."
        )
        top = points["color"].value_counts().index[0]
        part = points[(points["kind"] == "item") & (points["color"] == top)]
        centre = part[["x", "y"]].mean().to_numpy()
        dist = np.hypot(part["x"] - centre[0], part["y"] - centre[1])
        selected = part.assign(_d=dist.to_numpy()).nsmallest(10, "_d").drop(columns="_d")
    _selected_table(ws, selected)


def _points(ws, run, space: str, color_by: str) -> pd.DataFrame:
    key = ("embedding_points", run.run_id if (run and space == MODEL_SPACE) else "text", color_by)
    if key in ws.cache:
        return ws.cache[key]
    ds = ws.dataset
    if space == MODEL_SPACE:
        user_emb, item_emb = run.model.embeddings()
        user_emb, item_emb = (
            np.asarray(user_emb, dtype=np.float64),
            np.asarray(item_emb, dtype=np.float64),
        )
    else:
        item_emb = np.asarray(ws.item_text, dtype=np.float64)
        sums = np.zeros((ds.num_users, item_emb.shape[1]))
        np.add.at(sums, ws.train[USER_IDX].to_numpy(), item_emb[ws.train[ITEM_IDX].to_numpy()])
        counts = np.bincount(ws.train[USER_IDX].to_numpy(), minlength=ds.num_users)[:, None]
        user_emb = sums / np.maximum(counts, 1)
    coords = viz.pca_2d(np.vstack([item_emb, user_emb]))
    item_color = _item_colors(ws, color_by)
    user_color = _user_colors(ws, item_color)
    points = pd.DataFrame(
        {
            "x": coords[:, 0],
            "y": coords[:, 1],
            "kind": ["item"] * ds.num_items + ["user"] * ds.num_users,
            "key": [f"item:{i}" for i in range(ds.num_items)]
            + [f"user:{u}" for u in range(ds.num_users)],
            "label": list(ds.items["title"].astype(str)) + [f"user {u}" for u in ds.user_ids],
            "color": np.concatenate([item_color, user_color]),
        }
    )
    ws.cache[key] = points
    return points


def _item_colors(ws, column: str) -> np.ndarray:
    ds = ws.dataset
    if column not in ds.attribute_columns:
        return np.array(["all"] * ds.num_items, dtype=object)
    return np.array(
        [
            str(v[0]) if isinstance(v, (list, tuple)) and len(v) else "(none)"
            for v in ds.items[column]
        ],
        dtype=object,
    )


def _user_colors(ws, item_color: np.ndarray) -> np.ndarray:
    """Each user's most frequent item colour in their training history."""
    ds = ws.dataset
    values, codes = np.unique(item_color.astype(str), return_inverse=True)
    counts = np.zeros((ds.num_users, len(values)), dtype=np.int64)
    np.add.at(counts, (ws.train[USER_IDX].to_numpy(), codes[ws.train[ITEM_IDX].to_numpy()]), 1)
    out = values[counts.argmax(axis=1)].astype(object)
    out[counts.sum(axis=1) == 0] = "(no history)"
    return out


def _selected_keys(event, fig) -> list[str]:
    """Point keys of a plotly selection, read back from the figure's customdata by trace and
    point index (the event reports positions)."""
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        points = (event or {}).get("selection", {}).get("points", [])
    keys = []
    for p in points or []:
        curve, index = p.get("curve_number"), p.get("point_index", p.get("point_number"))
        if curve is None or index is None or not 0 <= curve < len(fig.data):
            continue
        data = fig.data[curve].customdata
        if data is not None and 0 <= index < len(data):
            keys.append(str(data[index][0]))
    return keys


def _selected_table(ws, selected: pd.DataFrame) -> None:
    ds = ws.dataset
    items = selected[selected["kind"] == "item"]
    idx = items["key"].str.removeprefix("item:").astype(int).to_numpy()
    counts = ws.item_counts()
    table = pd.DataFrame(
        {
            "item_id": ds.item_ids[idx],
            "title": ds.items["title"].to_numpy()[idx],
            **{c: ds.items[c].to_numpy()[idx] for c in ds.attribute_columns},
            "interactions": counts[idx],
        }
    )
    for c in ds.attribute_columns:
        table[c] = table[c].map(ui.join_values)
    users = selected[selected["kind"] == "user"]
    st.markdown(f"**{len(items)} items** and **{len(users)} users** listed")
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
