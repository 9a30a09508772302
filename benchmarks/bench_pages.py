"""Seconds each app page takes to render once a model is ready (target: under 2 s).

Two ways to measure:

* ``python benchmarks/bench_pages.py`` (default, AppTest): loads the demo data (or
  ``--interactions/--items/--user-edges``), trains the app's default models in-process exactly
  as the app does in the background, then renders every page (through ``app.py``, sidebar
  included) with Streamlit's AppTest: ``first`` is opening the page (including one-time work
  cached per session: graph build, embedding map, ...), ``again`` a rerun (what a user waits
  for after changing a widget).
* ``python benchmarks/bench_pages.py --browser`` starts ``streamlit run app.py`` on the demo data
  and drives Debian chromium with Playwright: waits for the flagship, then times each page from
  the navigation click until Streamlit reports the run finished. ``--screenshots DIR`` saves a
  PNG of every page there (docs/screenshots for the README).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PAGES = [
    ("data", "Data"),
    ("graph", "Graph"),
    ("train", "Train"),
    ("recommendations", "Recommendations"),
    ("metrics", "Metrics"),
    ("explain", "Explain"),
    ("embeddings", "Embeddings"),
]


def load_browser_support():
    """``tests/browser_support.py`` loaded from its file (``tests/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("browser_support",
                                                  ROOT / "tests" / "browser_support.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bench_apptest(args: argparse.Namespace) -> None:
    from streamlit.testing.v1 import AppTest

    from recscope_ui import ui
    from recsys_core.ingest import load_dataset
    from recsys_core.services.fitting import training_target
    from recsys_core.services.jobs import TrainingJob
    from recsys_core.services.plans import default_training_plan
    from recsys_core.services.workspace import prepare_workspace
    from recsys_core.text import default_encoder

    started = time.perf_counter()
    dataset = load_dataset(args.interactions, args.items, args.user_edges)
    ws = prepare_workspace(dataset, source="benchmark")
    print(
        f"data: {dataset.num_users:,} users, {dataset.num_items:,} items, "
        f"{len(dataset.interactions):,} interactions ({time.perf_counter() - started:.1f} s)"
    )
    plan, weights = default_training_plan(flagship_params=ui.AUTO_FLAGSHIP_PARAMS)
    job = ws.start_job(TrainingJob(training_target(ws, plan, default_encoder, weights), "bench"))
    started = time.perf_counter()
    while not job.join(5):
        print(f"  training: {job.describe()}", flush=True)
    ws.collect()
    if job.error:
        raise SystemExit(job.error)
    print(
        f"default models ready in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{r.run_id} ({r.train_seconds:.1f} s)" for r in ws.runs)
    )
    # One session for all pages, as in the browser: the app entry (sidebar included) runs
    # once to warm up; then each page is opened ("first", including work cached per session
    # such as the graph or the embedding map) and rerun ("again").
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state[ui.STATE_KEY] = ws
    at.run()
    print(f"\n{'page':<16}{'first (s)':>10}{'again (s)':>10}")
    worst = 0.0
    for page, _ in PAGES:
        times = []
        at.switch_page(f"pages/{page}.py")
        for _ in range(1 + args.repeat):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            if at.exception or at.error:
                problem = (at.exception or at.error)[0].value
                raise SystemExit(f"{page}: {problem}")
        again = statistics.median(times[1:]) if len(times) > 1 else float("nan")
        worst = max(worst, times[0], again)
        print(f"{page:<16}{times[0]:>10.2f}{again:>10.2f}")
    print(f"\nslowest: {worst:.2f} s (target < 2 s)")


def bench_browser(args: argparse.Namespace) -> None:
    # The app server and browser settings are the browser tests' (tests/browser_support.py).
    support = load_browser_support()
    CHROMIUM, CHROMIUM_ARGS, streamlit_server = (
        support.CHROMIUM, support.CHROMIUM_ARGS, support.streamlit_server)
    from playwright.sync_api import sync_playwright

    app_args = []
    if args.interactions != str(ROOT / "data" / "interactions.csv"):
        app_args += ["--interactions", args.interactions]
        app_args += ["--items", args.items] if args.items else []
        app_args += ["--user-edges", args.user_edges] if args.user_edges else []
    shots = Path(args.screenshots) if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    with streamlit_server(app_args=app_args) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url)
        started = time.perf_counter()
        page.locator("h1", has_text="Data").first.wait_for(timeout=120_000)
        print(f"first page shown after {time.perf_counter() - started:.1f} s")
        while True:
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            if "gnn-llm" in sidebar and "Training in the background" not in sidebar:
                break
            if time.perf_counter() - started > args.model_timeout:
                raise SystemExit("flagship not ready in time")
            time.sleep(1)
        print(f"flagship ready {time.perf_counter() - started:.1f} s after the first page")
        times: dict[str, list[float]] = {name: [] for name, _ in PAGES}
        for _ in range(1 + args.repeat):  # passes over all pages
            for name, title in PAGES:
                t0 = time.perf_counter()
                page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
                page.locator("h1", has_text=title).first.wait_for(timeout=120_000)
                _wait_idle(page)
                times[name].append(time.perf_counter() - t0)
                if shots and len(times[name]) == 1:
                    _settle(page, name)
                    page.screenshot(path=str(shots / f"{name}.png"))
        print(f"\n{'page':<16}{'first (s)':>10}{'median (s)':>11}")
        worst = 0.0
        for name, values in times.items():
            worst = max(worst, statistics.median(values))
            print(f"{name:<16}{values[0]:>10.2f}{statistics.median(values):>11.2f}")
        print(f"\nslowest median: {worst:.2f} s (target < 2 s)")
        if shots:
            _explain_shap_screenshot(page, shots)
        browser.close()


def _explain_shap_screenshot(page, shots: Path) -> None:
    """The Explain page's SHAP view (computed on request, so timed separately)."""
    page.locator('[data-testid="stSidebarNav"] a', has_text="Explain").first.click()
    page.locator("h1", has_text="Explain").first.wait_for(timeout=120_000)
    _wait_idle(page)
    t0 = time.perf_counter()
    page.locator('[data-testid="stMain"] button', has_text="SHAP").first.click()
    page.get_by_text("SHAP values (permutation explainer)").first.wait_for(timeout=300_000)
    _wait_idle(page, timeout=300)
    print(f"explain (SHAP view, computed on request): {time.perf_counter() - t0:.2f} s")
    time.sleep(1.5)
    page.screenshot(path=str(shots / "explain_shap.png"))


def _wait_idle(page, timeout: float = 120.0) -> None:
    """Until Streamlit's "running" indicator has been gone for a moment."""
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 0.25:
            return
        time.sleep(0.05)


def _settle(page, name: str) -> None:
    """Let iframes and charts finish drawing before a screenshot."""
    if name == "graph":
        frame = page.frame_locator('iframe[title="Interactive neighbourhood graph"]')
        frame.locator("#mynetwork canvas").wait_for(timeout=60_000)
        time.sleep(4)  # physics layout
    else:
        time.sleep(1.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", default=str(ROOT / "data" / "interactions.csv"))
    parser.add_argument("--items", default=str(ROOT / "data" / "items.csv"))
    parser.add_argument("--user-edges", default=str(ROOT / "data" / "user_edges.csv"))
    parser.add_argument("--repeat", type=int, default=2, help="reruns per page (default 2)")
    parser.add_argument("--browser", action="store_true", help="measure in chromium")
    parser.add_argument("--screenshots", metavar="DIR", help="with --browser: save PNGs here")
    parser.add_argument("--model-timeout", type=float, default=600.0)
    args = parser.parse_args()
    (bench_browser if args.browser else bench_apptest)(args)


if __name__ == "__main__":
    main()
