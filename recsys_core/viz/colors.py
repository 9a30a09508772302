"""Node colours shared by the graph view and the charts."""

from __future__ import annotations

from collections.abc import Sequence

#: Node colours per node type; attribute types beyond the named ones cycle through the rest.
NODE_COLORS: dict[str, str] = {"user": "#4C78A8", "item": "#F58518"}
_EXTRA_COLORS = [
    "#54A24B",
    "#B279A2",
    "#E45756",
    "#72B7B2",
    "#EECA3B",
    "#9D755D",
    "#BAB0AC",
    "#FF9DA6",
]
CENTER_COLOR = "#D62728"
HIGHLIGHT_EDGE_COLOR = "#D62728"


def node_type_color(node_type: str, node_types: Sequence[str] | None = None) -> str:
    """Colour of a node type: fixed for ``user``/``item``, stable per position otherwise."""
    if node_type in NODE_COLORS:
        return NODE_COLORS[node_type]
    others = sorted(t for t in (node_types or [node_type]) if t not in NODE_COLORS)
    pos = others.index(node_type) if node_type in others else abs(hash(node_type))
    return _EXTRA_COLORS[pos % len(_EXTRA_COLORS)]
