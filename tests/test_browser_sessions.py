"""Real-browser test: two sessions at once (one training, one exploring) stay apart.

One ``streamlit run app.py`` server (demo data), two Playwright browser contexts in Debian
chromium, so two independent Streamlit sessions:

* **A** uploads a tiny interactions file of its own on the Data page (ids such as
  ``alice_only_A_03`` that appear nowhere in the demo data), without the default models, and
  starts training ``mf`` on the Train page (a 40 s wall-clock budget, so it is still training
  while B explores).
* **B**, meanwhile, keeps the demo data: once its first default model is there, it stops its
  default training on the Train page (while A's run goes on; the flagship would only keep the
  CPU busy), opens Recommendations and Graph, and trains a ``pop`` model of its own.

Checked on every page either session shows (text, widget values, visible table cells and the
graph's nodes, once the page has finished rerunning): no Streamlit exception or error message;
B never shows A's ids, file name or run names; after its upload, A never shows the demo's ids,
the demo's name or B's run names; each sidebar's run list holds exactly that session's runs;
A's run finishes normally although B pressed Stop; and the server log has no page error. About
two minutes on a busy 2-core machine; ``-rP`` prints a timeline.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, open_page, page_errors, streamlit_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]

A_FILE = "a_only.csv"
A_USERS = [f"alice_only_A_{u:02d}" for u in range(24)]
A_ITEMS = [f"item_only_A_{j:02d}" for j in range(20)]
#: A's mf run: many epochs, no early stop, a wall-clock budget so it is still training while
#: B explores (the budget ends a run normally; Stop would mark it "stopped early").
A_SETTINGS = {"epochs": ("200", "1000"), "time limit": ("", "40"), "patience": ("10", "1000")}
A_LABEL = "mf (epochs=1000, time_limit=40.0, patience=1000)"
#: Strings only session A may show (its uploaded ids and file name) once it has uploaded.
A_MARKERS = re.compile(r"alice_only_A|item_only_A|a_only\.csv|upload: ")
#: Strings only session B may show: the demo data (ids u0001 / i0001, its name) and the run
#: names its training creates (A's only run is "mf #1").
B_MARKERS = re.compile(
    r"\b[ui]\d{4}\b|demo book catalogue|demo data|(pop|ease|text-knn|gnn-llm) #\d"
)
#: Seconds to wait for a model or a job's end (B's first demo model takes seconds on a quiet
#: machine, A's run 40 s); generous for a busy 2-core machine.
TIMEOUT_S = 240


def a_interactions() -> str:
    """24 users x 8 items of 20, hourly timestamps: 192 interactions, all ids A's own."""
    lines = ["user_id,item_id,rating,timestamp"]
    for u, user in enumerate(A_USERS):
        for k in range(8):
            item = A_ITEMS[(3 * u + k) % len(A_ITEMS)]
            lines.append(f"{user},{item},{1 + (u + k) % 5},{1_600_000_000 + 3600 * (10 * u + k)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on the demo data; torch on one thread per process (a busy 2-core machine)."""
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with streamlit_server(log, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) as url:
        yield url, log


#: Everything the page shows, as text (see :meth:`Session.snapshot`); ``null`` while a rerun
#: is in progress (Streamlit keeps the previous run's elements, faded, until it ends).
SHOWN_TEXT = """() => document.querySelector('[data-stale="true"]') ? null : [
    document.body.innerText,
    ...[...document.querySelectorAll('input, textarea')].map(e => e.value),
    ...[...document.querySelectorAll('table[role="grid"] td, table[role="grid"] th')]
        .map(c => c.textContent),
].join('\\n')"""


class Session:
    """One browser context (one Streamlit session) and every text it showed."""

    def __init__(self, browser, url: str, name: str) -> None:
        self.name = name
        self.context = browser.new_context(viewport={"width": 1500, "height": 1000})
        self.page = self.context.new_page()
        self.page.goto(url)
        self.seen: list[tuple[str, str]] = []  # (where, text)
        self.started = time.monotonic()

    def sidebar(self) -> str:
        return self.page.locator('[data-testid="stSidebar"]').inner_text()

    def snapshot(self, where: str) -> str:
        """Record what the page shows and check it for errors.

        Taken once no element is stale (a rerun has finished drawing). The text includes what
        ``innerText`` leaves out: widget values (a select box shows its choice in an
        ``<input>``), the cells of every table (``st.dataframe`` draws on a canvas; its
        accessibility grid holds the visible cells) and the graph's nodes.
        """
        deadline = time.time() + 60
        while (text := self.page.evaluate(SHOWN_TEXT)) is None:
            assert time.time() < deadline, f"{self.name} on {where}: the page never settled"
            time.sleep(0.2)
        for frame in self.page.frames:
            if frame != self.page.main_frame and "mynetwork" in frame.content():
                text += "\n" + "\n".join(
                    frame.evaluate(
                        "() => nodes.get().map(n => `${n.id} ${n.label} ${n.title && "
                        "n.title.textContent}`)"
                    )
                )
        self.seen.append((where, text))
        print(f"{time.monotonic() - self.started:6.1f} s  {self.name}: {where}")  # timeline
        errors = page_errors(self.page)
        assert not errors, f"{self.name} on {where}: {errors}\n{text[-2000:]}"
        return text

    def wait_sidebar(self, predicate, what: str) -> str:
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline:
            text = self.sidebar()
            if predicate(text):
                return text
            time.sleep(1)
        raise TimeoutError(f"{self.name}: {what} did not happen in {TIMEOUT_S} s:\n{text}")

    def wait_graph(self) -> None:
        """The Graph page's vis-network canvas is drawn and its data loaded."""
        graph = self.page.frame_locator('iframe[title="Interactive neighbourhood graph"]')
        graph.locator("#mynetwork canvas").wait_for(timeout=60_000)
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('iframe')].some(f => "
            "f.contentWindow && f.contentWindow.recscopeGraphReady === true)",
            timeout=60_000,
        )

    def run_names(self) -> list[str]:
        """The runs of the sidebar's "Active model" box (this session's runs)."""
        box = self.page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]')
        box.first.click()
        options = self.page.get_by_role("option")
        options.first.wait_for(timeout=30_000)
        names = [n.strip() for n in options.all_inner_texts()]
        self.page.keyboard.press("Escape")
        return names

    def settle(self) -> None:
        """Wait until no element is stale (the current rerun has finished drawing)."""
        self.page.wait_for_function(
            "() => !document.querySelector('[data-stale=\"true\"]')", timeout=60_000
        )

    def set_number(self, label: str, default: str, value: str) -> None:
        """Type ``value`` into the number input ``label`` once it shows ``default`` (a previous
        form's input of the same name may linger while the page reruns)."""
        field = self.page.get_by_label(label, exact=True)
        deadline = time.time() + 60
        while True:
            self.settle()
            if field.count() == 1 and field.input_value() == default:
                break
            assert time.time() < deadline, f"{self.name}: no '{label}' input showing {default}"
            time.sleep(0.2)
        field.fill(value)
        field.press("Enter")
        self.settle()
        assert field.input_value() == value

    def choose_model(self, model: str, description: str) -> None:
        """Pick ``model`` in the Train page's Model box; wait for its description."""
        label = self.page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile("^Model$"))
        self.page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').filter(
            has=label
        ).first.click()
        self.page.get_by_role("option", name=model, exact=True).click()
        self.page.get_by_text(description).first.wait_for(timeout=30_000)

    def stop_training(self) -> None:
        """Press Stop until the job shows "Stopping…" or has ended (the demo's flagship may be
        done already on a fast machine).

        Pressed again after 10 s without effect: under load a click on a button inside an
        auto-refreshing fragment can be dropped while the page is still rerunning.
        """
        stop = self.page.get_by_role("button", name="Stop")
        start = self.page.get_by_role("button", name="Start training")
        stopping = self.page.get_by_text("Stopping…")
        deadline, clicked, presses = time.time() + TIMEOUT_S, 0.0, 0
        while time.time() < deadline:
            if stopping.count() or (start.count() and start.is_enabled()):
                print(f"{self.name}: Stop pressed {presses} time(s)")
                return
            if stop.count() and time.time() - clicked > 10:
                self.settle()
                stop.first.click()
                clicked, presses = time.time(), presses + 1
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}: the job neither stopped nor ended")

    def start_training(self) -> None:
        start = self.page.get_by_role("button", name="Start training")
        start.wait_for(timeout=30_000)
        self.settle()
        deadline = time.time() + TIMEOUT_S
        while not start.is_enabled():  # disabled while a job runs
            assert time.time() < deadline, f"{self.name}: Start training stayed disabled"
            time.sleep(0.5)
        start.click()


def test_two_sessions_one_training_one_exploring_stay_apart(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, log = server
    upload = tmp_path / A_FILE
    upload.write_text(a_interactions())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        sessions = []
        try:
            a = Session(browser, url, "A")
            b = Session(browser, url, "B")
            sessions += [a, b]
            for s in (a, b):
                s.page.locator("h1", has_text="Data").first.wait_for(timeout=90_000)
                s.page.locator('[data-testid="stMetric"]').nth(2).wait_for(timeout=90_000)

            # A: upload its own data (no default models) ...
            a.page.get_by_role("tab", name="Upload data").click()
            auto = a.page.get_by_role("checkbox", name="Train the default models right away")
            for attempt in range(3):
                # The page reruns while the default models train; a file set during a rerun
                # can be dropped with the old uploader element, so set it again if needed.
                a.page.locator(
                    '[data-testid="stFileUploader"] input[type="file"]'
                ).first.set_input_files(str(upload))
                try:
                    auto.wait_for(state="attached", timeout=60_000)
                    break
                except Exception:
                    if attempt == 2:
                        raise
            a.page.get_by_text("Train the default models right away").click()
            assert not auto.is_checked()
            a.page.get_by_role("button", name="Load data").click()
            a.page.get_by_text(f"Loaded {len(A_USERS)} users").wait_for(timeout=60_000)
            a.wait_sidebar(lambda t: f"upload: {A_FILE}" in t, "the upload")
            assert "Active model: none yet" in a.sidebar()
            a.snapshot("Data after upload")
            # ... and start training mf on it.
            open_page(a.page, "Train")
            a.choose_model("mf", "Matrix factorisation trained with BPR")
            for label, (default, value) in A_SETTINGS.items():
                a.set_number(label, default, value)
            b.wait_sidebar(lambda t: "Active model" in t and "none yet" not in t, "a demo model")
            b.snapshot("Data")
            a.start_training()
            a.page.get_by_text(A_LABEL).first.wait_for(timeout=60_000)
            a.snapshot("Train, mf running")

            # B, while A trains: stops its own default training (the flagship would keep the
            # CPU busy; A's run must go on), explores the demo data, trains a model of its own.
            open_page(b.page, "Train")
            b.stop_training()
            b.snapshot("Train, default models stopped")
            open_page(b.page, "Recommendations")
            b.page.get_by_text("Top recommendations").first.wait_for(timeout=60_000)
            b.page.locator('[data-testid="stDataFrame"]').nth(1).wait_for(timeout=60_000)
            b_recs = b.snapshot("Recs")
            assert "Training in the background" in a.sidebar()  # B explores while A trains
            assert re.search(r"Model: (pop|ease|text-knn|gnn-llm) #\d", b_recs)
            assert re.search(r"user u\d{4} \(", b_recs)
            open_page(b.page, "Graph")
            b.wait_graph()
            assert re.search(r"\bu\d{4}\b", b.snapshot("Graph"))
            open_page(b.page, "Train")
            b.choose_model("pop", "Most popular items")
            b.start_training()
            b.page.get_by_text("Finished pop in").first.wait_for(timeout=TIMEOUT_S * 1000)
            b.wait_sidebar(lambda t: "Training in the background" not in t, "B's job end")
            b.snapshot("Train, pop done")

            # A's run finishes normally (B's Stop was B's alone).
            finished = a.page.get_by_text(f"Finished {A_LABEL} in")
            finished.first.wait_for(timeout=TIMEOUT_S * 1000)
            a_train = a.snapshot("Train, mf done")
            assert "stopped early" not in a_train
            a.wait_sidebar(lambda t: "Training in the background" not in t, "A's job end")
            open_page(a.page, "Recommendations")
            a.page.get_by_text("Top recommendations").first.wait_for(timeout=60_000)
            a.page.locator('[data-testid="stDataFrame"]').nth(1).wait_for(timeout=60_000)
            a_recs = a.snapshot("Recs")
            assert "Model: mf #1" in a_recs and "user alice_only_A_" in a_recs
            open_page(a.page, "Graph")
            a.wait_graph()
            assert "alice_only_A" in a.snapshot("Graph")

            a_runs, b_runs = a.run_names(), b.run_names()
            assert a_runs == ["mf #1"], a_runs
            assert any(n.startswith("pop #") for n in b_runs) and len(b_runs) >= 2, b_runs
            assert not any(n.startswith("mf") for n in b_runs), b_runs
            a.snapshot("sidebar")
            b.snapshot("sidebar")
        except Exception:
            for s in sessions:  # shown with the failure; screenshots next to the upload
                s.page.screenshot(path=str(tmp_path / f"session_{s.name}.png"), full_page=True)
                print(f"--- session {s.name} ({tmp_path}):\n{s.page.locator('body').inner_text()}")
            raise
        finally:
            browser.close()

    for viewer, owner, seen, markers in (
        ("B", "A", b.seen, A_MARKERS),
        ("A", "B", a.seen, B_MARKERS),
    ):
        for where, text in seen:
            found = [text[max(m.start() - 80, 0) : m.end() + 40] for m in markers.finditer(text)]
            assert not found, f"{viewer} saw {owner}'s data or runs on {where}: {found[:5]}"
    server_log = Path(log).read_text(errors="replace")
    assert "page error" not in server_log, server_log[-3000:]
