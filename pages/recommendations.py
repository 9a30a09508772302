"""Recommendations page: a user's history and top-K list, and cold start for a brand-new item."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from recscope_ui import ui
from recsys_core.services.cold_start import cold_start_reach, cold_start_text
from recsys_core.services.workspace import ensure_item_text


def render() -> None:
    st.title("Recommendations")
    ui.guarded(_body)


def _body() -> None:
    ws = ui.workspace()
    run = ui.require_model(ws)
    left, right = st.columns([2, 3])
    user = ui.user_picker(ws, "r-user", left)
    with right:
        if run is not None:
            st.caption(
                f"Model: **{ui.md(run.run_id)}** (change it in the sidebar). Seen items are "
                "excluded; **cold** = no training interactions (recommended from text and "
                "attributes), **long tail** = outside the items that hold 80% of training "
                "interactions, **held out** = the user really interacted with it in the "
                "test split."
            )
    left, right = st.columns([2, 3])
    with left:
        _history(ws, user)
    with right:
        if run is not None:
            _top_k(ws, run, user)
    if run is not None:
        st.divider()
        _cold_start(ws, run)


def _history(ws, user: str) -> None:
    st.subheader("History")
    history = ws.user_history(user)
    frame = pd.DataFrame(
        {
            "item_id": history["item_id"].to_numpy(),
            "title": history["title"].to_numpy(),
            **{c: history[c].map(ui.join_values).to_numpy() for c in ws.dataset.attribute_columns},
            "rating": history["rating"].to_numpy(),
            "date": history["timestamp"].map(ui.format_time).to_numpy(),
        }
    )
    st.caption(f"{len(frame)} training interactions, newest first.")
    st.dataframe(frame, hide_index=True, height=420)
    ui.download_csv("Download history (CSV)", frame, f"history_{user}.csv", key="r-dl-hist")


def _top_k(ws, run, user: str) -> None:
    st.subheader("Top recommendations")
    ds = ws.dataset
    cols = st.columns([1, 2])
    k = cols[0].slider("K", 5, 50, 10, key="r-k")
    candidates = None
    if ds.attribute_columns:
        column = ds.attribute_columns[0]
        values = _attribute_values(ws, column)
        chosen = cols[1].multiselect(
            f"Only these {column} values", values, key="r-filter", placeholder=f"any {column}"
        )
        if chosen:
            wanted = set(chosen)
            mask = ds.items[column].map(lambda v: bool(wanted.intersection(v or [])))
            candidates = ds.item_ids[mask.to_numpy()]
            if not len(candidates):
                st.warning("No item has those values.")
                return
    recs = run.model.recommend(users=[user], k=k, candidates=candidates)
    if recs.empty:
        st.info("Nothing left to recommend: the user has seen every candidate item.")
        return
    frame = _decorate(ws, user, recs)
    ui.number_table(
        frame,
        ["score"],
        height=420,
        column_config={"rank": st.column_config.NumberColumn(width="small")},
    )
    hits = int(frame["held out"].sum())
    st.caption(f"{hits} of these {len(frame)} are in the user's held-out test interactions.")
    ui.download_csv(
        "Download recommendations (CSV)", frame, f"recommendations_{user}.csv", key="r-dl-recs"
    )


def _decorate(ws, user: str, recs: pd.DataFrame) -> pd.DataFrame:
    ds = ws.dataset
    idx = ds.item_idx(recs["item_id"].tolist())
    counts = ws.item_counts()
    head = ws.head_items()
    held = ws.test_items(user)
    # Markers next to the score, metadata after: the table is read left to right.
    out = pd.DataFrame(
        {
            "rank": recs["rank"].to_numpy(),
            "title": ds.items["title"].to_numpy()[idx],
            "score": recs["score"].to_numpy(),
            "cold": counts[idx] == 0,
            "long tail": [
                (c > 0 and i not in head) for c, i in zip(counts[idx], recs["item_id"], strict=True)
            ],
            "held out": recs["item_id"].isin(held).to_numpy(),
        }
    )
    for column in ds.attribute_columns:
        out[column] = pd.Series(ds.items[column].to_numpy()[idx]).map(ui.join_values).to_numpy()
    out["item_id"] = recs["item_id"].to_numpy()
    return out


def _attribute_values(ws, column: str) -> list[str]:
    key = f"values_{column}"
    if key not in ws.cache:
        ws.cache[key] = sorted({str(v) for vs in ws.dataset.items[column] for v in (vs or [])})
    return ws.cache[key]


def _cold_start(ws, run) -> None:
    st.subheader("Cold start: who would a new item reach?")
    st.caption(
        "Describe an item that is not in the catalogue. Its text is embedded with the "
        "same language model as the catalogue. The flagship scores the new item itself, "
        "exactly as it scores a catalogue item without interactions (text and attributes); "
        "other models are asked through the most similar catalogue items. Users are ranked "
        "by how high the item would sit in their own list."
    )
    ds = ws.dataset
    with st.form("r-cold"):
        c1, c2 = st.columns([2, 1])
        title = c1.text_input("Title", key="r-cold-title", placeholder="e.g. The Clockwork Archive")
        attrs = {}
        for column in ds.attribute_columns:
            attrs[column] = c2.multiselect(
                column.capitalize(), _attribute_values(ws, column), key=f"r-cold-{column}"
            )
        description = st.text_area(
            "Description",
            key="r-cold-desc",
            height=90,
            placeholder="Two or three sentences about the item.",
        )
        submitted = st.form_submit_button("Find users", type="primary")
    if submitted:
        if not title.strip() and not description.strip():
            st.warning("Enter a title or a description first.")
            return
        text = cold_start_text(ws, title.strip(), description.strip(), attrs)
        with st.spinner("Embedding the text…"):
            encoder = ui.text_encoder()
            ensure_item_text(ws, ui.text_encoder)
            emb = np.asarray(encoder.encode([text]), dtype=np.float32)[0]
        users, neighbours = cold_start_reach(run.model, ws, emb, attributes=attrs)
        ws.cache["cold_start"] = (text, users, neighbours)
    if "cold_start" in ws.cache:
        text, users, neighbours = ws.cache["cold_start"]
        st.caption("Text embedded:")
        st.text(text)
        left, right = st.columns(2)
        with left:
            st.markdown("**Users it would reach**")
            st.dataframe(
                users,
                hide_index=True,
                column_config={
                    "score": st.column_config.NumberColumn(
                        format="%.3f", help="Standardised within each user"
                    )
                },
            )
            ui.download_csv("Download users (CSV)", users, "cold_start_users.csv", key="r-dl-cold")
        with right:
            st.markdown("**Most similar catalogue items**")
            st.dataframe(
                neighbours,
                hide_index=True,
                column_config={"similarity": st.column_config.NumberColumn(format="%.3f")},
            )


ui.run_page(render)
