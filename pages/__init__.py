"""RecScope's Streamlit pages (registered explicitly in ``app.py``) and their shared helpers
(:mod:`pages.ui`)."""
