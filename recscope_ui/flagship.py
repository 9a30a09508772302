"""Streamlit sections the Train and Metrics pages share about the flagship's parts: the
validation decomposition of a trained run (:func:`recsys_core.views.flagship.flagship_parts`)."""

from __future__ import annotations

import streamlit as st

from recscope_ui import ui
from recsys_core.views.flagship import flagship_parts, flagship_parts_fig, selection_rule


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
