"""A real browser opens the graph HTML of a hostile dataset and nothing in it runs.

Ids, titles, descriptions and categories of a tiny dataset are XSS payloads that set
``window.__pwned`` (or open a dialog) if they ever execute. The dataset goes through ingestion,
the PyG graph, :func:`recsys_core.graph.k_hop_networkx` and :func:`recsys_core.viz.graph_html`
exactly as in the app; the page is opened from a file in Playwright's chromium, every node is
hovered (vis-network positions via ``network.getPositions()`` + ``canvasToDOM``) and its
tooltip must show the payload as literal text. No dialog may open, the probe must stay unset
and the page may load nothing (an injected ``<img src=x>`` would request ``x``).
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import pandas as pd
import pytest

from recsys_core import viz
from recsys_core.graph import build_hetero_graph, k_hop_networkx
from recsys_core.html_safety import graph_label, graph_title
from recsys_core.ingest import load_dataset
from recsys_core.views.graph import describe_nodes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=window.__pwned=1>",
    '"><svg onload=window.__pwned=1>',
    "javascript:window.__pwned=1",
    '<a href="javascript:window.__pwned=1">x</a>',
    "</script><script>window.__pwned=1</script>",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "an href=x and &lt;b&gt; entities",
    "<iframe srcdoc='<script>parent.__pwned=1</script>'></iframe>",
    # Regular-expression syntax: vis-network's "html" label mode built a RegExp from the text.
    'user <img src=y onerror=alert("xss-user (unbalanced [ * + ? \\ |',
    "a) b] c{ d* e+ f? g\\ h| i^ j$ k.",
]


def _csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory):
    """The graph page around a hostile user, with the unescaped texts it should show."""
    users = ["u-" + PAYLOADS[0], "u-" + PAYLOADS[1], "u-" + PAYLOADS[2], PAYLOADS[10]]
    items = [f"i{j}-{p}" for j, p in enumerate(PAYLOADS[3:8])]
    interactions = pd.DataFrame({
        "user_id": [users[0], users[0], users[0], users[1], users[1], users[2], users[2],
                    users[3], users[3]],
        "item_id": [items[0], items[1], items[2], items[1], items[3], items[2], items[4],
                    items[0], items[4]],
        "rating": [5, 4, 3, 2, 5, 4, 1, 3, 4],
    })
    metadata = pd.DataFrame({
        "item_id": items,
        "title": PAYLOADS[5:9] + [PAYLOADS[11]],
        "description": [p + " is a long enough description to be read as text" for p in
                        PAYLOADS[:5]],
        "genres": [f"{PAYLOADS[6]}|{PAYLOADS[7]}", PAYLOADS[1], f"{PAYLOADS[6]}|{PAYLOADS[8]}",
                   PAYLOADS[7], PAYLOADS[1]],
    })
    dataset = load_dataset(("hostile interactions.csv", _csv(interactions)),
                           ("hostile items.csv", _csv(metadata)), categorical_cols=["genres"],
                           text_cols=["description"])
    assert dataset.num_users == 4 and dataset.num_items == 5
    graph = k_hop_networkx(build_hetero_graph(dataset), "user", 0, num_hops=3, max_nodes=100)
    labels, titles = describe_nodes(graph, dataset)
    page = viz.graph_html(graph, center="user:0", labels=labels, titles=titles,
                          edge_scores={next(iter(graph.edges)): 1.0})
    path = tmp_path_factory.mktemp("graph") / "graph.html"
    path.write_text(page, encoding="utf-8")
    # What each tooltip must show: the title text itself (as graph_title cleaned it).
    expected = {key: html.unescape(graph_title(text)) for key, text in titles.items()}
    assert len(expected) == graph.number_of_nodes() >= 10
    return path, expected, {key: graph_label(text) for key, text in labels.items()}


def _normalise(text: str) -> str:
    return " ".join(text.split())


def test_graph_page_runs_no_payload_and_shows_every_tooltip_as_text(hostile_page):
    from playwright.sync_api import sync_playwright

    path, expected, labels = hostile_page
    dialogs, requests, errors = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.add_init_script("window.__pwned = undefined;")
            page.goto(path.as_uri())
            page.wait_for_function("window.recscopeGraphReady === true", timeout=30_000)

            # Freeze the layout on a grid (no overlaps, so each hover hits one node).
            keys = page.evaluate("""() => {
                network.stopSimulation();
                network.setOptions({physics: {enabled: false}});
                const ids = nodes.getIds();
                ids.forEach((id, k) => network.moveNode(id, (k % 5) * 180, Math.floor(k / 5) * 160));
                network.fit({animation: false});
                network.redraw();
                return ids;
            }""")
            assert sorted(keys) == sorted(expected)
            # Every title became a text-only DOM node; every label is the escaped string.
            stored = page.evaluate("""() => nodes.get().map(n => ({
                id: n.id, label: n.label,
                element: n.title instanceof Element, text: n.title.textContent,
                children: n.title.children ? n.title.children.length : -1}))""")
            for node in stored:
                assert node["element"] and node["children"] == 0, node
                assert _normalise(node["text"]) == _normalise(expected[node["id"]]), node
                assert node["label"] == labels[node["id"]]
            edge_titles = page.evaluate(
                "() => edges.get().map(e => [e.title instanceof Element, e.title.children.length])")
            assert edge_titles and all(is_element and not kids for is_element, kids in edge_titles)

            canvas = page.locator("#mynetwork canvas").bounding_box()
            tooltip = page.locator("div.vis-tooltip")
            for key in keys:
                point = page.evaluate(
                    "(id) => network.canvasToDOM(network.getPositions([id])[id])", key)
                x, y = canvas["x"] + point["x"], canvas["y"] + point["y"]
                page.mouse.move(x - 40, y - 40)
                page.mouse.move(x, y, steps=4)
                page.wait_for_function(
                    "(want) => { const t = document.querySelector('div.vis-tooltip');"
                    " return t && t.style.visibility !== 'hidden' &&"
                    " t.textContent.replace(/\\s+/g, ' ').trim() === want; }",
                    arg=_normalise(expected[key]), timeout=10_000)
                assert tooltip.locator("*:not(div)").count() == 0  # text only, no markup
                page.mouse.click(x, y)  # selecting a node must not run anything either
            page.wait_for_timeout(300)
            assert page.evaluate("() => window.__pwned") is None
            assert page.locator("img, svg, iframe, a").count() == 0
        finally:
            browser.close()
    assert dialogs == []
    assert errors == []  # e.g. no "Invalid regular expression" from a title's "("
    assert requests == [path.as_uri()], requests
