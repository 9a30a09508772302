"""The pyvis graph as a self-contained HTML page (offline, every label and title escaped)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import networkx as nx

from ..html_safety import escape_html, graph_label, graph_title
from .colors import CENTER_COLOR, HIGHLIGHT_EDGE_COLOR, node_type_color

# pyvis always links Bootstrap from a CDN; the graph needs none of it, and the app must work
# offline, so those tags are removed from the generated page.
_CDN_TAG = re.compile(
    r"<(link|script)\b[^>]*https?://[^>]*>(\s*</script>)?", re.IGNORECASE | re.DOTALL
)
_HTML_COMMENT = re.compile(r"<!--(?:(?!-->).)*?node_modules(?:(?!-->).)*?-->", re.DOTALL)

# Runs after pyvis' drawGraph(): replace each (already escaped) title string by a DOM element
# holding plain text, so vis-network shows it with line breaks and decoded entities. The
# escaped string goes through a <textarea>, whose content the HTML parser treats as text.
_TOOLTIP_SCRIPT = """
<script type="text/javascript">
(function () {
  function toElement(escaped) {
    var decoder = document.createElement("textarea");
    decoder.innerHTML = escaped;
    var div = document.createElement("div");
    div.style.whiteSpace = "pre-line";
    div.style.maxWidth = "360px";
    div.textContent = decoder.value;
    return div;
  }
  function convert(dataset) {
    var updates = [];
    dataset.forEach(function (entry) {
      if (typeof entry.title === "string") {
        updates.push({id: entry.id, title: toElement(entry.title)});
      }
    });
    dataset.update(updates);
  }
  if (typeof nodes !== "undefined") { convert(nodes); }
  if (typeof edges !== "undefined") { convert(edges); }
  window.recscopeGraphReady = true;
})();
</script>
"""


def graph_html(
    graph: nx.DiGraph,
    center: str | None = None,
    labels: Mapping[str, str] | None = None,
    titles: Mapping[str, str] | None = None,
    edge_scores: Mapping[tuple[str, str], float] | None = None,
    height_px: int = 560,
    physics: bool = True,
    max_item_labels: int = 60,
) -> str:
    """Self-contained interactive HTML (vis-network inlined, no CDN) for a small graph.

    Args:
        graph (networkx.DiGraph): Nodes with ``node_type`` and ``label`` attributes, edges with
            ``relation`` and optional ``weight`` (as from
            :func:`recsys_core.graph.k_hop_networkx`).
        center (str, optional): Key of the node to emphasise. (default: :obj:`None`)
        labels (Mapping[str, str], optional): Display label per node key (default: the node's
            ``label`` attribute). Escaped here.
        titles (Mapping[str, str], optional): Hover text per node key; newlines allowed.
            Escaped here.
        edge_scores (Mapping[tuple[str, str], float], optional): Importance in ``[0, 1]`` per
            edge ``(u, v)`` (either direction), e.g. attention; such edges are drawn red with
            width growing with the score and the score in their tooltip. (default: :obj:`None`)
        height_px (int): Canvas height. (default: :obj:`560`)
        physics (bool): Force-directed layout (Barnes-Hut). (default: :obj:`True`)
        max_item_labels (int): With more item nodes than this, items are drawn without a label
            (their title stays in the tooltip) so the picture stays readable; the centre,
            users and attribute values keep theirs. (default: :obj:`60`)

    Returns:
        A complete HTML document, safe to embed with ``st.iframe``.
    """
    from pyvis.network import Network

    labels = labels or {}
    titles = titles or {}
    scores = {}
    for (u, v), s in (edge_scores or {}).items():
        scores[(u, v)] = scores[(v, u)] = float(s)
    node_types = sorted({d.get("node_type", "node") for _, d in graph.nodes(data=True)})

    n_items = sum(d.get("node_type") == "item" for _, d in graph.nodes(data=True))
    hide_items = n_items > max_item_labels

    net = Network(height=f"{height_px}px", width="100%", directed=False, cdn_resources="in_line")
    for key, attrs in graph.nodes(data=True):
        node_type = attrs.get("node_type", "node")
        is_center = key == center
        label = labels.get(key, attrs.get("label", key))
        net.add_node(
            key,
            label=" "
            if hide_items and node_type == "item" and not is_center
            else graph_label(label),
            title=graph_title(titles.get(key, f"{node_type}: {attrs.get('label', key)}")),
            color=CENTER_COLOR if is_center else node_type_color(node_type, node_types),
            size=26 if is_center else (14 if node_type in ("user", "item") else 10),
            shape="star" if is_center else ("dot" if node_type in ("user", "item") else "diamond"),
            borderWidth=3 if is_center else 1,
        )
    weights = [float(d.get("weight", 1.0)) for _, _, d in graph.edges(data=True)]
    w_max = max(weights) if weights else 1.0
    for u, v, attrs in graph.edges(data=True):
        relation = str(attrs.get("relation", ""))
        weight = float(attrs.get("weight", 1.0))
        text = relation if relation != "rates" else f"rates (rating {weight:g})"
        edge = {
            "title": graph_title(text),
            "width": 1.0 + 2.0 * weight / max(w_max, 1e-9),
            "color": "#9A9A9A",
        }
        if (u, v) in scores:
            s = scores[(u, v)]
            edge.update(
                color=HIGHLIGHT_EDGE_COLOR,
                width=1.5 + 8.0 * s,
                title=graph_title(f"{text}\nimportance {s:.3f}"),
            )
        net.add_edge(u, v, **edge)
    net.options = {
        "nodes": {"font": {"size": 13, "multi": False, "face": "sans-serif"}},
        "edges": {"smooth": False},
        "interaction": {"hover": True, "tooltipDelay": 120, "navigationButtons": False},
        "physics": {
            "enabled": bool(physics),
            "solver": "barnesHut",
            "barnesHut": {
                "gravitationalConstant": -6000,
                "springLength": 110,
                "springConstant": 0.03,
                "damping": 0.35,
            },
            "stabilization": {"enabled": True, "iterations": 150, "fit": True},
        },
    }
    page = net.generate_html()
    page = _HTML_COMMENT.sub("", page)
    page = _CDN_TAG.sub("", page)
    legend = _legend_html(node_types, center is not None)
    page = page.replace("<body>", "<body>\n" + legend, 1)
    page = page.replace("</body>", _TOOLTIP_SCRIPT + "</body>", 1)
    return page


def _legend_html(node_types: Sequence[str], with_center: bool) -> str:
    chips = []
    for nt in node_types:
        chips.append(
            f'<span class="rs-chip"><span class="rs-dot" style="background:'
            f'{node_type_color(nt, node_types)}"></span>{escape_html(nt)}</span>'
        )
    if with_center:
        chips.append(
            f'<span class="rs-chip"><span class="rs-dot" style="background:'
            f'{CENTER_COLOR}"></span>selected</span>'
        )
    style = (
        "<style>.rs-legend{font:13px sans-serif;margin:4px 0 6px 0}"
        ".rs-chip{display:inline-block;margin-right:14px}"
        ".rs-dot{display:inline-block;width:11px;height:11px;border-radius:50%;"
        "margin-right:5px;vertical-align:-1px}</style>"
    )
    return style + '<div class="rs-legend">' + "".join(chips) + "</div>"
