"""AppTest of the Metrics page's trust controls: K, confidence intervals, the paired test and
the split choice (models refitted on a temporal split in a background job)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from streamlit.testing.v1 import AppTest

from recscope_ui import ui
from recsys_core.dataset import Dataset
from recsys_core.models import create_model
from recsys_core.services.evaluation import evaluate_model, significance_frame
from recsys_core.services.workspace import prepare_workspace

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
EVIL = "<img src=x onerror=alert(1)>"


def small_workspace(timestamps: bool = True):
    """40 users with one favourite category each over 30 items; EASE and popularity fitted."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for j in rng.choice(30, size=10, replace=False):
            if j % 3 == u % 3 or rng.random() < 0.3:
                rows.append((f"u{u}", f"i{j}", 4.0, 1.6e9 + 3600.0 * (u * 30 + j)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    if not timestamps:
        inter["timestamp"] = np.nan
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(30)],
                          "title": [EVIL if j == 1 else f"Item {j}" for j in range(30)]})
    ds = Dataset(inter, items, [], name="trust")
    ws = prepare_workspace(ds, source="tests")
    for name, run_id in (("ease", "ease #1"), ("pop", f"pop {EVIL}")):
        # A hostile run name (an uploaded run's label) reaches tables, legends and captions.
        model = create_model(name).fit(ds, ws.train)
        ws.runs.add(model, name, run_id=run_id, metrics=evaluate_model(model, ws))
    return ws


def page(ws) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "metrics.py"), default_timeout=TIMEOUT)
    at.session_state[ui.STATE_KEY] = ws
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def download_labels(at: AppTest) -> set[str]:
    return {b.label for b in at.get("download_button")}


@pytest.fixture(scope="module")
def ws():
    return small_workspace()


def test_intervals_table_figure_and_downloads(ws):
    at = page(ws).run()
    assert_clean(at)
    assert at.number_input(key="m-k").value == 20
    assert at.selectbox(key="m-split").value == "random"
    assert "Confidence intervals at K = 20" in [s.value for s in at.subheader]
    table = frame_with(at, "±")
    assert set(table["metric"]) == {"recall@20", "precision@20", "ndcg@20", "map@20", "hit@20"}
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()
    assert (table["test users"] == ws.test["user_id"].nunique()).all()
    # the value is the metric's mean over the test users of evaluate_model
    ease = ws.runs.get("ease #1").cache["metrics"]["per_user"]
    row = table[(table["model"] == "ease #1") & (table["metric"] == "ndcg@20")].iloc[0]
    assert row["value"] == pytest.approx(ease["ndcg"].mean())
    figures = [c.proto.spec for c in at.get("plotly_chart")]
    assert any('"error_y"' in spec and "intervals" in spec for spec in figures)
    assert not any(EVIL in spec for spec in figures)  # legends carry the escaped name
    assert {"Download intervals (CSV)", "Download paired test (CSV)"} <= download_labels(at)


def test_k_selector_recomputes_every_table(ws):
    at = page(ws).run()
    at.number_input(key="m-k").set_value(5).run()
    assert_clean(at)
    assert "Summary at K = 5" in [s.value for s in at.subheader]
    assert "warm recall@5" in at.dataframe[0].value.columns
    assert set(frame_with(at, "±")["metric"]) == {"recall@5", "precision@5", "ndcg@5", "map@5",
                                                  "hit@5"}
    five = ws.runs.get("ease #1").cache["metrics@5"]
    assert five["k"] == 5 and ws.runs.get("ease #1").cache["metrics"]["k"] == 20


def test_paired_test_between_two_models(ws):
    at = page(ws).run()
    ids = ws.runs.ids()
    assert at.selectbox(key="m-pair-a").value == ids[0]
    assert at.selectbox(key="m-pair-b").value == ids[1]
    table = frame_with(at, "p-value")
    assert set(table["method"]) == {"bootstrap"} and (table["p-value"].between(0, 1)).all()
    text = " ".join(m.value for m in at.markdown).replace("\\", "")  # Markdown escapes
    assert "ease #1 is better on ndcg@20" in text or "No significant difference" in text
    assert "p = " in text and "<img" not in " ".join(m.value for m in at.markdown)
    at.radio(key="m-pair-method").set_value("wilcoxon").run()
    assert_clean(at)
    table = frame_with(at, "p-value").set_index("metric")
    a = significance_frame(ws.runs.get(ids[0]).cache["metrics"]["per_user"])
    b = significance_frame(ws.runs.get(ids[1]).cache["metrics"]["per_user"])
    d = a["ndcg"].to_numpy() - b["ndcg"].to_numpy()
    assert table.loc["ndcg@20", "p-value"] == pytest.approx(stats.wilcoxon(d).pvalue)
    # the same model twice is refused politely
    at.selectbox(key="m-pair-b").set_value(ids[0]).run()
    assert_clean(at)
    assert any("two different models" in i.value for i in at.info)


def test_temporal_split_refits_the_models_in_a_job():
    ws = small_workspace()
    at = page(ws).run()
    at.selectbox(key="m-split").set_value("temporal").run()
    assert_clean(at)
    button = at.button(key="m-refit")
    assert button.label == "Refit 2 model(s) on this split"
    button.click().run()
    assert_clean(at)
    deadline = time.time() + 90
    while ws.job is not None and not ws.job.finished and time.time() < deadline:
        time.sleep(0.2)
    assert ws.job is None or ws.job.status == "done", ws.job and ws.job.error
    at.run()
    assert_clean(at)
    assert any("temporal leave-last-out" in c.value.replace("\\", "") for c in at.caption)
    table = frame_with(at, "±")
    # leave-last-out: one test interaction per evaluated user
    assert (table["test users"] == table["test users"].iloc[0]).all()
    assert ws.runs.ids() == ["ease #1", f"pop {EVIL}"]  # refitting registers no new run
    assert not any(s.value.startswith("What each part") for s in at.subheader)


def test_time_split_without_timestamps_names_the_column():
    ws = small_workspace(timestamps=False)
    at = page(ws).run()
    at.selectbox(key="m-split").set_value("time-cut").run()
    assert at.slider(key="m-quantile").value == 0.9
    at.button(key="m-refit").click().run()
    assert not at.exception
    assert any("column 'timestamp'" in e.value and "needs timestamps" in e.value
               for e in at.error)
    assert ws.job is None
