"""Real-browser test: every page opened by its URL as the first request of a fresh server.

A refreshed tab after a restart, a bookmark or a shared link reaches a page before ``app.py``
has ever run in the server process. Each page must still show the whole app: the app's own
navigation (never Streamlit's raw ``pages/`` file list), the shared RecScope sidebar panel,
the wide layout, and no page error (uncaught script errors included, such as the regular
expression vis-network once built from a node title). Run on the shipped demo data and on a
data set whose ids, titles and categories are markup and regular-expression syntax.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, NAV_LINKS, page_errors, streamlit_server

from recscope_ui.navigation import PAGE_SPECS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]

TITLES = [title for _, title, _ in PAGE_SPECS]
#: URL path of each page: the default page is the root, the others their file name.
PATHS = {title: ("" if index == 0 else Path(script).stem)
         for index, (script, title, _) in enumerate(PAGE_SPECS)}
#: Names Streamlit's legacy navigation would list (the files in pages/ and the entry script).
RAW_NAMES = {"app", "ui", *(Path(script).stem for script, _, _ in PAGE_SPECS)}
HOSTILE = [
    'user <img src=y onerror=alert("xss-user (unbalanced [ * + ? \\ |',
    "<script>window.__pwned=1</script>",
    "a) b] c{ d* e+ f? g\\ h| i^ j$ k.",
    "[link](javascript:alert(1)) **bold** :red[x] $x$",
]


def _hostile_files(folder: Path) -> list[str]:
    """A small data set whose every string is hostile; returns the app's command-line args."""
    users = [f"{HOSTILE[k % 4]} #{k}" for k in range(12)]
    items = [f"{HOSTILE[(k + 1) % 4]} item {k}" for k in range(16)]
    rows = [(users[u], items[(u * 3 + j) % 16], 1 + (u + j) % 5)
            for u in range(12) for j in range(7)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).to_csv(
        folder / "interactions.csv", index=False)
    pd.DataFrame({
        "item_id": items,
        "title": [f"{HOSTILE[k % 4]} title {k}" for k in range(16)],
        "description": [f"{HOSTILE[(k + 2) % 4]} is a description long enough to read"
                        for k in range(16)],
        "genres": [f"{HOSTILE[k % 4][:12]}|{HOSTILE[(k + 3) % 4][:12]}" for k in range(16)],
    }).to_csv(folder / "items.csv", index=False)
    pd.DataFrame({"user_a": users[:6], "user_b": users[6:]}).to_csv(
        folder / "user_edges.csv", index=False)
    return ["--interactions", str(folder / "interactions.csv"), "--items",
            str(folder / "items.csv"), "--user-edges", str(folder / "user_edges.csv")]


def _check_page_by_url(url: str, title: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("dialog", lambda dialog: (errors.append(f"dialog {dialog.message}"),
                                              dialog.dismiss()))
            page.goto(f"{url}/{PATHS[title]}")
            # The app's navigation is there as soon as anything is (it is drawn first).
            page.locator(NAV_LINKS).first.wait_for(timeout=90_000)
            page.locator("h1", has_text=title).first.wait_for(timeout=90_000)
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("RecScope", exact=True).wait_for(timeout=90_000)
            links = [t.split()[-1] for t in page.locator(NAV_LINKS).all_inner_texts()]
            assert links == TITLES, links  # (each link's text starts with its icon's name)
            assert page.locator('[data-testid="stSidebarNav"]').count() == 0
            lines = {line.strip() for line in sidebar.inner_text().splitlines()}
            assert not lines & RAW_NAMES, lines & RAW_NAMES  # raw file names, lower case
            assert "Data:" in sidebar.inner_text()  # the shared panel: data set, model, device
            width = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()["width"]
            assert width > 1000, f"narrow layout ({width:.0f} px)"
            if title == "Graph":
                frame = page.frame_locator('iframe[title="Interactive neighbourhood graph"]')
                frame.locator("#mynetwork canvas").wait_for(timeout=90_000)
                time.sleep(1.0)  # let vis-network draw and run the tooltip script
            page.wait_for_timeout(500)
            assert page_errors(page) == []
            assert page.evaluate("() => window.__pwned") is None
        except Exception:
            page.screenshot(path=str(tmp_path / f"{PATHS[title] or 'root'}.png"))
            raise
        finally:
            browser.close()
    assert errors == [], errors


@pytest.mark.parametrize("title", TITLES)
def test_page_by_url_on_fresh_server_demo(title, tmp_path):
    with streamlit_server(tmp_path / "server.log") as url:
        _check_page_by_url(url, title, tmp_path)


def test_every_page_by_url_on_a_fresh_server_hostile(tmp_path):
    """Hostile strings: the Graph page is the server's first request (its node titles once
    broke vis-network's label parser), then every other page by URL in new sessions."""
    args = _hostile_files(tmp_path)
    with streamlit_server(tmp_path / "server.log", app_args=args) as url:
        for title in ["Graph", *(t for t in TITLES if t != "Graph")]:
            _check_page_by_url(url, title, tmp_path)
