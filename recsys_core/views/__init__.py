"""View models: what each page shows, computed in the library (no streamlit here).

A page reads session state, calls one of these functions and draws what it returns:
:mod:`~recsys_core.views.data` (interaction counts),
:mod:`~recsys_core.views.embeddings` (the 2-D map and its listings),
:mod:`~recsys_core.views.explain` (scores and ranks around an explanation),
:mod:`~recsys_core.views.graph` (node labels and tooltips, an explanation's subgraph) and
:mod:`~recsys_core.views.metrics` (the headline table and the sidebar's summary). The figures
drawn from them are built in :mod:`recsys_core.viz`.
"""
