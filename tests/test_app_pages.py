"""AppTest smoke tests of every page and the upload -> train -> recommend -> explain flow.

The app's seam: a Workspace put into ``st.session_state[ui.STATE_KEY]`` before the first run is
used as is, so these tests inject a tiny dataset with tiny pre-trained models and never load the
demo data, the text encoder or start the automatic training.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from graph_page import graph_node_data
from streamlit.testing.v1 import AppTest

from recscope_ui import ui
from recsys_core.dataset import Dataset
from recsys_core.models import create_model
from recsys_core.services.evaluation import evaluate_model
from recsys_core.services.workspace import prepare_workspace

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

ROOT = Path(__file__).resolve().parents[1]  # the pages run from their files (AppTest)

PAGES = ["data", "graph", "train", "recommendations", "metrics", "explain", "embeddings"]
TIMEOUT = 120
EVIL = "<img src=x onerror=alert(1)> [link](javascript:alert(2))"
CATEGORIES = ["Fantasy", "Crime", "Space", "Romance"]


def tiny_dataset(num_users: int = 30, num_items: int = 40, seed: int = 0) -> Dataset:
    """Users prefer one category each; item 3 has a hostile title; the last 3 items are cold."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(num_items)],
            "title": [EVIL if j == 3 else f"Book {j}" for j in range(num_items)],
            "description": [
                f"A {CATEGORIES[j % 4].lower()} story, number {j}." for j in range(num_items)
            ],
            "category": [[CATEGORIES[j % 4]] for j in range(num_items)],
        }
    )
    rows = []
    for u in range(num_users):
        for j in rng.choice(num_items - 3, size=12, replace=False):
            if j % 4 == u % 4 or rng.random() < 0.3:
                rows.append(
                    (f"u{u}", f"i{j}", float(rng.integers(1, 6)), 1.6e9 + 3600.0 * (u * 40 + j))
                )
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    edges = pd.DataFrame(
        {
            "src": [f"u{u}" for u in range(0, num_users, 3)],
            "dst": [f"u{(u + 1) % num_users}" for u in range(0, num_users, 3)],
        }
    )
    return Dataset(inter, items, ["category"], user_edges=edges, name="tiny <b>set</b>")


def tiny_workspace(models: tuple[str, ...] = ("ease", "gnn-llm")):
    """A workspace with EASE and a small gnn-llm (random 16-d text features), both evaluated."""
    ds = tiny_dataset()
    ws = prepare_workspace(ds, source="tests")
    ws.item_text = np.random.default_rng(1).normal(size=(ds.num_items, 16)).astype(np.float32)
    for name, params in (
        ("ease", {}),
        ("gnn-llm", {"epochs": 3, "embedding_dim": 16, "device": "cpu"}),
    ):
        if name not in models:
            continue
        kwargs = dict(params, item_text_embeddings=ws.item_text) if name == "gnn-llm" else params
        model = create_model(name, **kwargs).fit(ds, ws.train)
        result = getattr(model, "train_result", None)
        ws.runs.add(
            model,
            name,
            params=params,
            history=list(result.history) if result else [],
            metrics=evaluate_model(model, ws),
        )
    return ws


@pytest.fixture(scope="module")
def workspace():
    return tiny_workspace()


def page_test(page: str, ws) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = ws
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def all_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [t.value for t in at.title] + [s.value for s in at.subheader]
    parts += [i.value for i in at.info]
    return "\n".join(map(str, parts))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page, workspace):
    at = page_test(page, workspace).run()
    assert_clean(at)
    assert at.title and at.title[0].value.lower().startswith(page[:4])


def test_pages_show_content(workspace):
    at = page_test("data", workspace).run()
    assert [m.label for m in at.metric][:3] == ["Users", "Items", "Interactions"]
    assert len(at.get("plotly_chart")) >= 4
    at = page_test("graph", workspace).run()
    assert len(at.get("iframe")) == 1 and at.dataframe
    at = page_test("recommendations", workspace).run()
    recs = at.dataframe[1].value
    assert len(recs) == 10 and {"score", "cold", "long tail", "held out"} <= set(recs.columns)
    at = page_test("metrics", workspace).run()
    summary = at.dataframe[0].value
    assert set(summary["model"]) == {"ease #1", "gnn-llm #2"}
    choices = at.dataframe[1].value.set_index("run")["chosen on validation"]
    assert "early stopping" in choices["gnn-llm #2"]
    assert choices["ease #1"].startswith("constructor settings")  # fitted directly, untuned
    at = page_test("embeddings", workspace).run()
    assert at.get("plotly_chart") and at.dataframe[0].value.shape[0] > 0
    at = page_test("train", workspace).run()
    assert "gnn-llm #2" in set(at.dataframe[0].value["run"])


def test_train_page_shows_the_flagships_item_item_choice(workspace):
    workspace.runs.active_id = "gnn-llm #2"
    choice = workspace.runs.get("gnn-llm #2").model.item_item_choice
    assert choice is not None and choice.grid  # chosen on the carved validation split
    at = page_test("train", workspace).run()
    expanders = [e for e in at.expander if e.label == "Item-item path, chosen on validation"]
    assert len(expanders) == 1
    assert expanders[0].get("plotly_chart") and "item-item path" in expanders[0].caption[0].value
    table = at.dataframe[0].value
    chosen = table.loc[table["run"] == "gnn-llm #2", "chosen_on_validation"].iloc[0]
    assert chosen.startswith("side information kept:")
    assert "; popularity prior" in chosen and "; graph filter" in chosen
    assert "; item-item path" in chosen


def test_train_and_metrics_pages_decompose_the_flagship_on_validation(workspace):
    workspace.runs.active_id = "gnn-llm #2"
    validation = workspace.runs.get("gnn-llm #2").model.train_result.selected["validation"]
    expected = [validation[k] for k in ("valid_ndcg_learned", "valid_ndcg_prior",
                                        "valid_ndcg_graph", "valid_ndcg")]
    at = page_test("train", workspace).run()
    assert_clean(at)
    expanders = [e for e in at.expander if e.label == "What each part adds on validation"]
    assert len(expanders) == 1 and expanders[0].get("plotly_chart")
    parts = expanders[0].dataframe[0].value
    assert list(parts["part"]) == ["learned embeddings", "+ popularity prior", "+ graph filter",
                                   "+ item-item path"]
    np.testing.assert_allclose(parts["valid ndcg@20"], expected)
    assert "by at least 1% (relative)" in expanders[0].caption[0].value
    workspace.runs.active_id = "ease #1"  # the page still decomposes the flagship run
    at = page_test("metrics", workspace).run()
    assert_clean(at)
    assert "The flagship, part by part" in [s.value for s in at.subheader]
    np.testing.assert_allclose(at.dataframe[2].value["valid ndcg@20"], expected)
    assert any(b.label == "Download the decomposition (CSV)" for b in at.get("download_button"))


def test_app_entry_with_sidebar(workspace):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = workspace
    at.run()
    assert_clean(at)
    assert at.sidebar.selectbox[0].label == "Active model"
    assert at.sidebar.selectbox[0].value == workspace.runs.active_id
    for page in PAGES[1:]:
        at.switch_page(f"pages/{page}.py").run()
        assert_clean(at)


def test_user_strings_are_escaped(workspace):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = workspace
    at.run()
    text = "\n".join(c.value for c in at.sidebar.caption)
    assert "tiny &lt;b&gt;set&lt;/b&gt;" in text and "<b>" not in text
    at = page_test("graph", workspace)
    at.session_state["g-type"] = "item"
    at.run()
    at.selectbox(key="g-centre-item").set_value(3).run()
    html = at.get("iframe")[0].proto.srcdoc
    assert "onerror=alert(1)>" not in html
    nodes, _ = graph_node_data(html)
    centre = next(n for n in nodes if n["id"] == "item:3")
    assert "&lt;img src=x onerror=alert(1)&gt;" in centre["title"]


@pytest.mark.parametrize("view", ["Attention", "SHAP", "GNNExplainer", "What-if", "Faithfulness"])
def test_explain_views_on_the_flagship(workspace, view):
    workspace.runs.active_id = "gnn-llm #2"
    at = page_test("explain", workspace)
    at.session_state["x-view"] = view
    at.session_state["x-f-users"] = 2  # faithfulness: a small sample keeps the test quick
    at.run()
    assert_clean(at)
    if view in ("Attention", "SHAP", "GNNExplainer"):
        assert "Recommended because" in all_text(at) or "No single piece" in all_text(at)
        assert {"kind", "label", "weight"} <= set(at.dataframe[0].value.columns)
    if view in ("Attention", "GNNExplainer"):
        assert at.get("iframe"), "the highlighted subgraph is drawn"
    if view == "What-if":
        drop = next(m for m in at.multiselect if m.key.startswith("x-drop"))
        drop.set_value(drop.options[:2]).run()
        assert_clean(at)
        assert [m.label for m in at.metric] == ["Score", "Rank"]
        assert at.metric[0].delta not in (None, "+0.0000")
    if view == "Faithfulness":
        at.button(key="x-f-run").click().run()  # the deletion test runs on request
        assert_clean(at)
        assert len(at.get("plotly_chart")) == 2
        assert "ratio" in at.dataframe[0].value.columns


def test_explain_baseline_offers_shap_and_what_if(workspace):
    workspace.runs.active_id = "ease #1"
    at = page_test("explain", workspace).run()
    assert_clean(at)
    assert "SHAP values" in all_text(at)
    at.session_state["x-view"] = "Attention"
    at.run()
    assert_clean(at)
    assert "explains the graph-attention flagship" in at.info[0].value
    # Any item, e.g. one from the user's own history, can be explained too.
    user = at.selectbox(key="x-user").value
    seen = workspace.user_history(user)["item_id"].iloc[0]
    at.session_state["x-view"] = "SHAP"
    at.session_state["x-scope"] = "any item"
    at.run()
    at.selectbox(key="x-item-any").set_value(seen).run()
    assert_clean(at)
    assert "already in the user's history" in all_text(at)


def test_recommendation_download_is_formula_safe(workspace):
    at = page_test("recommendations", workspace).run()
    frame = at.dataframe[1].value
    assert len(frame) == 10
    buttons = [b for b in at.get("download_button") if "recommendations" in b.proto.label.lower()]
    assert buttons


def test_upload_bad_file_shows_error_not_traceback(workspace):
    at = page_test("data", workspace).run()
    at.file_uploader(key="up-interactions").set_value(
        ("broken.csv", b"PK\x03\x04 not a csv at all", "text/csv")
    ).run()
    assert not at.exception
    assert at.error and "broken.csv" in at.error[0].value and "ZIP" in at.error[0].value
    # A readable file whose columns cannot be mapped fails on "Load data", also as a message.
    at.file_uploader(key="up-interactions").set_value(
        ("one_column.csv", b"just_one_column\na\nb\n", "text/csv")
    ).run()
    assert not at.exception
    if not at.error:
        at.button(key="up-load").click().run()
    assert not at.exception
    assert at.error and "one_column.csv" in at.error[0].value


def test_upload_bad_items_file_names_the_items_file(workspace):
    """A broken items upload is reported as the items file, before any load."""
    at = page_test("data", workspace).run()
    at.file_uploader(key="up-interactions").set_value(
        ("plays.csv", b"user,item\n1,2\n2,3\n", "text/csv")).run()
    at.file_uploader(key="up-items").set_value(
        ("catalogue.csv", b"", "text/csv")).run()
    assert not at.exception
    assert at.error and "items file" in at.error[0].value, [e.value for e in at.error]


def test_upload_maps_the_items_file_columns(workspace):
    """The items file's columns can be set as on the command line: a LastFM-style tag table
    (one row per tag, numeric tag ids that detection would ignore) becomes one item per id
    with every tag."""
    at = page_test("data", workspace).run()
    plays = "".join(f"{u},{a},{u * a}\n" for u in range(1, 6) for a in range(1, 5) if (u + a) % 3)
    at.file_uploader(key="up-interactions").set_value(
        ("plays.csv", ("userID,artistID,weight\n" + plays).encode(), "text/csv")).run()
    at.file_uploader(key="up-items").set_value(
        ("tagged.csv", b"who,artist,tagID\n1,1,73\n2,1,18\n1,2,73\n3,3,5\n", "text/csv")).run()
    assert not at.exception
    at.selectbox(key="item-map-items_id_col").set_value("artist")
    at.multiselect(key="item-map-categorical_cols").set_value(["tagID"])
    at.checkbox(key="up-autotrain").uncheck()
    at.button(key="up-load").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    items = at.session_state[ui.STATE_KEY].dataset.items.set_index("item_id")
    assert items.loc["1", "tagID"] == ["73", "18"] and items.loc["3", "tagID"] == ["5"]


def _wait_for_job(at: AppTest, ws_key: str = ui.STATE_KEY, timeout: float = 90.0) -> None:
    ws = at.session_state[ws_key]
    deadline = time.time() + timeout
    while ws.job is not None and not ws.job.finished and time.time() < deadline:
        time.sleep(0.2)
    assert ws.job is None or ws.job.finished, "training did not finish"


def test_flow_upload_train_recommend_explain(workspace):
    """Upload files, train EASE from the Train page, see recommendations and an explanation."""
    ds = tiny_dataset(num_users=25, num_items=30, seed=3)
    inter_csv = ds.interactions[["user_id", "item_id", "rating", "timestamp"]].to_csv(index=False)
    items = ds.items.assign(category=ds.items["category"].map(lambda v: "|".join(v)))
    items_csv = items.to_csv(index=False)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = workspace
    at.run()
    at.file_uploader(key="up-interactions").set_value(
        ("my_interactions.csv", inter_csv.encode(), "text/csv")
    ).run()
    at.file_uploader(key="up-items").set_value(
        ("my_items.csv", items_csv.encode(), "text/csv")
    ).run()
    assert [s.label for s in at.selectbox if s.key and s.key.startswith("map-")] == [
        "User id",
        "Item id",
        "Rating",
        "Timestamp",
    ]
    at.checkbox(key="up-autotrain").uncheck()
    at.button(key="up-load").click().run()
    assert_clean(at)
    ws = at.session_state[ui.STATE_KEY]
    assert ws is not workspace and ws.dataset.num_users == ds.num_users
    assert ws.source == "upload: my_interactions.csv" and not len(ws.runs)

    at.switch_page("pages/train.py").run()
    assert_clean(at)
    at.selectbox(key="t-model").set_value("ease").run()
    at.button(key="t-start").click().run()
    _wait_for_job(at)
    at.run()
    assert_clean(at)
    assert ws.runs.active is not None and ws.runs.active.model_name == "ease"
    assert "ease #1" in set(at.dataframe[0].value["run"])

    at.switch_page("pages/recommendations.py").run()
    assert_clean(at)
    recs = at.dataframe[1].value
    assert len(recs) == 10 and recs["score"].is_monotonic_decreasing

    at.switch_page("pages/explain.py").run()
    assert_clean(at)
    text = all_text(at)
    assert "Recommended because" in text or "No single piece of evidence" in text
    assert "SHAP values" in text  # EASE is not the flagship: SHAP is the default view
    contributions = at.dataframe[0].value
    assert {"kind", "label", "weight"} <= set(contributions.columns) and len(contributions)
    assert at.get("image"), "the SHAP waterfall figure is drawn"


def test_training_survives_reruns_and_stops():
    ws = tiny_workspace(models=("ease",))
    at = page_test("train", ws).run()
    at.selectbox(key="t-model").set_value("mf").run()
    at.number_input(key="t-mf-epochs").set_value(5000).run()
    at.number_input(key="t-mf-batch_size").set_value(32).run()
    at.number_input(key="t-mf-patience").set_value(5000).run()
    at.button(key="t-start").click().run()
    job = ws.job
    assert job is not None and not job.finished
    for page in ("recommendations", "data", "train"):  # page switches and reruns
        at2 = page_test(page, ws).run()
        assert_clean(at2)
        assert ws.job is job and not job.finished
    at.run()
    at.button(key="t-stop").click().run()
    assert job.join(60)
    at.run()
    assert job.status == "stopped"
    assert ws.runs.active.model_name == "mf" and ws.runs.active.status == "stopped"


def test_command_line_files_open_and_bad_files_fall_back_to_upload(tmp_path, monkeypatch):
    ds = tiny_dataset(num_users=12, num_items=15, seed=5)
    good = tmp_path / "clicks.csv"
    ds.interactions[["user_id", "item_id", "rating", "timestamp"]].to_csv(good, index=False)
    monkeypatch.setattr(sys, "argv", ["app.py", "--", "--interactions", str(good)])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = None  # no injected workspace: load the given file
    at.run()
    ws = at.session_state[ui.STATE_KEY]
    try:
        assert_clean(at)
        assert ws.source == "clicks.csv" and ws.dataset.num_users == ds.num_users
    finally:
        if ws is not None and ws.job is not None:
            ws.job.stop()
            ws.job.join(60)

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not a table")
    monkeypatch.setattr(sys, "argv", ["app.py", "--interactions", str(bad)])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = None
    at.run()
    assert not at.exception
    assert at.error and "bad.csv" in at.error[0].value and "PNG" in at.error[0].value
    assert at.file_uploader(key="up-interactions") is not None


def test_cold_start_form_builds_the_text_like_catalogue_items(workspace, monkeypatch):
    class FakeEncoder:
        def encode(self, texts):
            return np.random.default_rng(0).normal(size=(len(texts), 16)).astype(np.float32)

    monkeypatch.setattr(ui, "text_encoder", lambda: FakeEncoder())
    workspace.runs.active_id = "gnn-llm #2"
    workspace.cache.pop("cold_start", None)
    at = page_test("recommendations", workspace).run()
    at.text_input(key="r-cold-title").input("The Clockwork Archive")
    at.text_area(key="r-cold-desc").input("A quiet mystery.")
    at.multiselect(key="r-cold-category").select("Crime")
    next(b for b in at.button if b.label == "Find users").click()
    at.run()
    assert_clean(at)
    expected = workspace.dataset.new_item_text(
        "The Clockwork Archive", "A quiet mystery.", {"category": ["Crime"]}
    )
    assert expected == "The Clockwork Archive. A quiet mystery. Category: Crime."
    assert expected in [t.value for t in at.text]


def test_metrics_report_warm_and_cold_items_apart_and_say_what_numbers_are(workspace):
    at = page_test("metrics", workspace).run()
    assert_clean(at)
    summary = at.dataframe[0].value
    assert {"warm recall@20", "cold recall@20", "warm ndcg@20", "cold ndcg@20"} <= set(
        summary.columns
    )
    assert "recall@20" not in summary.columns
    text = all_text(at)
    assert "mean popularity percentile" in text and "how much more popular" not in text
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = workspace
    at.run()
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "warm recall@20" in sidebar and "cold recall@20" in sidebar


def test_embeddings_map_places_users_among_their_items(workspace):
    at = page_test("embeddings", workspace).run()
    assert_clean(at)
    assert "mean of the items in their training history" in all_text(at)


def test_metrics_page_retrains_the_flagships_variants_and_compares_them():
    ws = tiny_workspace()
    ws.runs.active_id = "gnn-llm #2"
    at = page_test("metrics", ws).run()
    assert_clean(at)
    assert "What each part contributes (retrained)" in [s.value for s in at.subheader]
    variants = ["gnn-llm (no item-item path)", "gnn-llm (learned graph attention alone)",
                "gnn-llm (no graph filter)", "gnn-llm (no text)", "gnn-llm (no attribute nodes)",
                "gnn-llm (no user-user edges)"]  # the tiny data has no user attributes
    button = at.button(key="m-ablate-start")
    assert button.label == f"Train the {len(variants)} variants"
    button.click().run()
    assert_clean(at)
    job = ws.job or ws.finished_jobs[-1]
    assert job.meta == {"plan": variants, "ablation_of": "gnn-llm #2"}
    assert job.label.startswith("ablations of gnn-llm #2: ")
    _wait_for_job(at, timeout=300)
    at.run()
    assert_clean(at)
    assert job.status == "done" and ws.runs.active_id == "gnn-llm #2"  # variants stay inactive
    assert set(variants) <= set(ws.runs.ids())
    assert ws.runs.get("gnn-llm (no text)").params["use_text"] is False
    table = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert list(table["run"]) == ["gnn-llm #2", *variants]
    assert table["warm recall@20"].notna().all() and table["Δ warm recall@20 %"].iloc[0] == 0
    assert any(b.label == "Download the comparison (CSV)" for b in at.get("download_button"))
