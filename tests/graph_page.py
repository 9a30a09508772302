"""Reading a page from :func:`recsys_core.viz.graph_html` back (test helper)."""

from __future__ import annotations

import json
import re


def graph_node_data(page: str) -> tuple[list[dict], list[dict]]:
    """The node and edge lists embedded in a page from :func:`recsys_core.viz.graph_html`."""
    found = re.findall(r"new vis\.DataSet\((\[.*?\])\);", page, flags=re.DOTALL)
    if len(found) < 2:
        raise ValueError("no vis-network data found in the page")
    return json.loads(found[0]), json.loads(found[1])
