"""Helpers shared by the real-browser tests that drive ``streamlit run app.py`` with Playwright
in Debian chromium (``test_browser.py``, ``test_browser_sessions.py``).

Not a test module: imported by name (pytest puts ``tests/`` on ``sys.path``, as for
``conftest``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: What a page shows when drawing it failed: Streamlit's exception box (uncaught errors) or
#: ``recscope_ui.ui.guarded``'s message (caught ones).
ERROR_MARKERS = ("Traceback", "Something went wrong")
#: The app's navigation links (``recscope_ui.navigation.sidebar_links``).
NAV_LINKS = '[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


@contextmanager
def streamlit_server(log: Path | None = None, env: dict[str, str] | None = None,
                     app_args: list[str] | None = None) -> Iterator[str]:
    """``streamlit run app.py [-- app_args]`` on a free port (output in ``log``, discarded
    when ``None``); yields its URL."""
    port = free_port()
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log if log is not None else os.devnull, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.fileWatcherType",
                "none",
                "--browser.gatherUsageStats",
                "false",
                *(["--", *app_args] if app_args else []),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def open_page(page, title: str) -> None:
    """Click ``title`` in the sidebar navigation and wait for the page's heading."""
    page.locator(NAV_LINKS, has_text=title).first.click()
    page.locator("h1", has_text=title).first.wait_for(timeout=60_000)


def page_errors(page) -> list[str]:
    """Streamlit exception boxes and error markers on the page (empty when it drew fine)."""
    found = page.locator('[data-testid="stException"]').all_inner_texts()
    text = page.locator("body").inner_text()
    return found + [marker for marker in ERROR_MARKERS if marker in text]
