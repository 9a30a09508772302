"""AppTest of saved runs in the app: the --run / --runs-dir arguments, the Train page's run
picker, zipped-run upload (accepted and refused), test-file upload, run and report downloads,
and every page on an opened run."""

from __future__ import annotations

import io
import pickle
import sys
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app_pages import ROOT, TIMEOUT, assert_clean, tiny_dataset, tiny_workspace

from recscope_ui import navigation, ui
from recsys_core.models import create_model
from recsys_core.run import read_run_zip, save_run, save_run_zip
from recsys_core.services.workspace import prepare_workspace

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

PAGES = ["data", "graph", "train", "recommendations", "metrics", "explain", "embeddings"]


@pytest.fixture
def workspace():
    return tiny_workspace(models=("ease",))


@pytest.fixture(scope="module")
def flagship_zip():
    """A gnn-llm run on other data (tiny text features), zipped with its test split."""
    ws = prepare_workspace(tiny_dataset(num_users=24, num_items=32, seed=5), source="other")
    text = np.random.default_rng(2).normal(size=(ws.dataset.num_items, 8)).astype(np.float32)
    model = create_model("gnn-llm", epochs=2, embedding_dim=8, device="cpu",
                         item_text_embeddings=text).fit(ws.dataset, ws.train)
    return save_run_zip(model, ws.dataset, ws.train, folder="flagship", test=ws.test,
                        extra={"run_id": "my flagship"})


@pytest.fixture
def runs_dir(tmp_path, monkeypatch, workspace):
    """A runs folder with an EASE run of the session's own data and split, listed by
    ``--runs-dir``."""
    folder = tmp_path / "runs"
    model = create_model("ease", reg_lambda=10.0).fit(workspace.dataset, workspace.train)
    save_run(folder / "ease-same-split", model, workspace.dataset, workspace.train,
             test=workspace.test, extra={"run_id": "ease tuned"})
    (folder / "not-a-run").mkdir()
    monkeypatch.setattr(sys, "argv", ["app.py", "--runs-dir", str(folder)])
    return folder


def train_page(ws) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = ws
    return at.run()


def page(name: str, ws) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = ws
    return at.run()


def test_arguments_default_and_parse():
    assert navigation.saved_run_arguments([]) == {"run": None, "runs_dir": "runs"}
    assert navigation.saved_run_arguments(
        ["--", "--interactions", "r.csv", "--run", "runs/a", "--runs-dir", "saved"]
    ) == {"run": "runs/a", "runs_dir": "saved"}
    assert ui.command_line_files(["--run", "runs/a", "--interactions", "r.csv"])[
        "interactions"] == "r.csv"


def test_picker_opens_a_run_beside_the_session_runs(workspace, runs_dir):
    at = train_page(workspace)
    assert_clean(at)
    picker = at.selectbox(key="t-saved")
    assert len(picker.options) == 1 and picker.options[0].startswith("ease-same-split · ease")
    assert picker.value == str(runs_dir / "ease-same-split")
    at.button(key="t-open").click().run()
    assert_clean(at)
    assert at.session_state[ui.STATE_KEY] is workspace  # same data and split: same session
    assert workspace.runs.ids() == ["ease #1", "ease tuned (saved)"]
    assert workspace.runs.active_id == "ease tuned (saved)"
    assert any("beside this session's runs" in s.value for s in at.success)
    at = page("metrics", workspace)
    assert_clean(at)
    assert set(at.dataframe[0].value["model"]) == {"ease #1", "ease tuned (saved)"}


def test_zip_upload_opens_a_run_and_every_page_works(workspace, flagship_zip, runs_dir):
    at = train_page(workspace)
    at.file_uploader(key="t-run-zip-upload").set_value(
        ("flagship.zip", flagship_zip, "application/zip")).run()
    assert_clean(at)
    ws = at.session_state[ui.STATE_KEY]
    assert ws is not workspace and ws.job is None  # its own data; nothing trains
    assert ws.runs.ids() == ["my flagship (saved)"] and len(ws.test)
    assert ws.dataset.num_users == 24
    for name in PAGES:
        at = page(name, ws)
        assert_clean(at)
    at = page("explain", ws)  # the flagship's attention view, as for a trained run
    assert at.get("plotly_chart") and at.info  # contribution bars and the rationale
    at = page("recommendations", ws)
    assert len(at.dataframe[1].value) == 10


@pytest.mark.parametrize(("member", "content", "expected"), [
    ("flagship/model.pkl", pickle.dumps({"w": [1]}), "flagship/model.pkl"),
    ("flagship/model.safetensors", pickle.dumps({"w": [1]}), "flagship/model.safetensors"),
    ("../evil.json", b"{}", "evil.json"),
])
def test_zip_upload_refuses_tampered_runs_naming_the_file(workspace, flagship_zip, runs_dir,
                                                          member, content, expected):
    with zipfile.ZipFile(io.BytesIO(flagship_zip)) as archive:
        files = {e.filename: archive.read(e) for e in archive.infolist()}
    files[member] = content
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    at = train_page(workspace)
    at.file_uploader(key="t-run-zip-upload").set_value(
        ("bad run.zip", buffer.getvalue(), "application/zip")).run()
    assert not at.exception
    assert at.error and expected in at.error[0].value.replace("\\", "")
    assert at.session_state[ui.STATE_KEY] is workspace and workspace.runs.ids() == ["ease #1"]


def test_run_without_test_split_takes_a_test_file(workspace, runs_dir):
    other = tiny_dataset(num_users=20, num_items=25, seed=9)
    model = create_model("ease").fit(other, other.interactions)  # trained on everything (CLI)
    data = save_run_zip(model, other, other.interactions, folder="cli-run")
    at = train_page(workspace)
    at.file_uploader(key="t-run-zip-upload").set_value(("cli.zip", data, "application/zip")).run()
    ws = at.session_state[ui.STATE_KEY]
    assert len(ws.test) == 0
    assert any("without held-out interactions" in i.value for i in at.info)
    heldout = tiny_dataset(num_users=20, num_items=25, seed=10).interactions
    csv = heldout[["user_id", "item_id", "rating", "timestamp"]].to_csv(index=False)
    csv += "stranger,i1,4.0,1700000000\n"
    at.file_uploader(key="t-test-upload").set_value(
        ("held_out.csv", csv.encode(), "text/csv")).run()
    assert_clean(at)
    assert len(ws.test) > 0
    note = " ".join(s.value for s in at.success)
    assert "1 unknown user" in note and "in training data" in note
    assert_clean(page("metrics", ws))


def test_download_buttons_give_a_run_zip_and_a_report(workspace, runs_dir):
    at = train_page(workspace)
    at.button(key="t-zip").click().run()
    assert_clean(at)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download run (.zip)" in labels
    run = workspace.runs.get("ease #1")
    saved = read_run_zip(run.cache["zip"])
    assert saved.info["extra"]["run_id"] == "ease #1" and len(saved.test) == len(workspace.test)
    at.button(key="t-report").click().run()
    assert_clean(at)
    assert "Download report (HTML)" in [b.proto.label for b in at.get("download_button")]
    html = run.cache[("report", False)].decode("utf-8")
    assert "RecScope report" in html and 'id="examples"' in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html or "onerror" not in html


def test_report_download_in_privacy_mode_has_no_raw_user_ids(workspace, runs_dir):
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = workspace
    at.session_state[ui.PRIVACY_KEY] = True
    at.run()
    at.button(key="t-report").click().run()
    assert_clean(at)
    html = workspace.runs.get("ease #1").cache[("report", True)].decode("utf-8")
    body = html[html.index("</head>"):]
    for user in workspace.dataset.user_ids:
        assert f"User {user} " not in body and f"user {user}<" not in body
    assert "u_" in body and 'id="privacy-note"' in body


def test_app_opens_the_run_given_on_the_command_line(tmp_path, monkeypatch, flagship_zip):
    saved = read_run_zip(flagship_zip)
    run_dir = save_run(tmp_path / "run", saved.model, saved.dataset, saved.dataset.interactions,
                       test=saved.test, extra={"run_id": "from cli"})
    monkeypatch.setattr(sys, "argv", ["app.py", "--run", str(run_dir)])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert_clean(at)
    ws = at.session_state[ui.STATE_KEY]
    assert ws.job is None and ws.runs.ids() == ["from cli (saved)"]
    assert at.sidebar.selectbox[0].value == "from cli (saved)"
