"""The compact chart layout shared by the app's plotly charts."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

#: Height (px) of a compact chart.
CHART_HEIGHT = 340

#: Margins (px) of a compact chart: room for the title above and the axis titles.
CHART_MARGIN = {"t": 50, "b": 40, "l": 50, "r": 10}


def compact_layout(fig: go.Figure, **layout: Any) -> go.Figure:
    """``fig`` laid out as a compact chart (:data:`CHART_HEIGHT` high, :data:`CHART_MARGIN`),
    then with ``layout`` applied over it.

    Args:
        fig (plotly.graph_objects.Figure): The chart.
        **layout: Plotly layout properties (``title``, ``xaxis_title``, ``legend`` ...); a
            ``height`` given here replaces the compact one, a ``margin`` its named sides.

    Returns:
        plotly.graph_objects.Figure: ``fig`` itself.
    """
    return fig.update_layout(height=CHART_HEIGHT, margin=dict(CHART_MARGIN)).update_layout(**layout)
