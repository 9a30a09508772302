"""``python -m recsys_core explain`` / ``score`` on saved tiny runs (flagship and baselines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_explain import explain_dataset, fit_flagship, history_ids

from recsys_core.cli import main
from recsys_core.run import load_run, save_run

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

KINDS = {"history_item", "attribute", "text", "neighbour"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from recsys_core.models.ease import EASERecommender
    from recsys_core.models.mf import MFRecommender
    from recsys_core.models.pop import PopularityRecommender

    ds = explain_dataset()
    root = tmp_path_factory.mktemp("runs")
    models = {
        "gnn-llm": fit_flagship(ds),
        "ease": EASERecommender(reg_lambda=10.0).fit(ds, ds.interactions),
        "mf": MFRecommender(embedding_dim=4, epochs=1, device="cpu",
                            show_progress=False).fit(ds, ds.interactions),
        "pop": PopularityRecommender().fit(ds, ds.interactions),
    }
    return {name: save_run(root / name, model, ds, ds.interactions)
            for name, model in models.items()}


def run_cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


@pytest.mark.parametrize("method", ["attention", "shap", "gnnexplainer"])
def test_explain_prints_the_json_schema(capsys, runs, method):
    ds = explain_dataset()
    code, payload, _ = run_cli(capsys, "explain", "--run", str(runs["gnn-llm"]), "--user", "u01",
                               "--item", "i05", "--method", method, "--top", "6")
    assert code == 0
    assert {"score", "base_value", "contributions", "rationale"} <= set(payload)
    model, _, _ = load_run(runs["gnn-llm"])
    expected = float(model.score(ds.user_idx("u01"), ds.item_idx("i05"))[0, 0])
    assert payload["score"] == pytest.approx(expected, abs=1e-5)
    assert (payload["base_value"] is None) == (method == "gnnexplainer")
    rows = payload["contributions"]
    assert 0 < len(rows) <= 6
    titles = ds.items.set_index("item_id")["title"]
    history = history_ids(ds, "u01")
    for row in rows:
        assert set(row) == {"kind", "id", "label", "weight"}
        assert row["kind"] in KINDS and isinstance(row["weight"], float)
        if row["kind"] == "history_item":
            assert row["id"] in history and row["label"] == titles[row["id"]]
    weights = [abs(r["weight"]) for r in rows]
    assert weights == sorted(weights, reverse=True)
    assert isinstance(payload["rationale"], str) and payload["rationale"]


def test_score_with_and_without_edits(capsys, runs):
    ds = explain_dataset()
    run = str(runs["gnn-llm"])
    code, payload, _ = run_cli(capsys, "score", "--run", run, "--user", "u02",
                               "--items", "i20,i05")
    assert code == 0 and list(payload) == ["scores"] and list(payload["scores"]) == ["i20", "i05"]
    model, _, _ = load_run(run)
    real = model.score(ds.user_idx("u02"), ds.item_idx(["i20", "i05"]))[0]
    np.testing.assert_allclose([payload["scores"]["i20"], payload["scores"]["i05"]], real,
                               atol=1e-5)
    dropped = ",".join(sorted(history_ids(ds, "u02"))[:3])
    code, edited, err = run_cli(capsys, "score", "--run", run, "--user", "u02", "--items",
                                "i20,i05", "--drop-interactions", dropped + ",z1",
                                "--add-interactions", "i11")
    assert code == 0 and "not dropped" in err and "z1" in err
    assert edited["scores"]["i20"] != pytest.approx(payload["scores"]["i20"], abs=1e-6)


def test_score_edits_for_baselines(capsys, runs):
    code, payload, _ = run_cli(capsys, "score", "--run", str(runs["ease"]), "--user", "u02",
                               "--items", "i20", "--drop-interactions", "i20")
    assert code == 0 and set(payload["scores"]) == {"i20"}
    for name in ("mf", "pop"):
        code, _, err = run_cli(capsys, "score", "--run", str(runs[name]), "--user", "u02",
                               "--items", "i20", "--drop-interactions", "i21")
        assert code == 2 and "without retraining" in err and "gnn-llm" in err
        code, payload, _ = run_cli(capsys, "score", "--run", str(runs[name]), "--user", "u02",
                                   "--items", "i20")
        assert code == 0 and np.isfinite(payload["scores"]["i20"])


@pytest.mark.parametrize("argv, message", [
    (["explain", "--user", "ghost", "--item", "i00"], "Unknown user id(s): 'ghost'"),
    (["explain", "--user", "u00", "--item", "nope", "--method", "shap"], "Unknown item id(s): 'nope'"),
    (["score", "--user", "ghost", "--items", "i00"], "Unknown user id(s): 'ghost'"),
    (["score", "--user", "u00", "--items", "i00,nope"], "Unknown item id(s): 'nope'"),
    (["score", "--user", "u00", "--items", "i00", "--drop-interactions", "nope"], "'nope'"),
    (["score", "--user", "u00", "--items", "i00,,i01"], "empty id"),
])
def test_bad_ids_exit_2_with_a_clear_message(capsys, runs, argv, message):
    code, _, err = run_cli(capsys, *argv[:1], "--run", str(runs["gnn-llm"]), *argv[1:])
    assert code == 2 and message in err and "Traceback" not in err


def test_explain_on_a_baseline_run(capsys, runs):
    for method in ("attention", "gnnexplainer"):
        code, _, err = run_cli(capsys, "explain", "--run", str(runs["ease"]), "--user", "u00",
                               "--item", "i10", "--method", method)
        assert code == 2 and "gnn-llm" in err and "ease" in err
    code, payload, _ = run_cli(capsys, "explain", "--run", str(runs["ease"]), "--user", "u00",
                               "--item", "i10", "--method", "shap")
    assert code == 0 and {r["kind"] for r in payload["contributions"]} == {"history_item"}
    code, _, err = run_cli(capsys, "explain", "--run", str(runs["mf"]), "--user", "u00",
                           "--item", "i10", "--method", "shap")
    assert code == 2 and "retraining" in err


def test_python_dash_m_entry_point(runs):
    proc = subprocess.run(
        [sys.executable, "-m", "recsys_core", "score", "--run", str(runs["ease"]), "--user",
         "u00", "--items", "i10,i11"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["scores"]) == {"i10", "i11"}
