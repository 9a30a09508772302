"""Streamlit helpers shared by ``app.py`` and the pages in ``pages/`` (the only package here
that imports streamlit; :mod:`recsys_core` never does)."""
