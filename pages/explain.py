"""Explain page (being wired to recsys_core.explain)."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # `AppTest.from_file(page)` runs
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # pages without app.py

import streamlit as st

from pages import ui


def render() -> None:
    st.title("Explain")
    ui.guarded(_body)


def _body() -> None:
    ws = ui.workspace()
    ui.require_model(ws)


render()
