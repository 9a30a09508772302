"""Figure builders for the app: pyvis graph HTML and plotly charts.

Every function here is pure: it takes data and returns an HTML string or a
:class:`plotly.graph_objects.Figure`; nothing is drawn or saved. User-controlled strings (ids,
titles, category names) are escaped before they reach HTML (see :mod:`recsys_core.html_safety`);
plotly renders hover text and tick labels as text, but its hover templates interpret a few tags,
so hover strings are escaped too. The data behind the figures (node labels and tooltips, an
explanation's subgraph, the embedding map) comes from :mod:`recsys_core.views`.

- :mod:`~recsys_core.viz.graph_html`: the pyvis graph page;
- :mod:`~recsys_core.viz.figures`: data, training, metric and embedding charts;
- :mod:`~recsys_core.viz.explain_figures`: explanation charts;
- :mod:`~recsys_core.viz.colors`: node colours shared by all of them;
- :mod:`~recsys_core.viz.layout`: the compact chart layout (height, margins) of the charts.
"""

from .colors import CENTER_COLOR, HIGHLIGHT_EDGE_COLOR, NODE_COLORS, node_type_color
from .explain_figures import attention_heatmap_fig, contributions_bar_fig, deletion_curves_fig
from .figures import (
    activity_over_time_fig,
    attribute_counts_fig,
    compare_curves_fig,
    degree_histogram_fig,
    embedding_map_fig,
    item_item_grid_fig,
    metric_bars_fig,
    metrics_at_k_fig,
    per_user_histogram_fig,
    rating_histogram_fig,
    training_curves_fig,
)
from .graph_html import graph_html

__all__ = [
    "CENTER_COLOR",
    "HIGHLIGHT_EDGE_COLOR",
    "NODE_COLORS",
    "activity_over_time_fig",
    "attention_heatmap_fig",
    "attribute_counts_fig",
    "compare_curves_fig",
    "contributions_bar_fig",
    "degree_histogram_fig",
    "deletion_curves_fig",
    "embedding_map_fig",
    "graph_html",
    "item_item_grid_fig",
    "metric_bars_fig",
    "metrics_at_k_fig",
    "node_type_color",
    "per_user_histogram_fig",
    "rating_histogram_fig",
    "training_curves_fig",
]
