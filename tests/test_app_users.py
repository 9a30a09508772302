"""The app takes a user attributes file: the Data page's uploader, ``streamlit run app.py --
--users F``, and the Graph page showing user attribute nodes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from recscope_ui import ui
from recsys_core.dataset import Dataset
from recsys_core.services.workspace import prepare_workspace

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
U_USER = b"".join(f"u{k}|{20 + 3 * k}|{'MF'[k % 2]}|{['writer', 'other', 'student'][k % 3]}|"
                  f"{10000 + k}\n".encode() for k in range(12))


def small_dataset() -> Dataset:
    rows = [(f"u{u}", f"i{(u + k) % 9}", 4.0, 1.6e9 + 60.0 * (10 * u + k))
            for u in range(10) for k in range(4)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(9)],
                          "title": [f"Book {j}" for j in range(9)], "description": ""})
    return Dataset(inter, items, name="small")


@pytest.fixture
def page():
    at = AppTest.from_file(str(ROOT / "pages" / "data.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = prepare_workspace(small_dataset(), source="tests")
    return at


def test_command_line_takes_a_users_file():
    given = ui.command_line_files(["--", "--interactions", "r.csv", "--users", "u.user"])
    assert given["users"] == "u.user" and given["interactions"] == "r.csv"
    assert ui.command_line_files(["--interactions", "r.csv"])["users"] is None


def test_data_page_uploads_user_attributes(page):
    at = page.run()
    assert not at.exception
    inter = small_dataset().interactions[["user_id", "item_id", "rating", "timestamp"]]
    at.file_uploader(key="up-interactions").set_value(
        ("ratings.csv", inter.to_csv(index=False).encode(), "text/csv")).run()
    at.file_uploader(key="up-users").set_value(("u.user", U_USER, "text/plain")).run()
    at.checkbox(key="up-autotrain").uncheck()
    at.button(key="up-load").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ws = at.session_state[ui.STATE_KEY]
    ds = ws.dataset
    assert ds.user_attribute_columns == ["age", "gender", "occupation"]
    assert ds.report.file("users").format == "movielens u.user"
    assert ds.report.problem_counts()["metadata_only_users"] == 2  # u10, u11
    assert "User attributes" in [s.value for s in at.subheader]
    # The Graph page draws the user attribute nodes around a user.
    graph = AppTest.from_file(str(ROOT / "pages" / "graph.py"), default_timeout=TIMEOUT)
    graph.session_state[ui.STATE_KEY] = ws
    graph.run()
    assert not graph.exception
    data = ws.graph()
    assert set(data.user_attr_columns) == {"user_age", "user_gender", "user_occupation"}
    html = "".join(str(getattr(e, "proto", "")) for e in graph.get("iframe"))
    assert "user_gender" in html or "user_gender" in str(graph.dataframe[0].value)
