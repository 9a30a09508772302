"""Real-browser test: a report file opened from disk (file:// URL) in Debian chromium, offline.

The report of a run on data with hostile item titles must draw every plotly figure with no
page error, no console error (a Content-Security-Policy violation would be one), no dialog
(an escaped ``onerror=alert`` never runs) and no request leaving the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS
from test_report import HOSTILE, hostile_data

from recsys_core.models import create_model
from recsys_core.privacy import Pseudonymizer
from recsys_core.report import ReportOptions, build_report, write_report

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-report")
    dataset, train, test = hostile_data(root)
    train_ds = dataset.subset_interactions(train)
    model = create_model("ease", reg_lambda=5.0).fit(train_ds, train)
    info = {"model": "ease", "config": {"reg_lambda": 5.0}, "data": {"name": HOSTILE}}
    html = build_report(model, train_ds, info, test, pseudonymizer=Pseudonymizer.random(),
                        options=ReportOptions(baselines=("pop",), n_resamples=200,
                                              faithfulness_users=3, faithfulness_k=2))
    return write_report(root / "report.html", html), html.count("Plotly.newPlot(")


def test_report_renders_offline_without_errors(report_file):
    from playwright.sync_api import sync_playwright

    path, n_figures = report_file
    assert n_figures >= 7
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"),
                                          dialog.dismiss()))

        def block(route) -> None:
            requests.append(route.request.url)
            route.abort()

        page.route(lambda url: not url.startswith("file:"), block)
        page.goto(path.resolve().as_uri())
        page.wait_for_load_state("load")
        page.wait_for_function(
            f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figures}",
            timeout=60_000)
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".filter(d => d.data && d.data.length && d.querySelector('.main-svg')).length")
        title = page.title()
        bars = page.locator("#figure-1 .point").count()
        bar = page.locator("#figure-1 .point path").first
        bar.scroll_into_view_if_needed()
        box = bar.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        # interactive: plotly draws a hover label over the bar under the mouse
        page.locator("#figure-1 .hoverlayer .hovertext").first.wait_for(timeout=10_000)
        text = page.locator("body").inner_text()
        browser.close()
    assert not errors, errors
    assert not requests, requests
    assert drawn == n_figures
    assert bars >= 4  # recall and ndcg for two models
    assert HOSTILE in title and HOSTILE in text  # shown as text, never run
    assert "Privacy mode" in text and "person-alpha" not in text
