"""Real-browser test: the app on the shipped demo data, driven by Playwright in Debian chromium.

Starts ``streamlit run app.py`` exactly as a user would (no arguments: demo data, automatic
background training), waits for the flagship model, then checks that recommendations are shown
and the graph renders (vis-network draws a canvas inside the page's iframe, offline).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, open_page, streamlit_server

#: Seconds allowed for the demo's flagship model (about a minute on a quiet 2-core CPU).
MODEL_TIMEOUT = 300

SERVER_LOG: list[str] = []  # the server's output, for failure messages

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    SERVER_LOG.clear()
    SERVER_LOG.append(str(log))
    with streamlit_server(log) as url:
        yield url


@pytest.fixture(scope="module")
def browser_page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(app_url)
        yield page
        browser.close()


def wait_for_flagship(page) -> None:
    """The sidebar's active model becomes gnn-llm once the background training is done."""
    deadline = time.time() + MODEL_TIMEOUT
    while time.time() < deadline:
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        if "gnn-llm" in sidebar and "Training in the background" not in sidebar:
            return
        time.sleep(2)
    log = Path(SERVER_LOG[0]).read_text(errors="replace")[-3000:] if SERVER_LOG else ""
    raise TimeoutError(
        f"the demo's flagship model was not ready in time:\n{sidebar}\nserver log:\n{log}"
    )


def test_demo_model_recommendations_and_graph(browser_page):
    page = browser_page
    page.locator("h1", has_text="Data").first.wait_for(timeout=90_000)
    page.locator('[data-testid="stMetric"]').nth(2).wait_for(timeout=90_000)
    wait_for_flagship(page)

    open_page(page, "Recommendations")
    page.get_by_text("Top recommendations").first.wait_for(timeout=60_000)
    frames = page.locator('[data-testid="stDataFrame"]')
    frames.nth(1).wait_for(timeout=60_000)
    assert frames.count() >= 2
    assert "gnn-llm" in page.locator('[data-testid="stMain"]').inner_text()
    download = page.get_by_text("Download recommendations (CSV)")
    download.first.wait_for(timeout=60_000)  # drawn after the tables: wait, do not race it
    assert download.count() == 1

    open_page(page, "Graph")
    iframe = page.locator('iframe[title="Interactive neighbourhood graph"]')
    iframe.wait_for(timeout=60_000)
    graph = page.frame_locator('iframe[title="Interactive neighbourhood graph"]')
    canvas = graph.locator("#mynetwork canvas")
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 200
    assert graph.locator(".rs-legend").inner_text().count("user") >= 1
    frame = next(f for f in page.frames if f != page.main_frame and "mynetwork" in f.content())
    assert frame.evaluate("() => window.recscopeGraphReady === true")
    assert frame.evaluate("() => nodes.length") > 5
    # Offline: every script is inline (nothing loaded from a CDN).
    assert frame.evaluate("() => [...document.scripts].filter(s => s.src).length") == 0

    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "Traceback" not in body and "Something went wrong" not in body
