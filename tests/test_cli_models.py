"""CLI train / recommend / evaluate end to end on tiny files, and formula-safe CSV output."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_core.cli import build_parser, main
from recsys_core.csv_safety import (
    is_plain_number,
    sanitize_cell,
    sanitize_frame,
    to_csv_string,
    write_csv,
)

REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"recall", "precision", "ndcg", "hit_rate", "mrr", "map", "auc",
               "catalog_coverage", "novelty", "popularity_bias", "slices"}


@pytest.fixture
def ease_run(split_files, tmp_path):
    out = tmp_path / "run_ease"
    code = main(["train", "--interactions", str(split_files["train"]), "--items",
                 str(split_files["items"]), "--user-edges", str(split_files["user_edges"]),
                 "--model", "ease", "--out", str(out)])
    assert code == 0
    return out


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"user_id": str, "item_id": str})


# ---------------------------------------------------------------------------- train
def test_train_defaults_to_the_flagship():
    args = build_parser().parse_args(["train", "--interactions", "x.csv", "--out", "r"])
    assert args.model == "gnn-llm" and args.device == "auto" and args.k == 20


def test_train_writes_a_run_and_prints_a_summary(split_files, tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["train", "--interactions", str(split_files["train"]), "--user-edges",
                 str(split_files["user_edges"]), "--model", "ease", "--out", str(out_dir)]) == 0
    info = json.loads((out_dir / "run.json").read_text())
    assert info["model"] == "ease" and info["data"]["num_user_edges"] == 6
    assert info["extra"]["fit_seconds"] >= 0
    out = capsys.readouterr()
    assert "Trained ease" in out.out and "recommend --run" in out.out
    assert "Training ease on 8 users x 10 items" in out.err  # no --items: no cold items


def test_train_notes_options_a_model_ignores(split_files, tmp_path, capsys):
    code = main(["train", "--interactions", str(split_files["train"]), "--model", "pop",
                 "--epochs", "3", "--out", str(tmp_path / "pop")])
    assert code == 0
    assert "--epochs does not apply to the pop model" in capsys.readouterr().err


def test_train_bad_input_exits_2(tmp_path, write_file, capsys):
    bad = write_file("bad.csv", "just,some\n1,2\n")
    code = main(["train", "--interactions", str(bad), "--model", "pop",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "bad.csv" in err
    assert not (tmp_path / "r").exists()


def test_train_reads_the_item_file_options_validate_takes(tmp_path, write_file, capsys):
    """What validate accepts (and the ingestion messages name), train accepts too: a LastFM-
    style tag table with numeric tag ids, its id and tag columns named, one row per tag."""
    inter = write_file("plays.tsv", "userID\tartistID\tweight\n" + "".join(
        f"{u}\t{a}\t{u * a}\n" for u in range(1, 6) for a in range(1, 5) if (u + a) % 3))
    tags = write_file("tagged.csv", "who,artist,tagID\n1,1,73\n2,1,18\n1,2,73\n3,3,5\n")
    run_dir = tmp_path / "run"
    assert main(["train", "--interactions", str(inter), "--items", str(tags), "--model", "pop",
                 "--items-id-col", "artist", "--categorical-cols", "tagID",
                 "--max-rows", "1000", "--out", str(run_dir)]) == 0
    printed = capsys.readouterr()
    assert "merged item rows" in printed.out + printed.err
    from recsys_core.run import read_run

    items = read_run(run_dir).dataset.items.set_index("item_id")
    assert items.loc["1", "tagID"] == ["73", "18"] and items.loc["3", "tagID"] == ["5"]
    assert main(["train", "--interactions", str(inter), "--model", "pop", "--max-rows", "3",
                 "--out", str(tmp_path / "r2")]) == 2
    assert "--max-rows" in capsys.readouterr().err


# ---------------------------------------------------------------------------- recommend
def test_recommend_every_user_excluding_training(ease_run, split_files, tmp_path):
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(ease_run), "--k", "3", "--out", str(out)]) == 0
    recs = read_csv(out)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert sorted(recs["user_id"].unique()) == [f"u{i}" for i in range(1, 9)]
    assert recs.groupby("user_id").size().max() == 3
    train = pd.read_csv(split_files["train"], dtype=str)
    pairs = set(zip(train["user_id"], train["item_id"], strict=True))
    assert not any((u, i) in pairs for u, i in zip(recs["user_id"], recs["item_id"], strict=True))


@pytest.mark.parametrize("content", [
    "u2\nu5\n",                       # one id per line
    "user_id\nu2\nu5\n",              # with a header line
    "userId,segment\nu2,a\nu5,b\nu2,c\n",  # a table with a user id column (repeat kept once)
])
def test_recommend_users_file_formats(ease_run, write_file, tmp_path, content):
    users = write_file("users.txt", content)
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(ease_run), "--k", "2", "--out", str(out),
                 "--users", str(users)]) == 0
    recs = read_csv(out)
    assert recs["user_id"].tolist() == ["u2", "u2", "u5", "u5"]


def test_recommend_candidates_rank_a_cold_item_from_text(split_files, tmp_path, write_file,
                                                         monkeypatch):
    """text-knn trained through the CLI (real MiniLM encoder) scores items without
    interactions (i11, i12) from their text."""
    monkeypatch.setenv("RECSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run_text"
    assert main(["train", "--interactions", str(split_files["train"]), "--items",
                 str(split_files["items"]), "--model", "text-knn", "--out", str(run_dir)]) == 0
    candidates = write_file("cands.csv", "item_id,note\ni11,new\ni12,new\ni4,old\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(run_dir), "--k", "3", "--out", str(out),
                 "--candidates", str(candidates)]) == 0
    recs = read_csv(out)
    assert set(recs["item_id"]) <= {"i11", "i12", "i4"}
    cold = recs[recs["item_id"].isin(["i11", "i12"])]
    assert len(cold) >= 8 and (cold["score"].abs() > 0).all()  # every user, real text scores
    assert cold.groupby("user_id")["score"].nunique().gt(1).any()  # ranked, not tied


def test_flagship_through_the_cli_reports_its_item_item_choice_and_ranks_cold_items(
        split_files, tmp_path, write_file, monkeypatch, capsys):
    monkeypatch.setenv("RECSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run_flagship"
    assert main(["train", "--interactions", str(split_files["train"]), "--items",
                 str(split_files["items"]), "--epochs", "3", "--out", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "Chosen on validation: side information kept:" in err
    assert "; popularity prior" in err and "; graph filter" in err and "item-item path" in err
    info = json.loads((run_dir / "run.json").read_text())
    selected = info["extra"]["train_result"]["selected"]
    chosen = selected["item_item"]
    assert chosen["reg_lambda"] > 0 and chosen["relative_weight"] >= 0
    # The graph filter and the item-item path are stored as one additive path.
    any_on = chosen["relative_weight"] > 0 or selected["graph_filter"]["relative_weight"] > 0
    assert ("item_item.weights" in info["tensors"]) == any_on
    candidates = write_file("cands_flagship.csv", "item_id\ni11\ni12\ni4\n")
    out = tmp_path / "recs_flagship.csv"
    assert main(["recommend", "--run", str(run_dir), "--k", "3", "--out", str(out),
                 "--candidates", str(candidates)]) == 0
    recs = read_csv(out)
    assert set(recs["item_id"]) <= {"i11", "i12", "i4"} and len(recs) >= 8
    assert np.isfinite(recs["score"]).all()


def test_recommend_with_candidates_and_ease(ease_run, write_file, tmp_path):
    candidates = write_file("c.txt", "i11\ni1\ni2\n")
    out = tmp_path / "r.csv"
    assert main(["recommend", "--run", str(ease_run), "--k", "5", "--out", str(out),
                 "--candidates", str(candidates)]) == 0
    recs = read_csv(out)
    assert set(recs["item_id"]) <= {"i11", "i1", "i2"} and "i11" in set(recs["item_id"])


def test_unknown_user_exits_2_without_traceback(ease_run, write_file, tmp_path):
    users = write_file("users.txt", "u1\nnobody\nghost-7\n")
    proc = subprocess.run(
        [sys.executable, "-m", "recsys_core", "recommend", "--run", str(ease_run), "--k", "3",
         "--out", str(tmp_path / "r.csv"), "--users", str(users)],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "'nobody'" in proc.stderr and "'ghost-7'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.csv").exists()


def test_unknown_candidate_and_missing_run_exit_2(ease_run, write_file, tmp_path, capsys):
    candidates = write_file("c.txt", "i1\ni999\n")
    assert main(["recommend", "--run", str(ease_run), "--k", "3", "--out",
                 str(tmp_path / "r.csv"), "--candidates", str(candidates)]) == 2
    assert "'i999'" in capsys.readouterr().err
    assert main(["recommend", "--run", str(tmp_path / "nope"), "--k", "3", "--out",
                 str(tmp_path / "r.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_recommend_csv_neutralises_formula_ids(write_file, tmp_path):
    inter = write_file("hostile.csv", "user_id,item_id,rating\n+1,=1+2,5\n+1,-5,3\n"
                                      "u2,=1+2,4\nu2,@x,2\nu3,-5,1\nu3,@x,5\n")
    run_dir = tmp_path / "run"
    assert main(["train", "--interactions", str(inter), "--model", "pop",
                 "--out", str(run_dir)]) == 0
    out = tmp_path / "r.csv"
    assert main(["recommend", "--run", str(run_dir), "--k", "3", "--out", str(out)]) == 0
    rows = list(csv.reader(out.open(newline="")))
    cells = {c for row in rows[1:] for c in row[:2]}
    assert "'=1+2" in cells and "'@x" in cells  # formulas neutralised
    assert "+1" in cells and "-5" in cells  # numeric-looking ids untouched
    assert not any(c.startswith(("=", "@")) for c in cells)


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_prints_json_metrics(ease_run, split_files, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--run", str(ease_run), "--test", str(split_files["test"]),
                 "--k", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "ease" and result["k"] == 5
    assert result["num_test_users"] == 8 and result["num_test_interactions"] == 8
    assert METRIC_KEYS <= set(result["metrics"])
    assert 0.0 <= result["metrics"]["recall"] <= 1.0
    assert 0.0 <= result["metrics"]["auc"] <= 1.0
    assert set(result["metrics"]["slices"]) == {"cold_items", "long_tail", "light_users"}


def test_evaluate_counts_rows_it_cannot_score(ease_run, split_files, write_file, capsys):
    test = pd.read_csv(split_files["test"], dtype=str)
    train = pd.read_csv(split_files["train"], dtype=str)
    extra = pd.DataFrame({"user_id": ["stranger", "u1"], "item_id": ["i1", "i404"],
                          "rating": ["5", "5"], "timestamp": ["1600000000"] * 2})
    mixed = write_file("mixed.csv", pd.concat([test, train.iloc[:3], extra]).to_csv(index=False))
    capsys.readouterr()
    assert main(["evaluate", "--run", str(ease_run), "--test", str(mixed), "--k", "5"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["skipped_test_rows"] == {"unknown_user": 1, "unknown_item": 1,
                                           "in_training_data": 3}
    assert result["num_test_interactions"] == 8
    assert "skipped 3 test row(s): in training data" in captured.err


def test_evaluate_on_training_data_only_exits_2(ease_run, split_files, capsys):
    assert main(["evaluate", "--run", str(ease_run), "--test", str(split_files["train"]),
                 "--k", "5"]) == 2
    assert "held-out" in capsys.readouterr().err


def test_evaluate_streams_the_full_ranking_metrics_in_blocks(ease_run, split_files,
                                                               monkeypatch):
    """AUC and the item slices are streamed (AUC over blocks of users, slices re-ranked
    among their items by ``recommend``), in any block size, and equal the definitions of
    :mod:`recsys_core.metrics` on every user's full score vector."""
    from recsys_core.cli import evaluate
    from recsys_core.ingest import load_dataset
    from recsys_core.metrics import evaluate_recommendations
    from recsys_core.run import load_run

    model, dataset, _ = load_run(ease_run)
    test, _ = evaluate.align_test(load_dataset(split_files["test"]).interactions, dataset,
                                  "test.csv")
    users = pd.unique(test["user_id"]).tolist()
    whole = evaluate.evaluate_run(model, dataset, test, users, 5)
    full = model.recommend(users=users, k=dataset.num_items, exclude_seen=True)
    reference = evaluate_recommendations(test, full, train=dataset.interactions, k=5,
                                         num_items=dataset.num_items)
    monkeypatch.setattr(evaluate, "FULL_SCORE_ROWS", 3 * dataset.num_items)  # 3 users a block
    blocks = evaluate.evaluate_run(model, dataset, test, users, 5)
    assert 0 < whole["auc"] < 1
    assert blocks["auc"] == pytest.approx(whole["auc"]) == pytest.approx(reference["auc"])
    assert set(whole["slices"]) == set(reference["slices"])
    for name, values in reference["slices"].items():
        for key, value in values.items():
            assert whole["slices"][name][key] == pytest.approx(value), (name, key)
            assert blocks["slices"][name][key] == pytest.approx(value), (name, key)


def test_streamed_slices_rank_cold_and_long_tail_items_like_the_full_vectors():
    """A catalogue with items that only the test split holds (cold) and a long tail: the
    streamed slices and AUC equal the definitions on full score vectors."""
    from recsys_core.cli import evaluate
    from recsys_core.dataset import Dataset
    from recsys_core.metrics import evaluate_recommendations
    from recsys_core.models.base import OnePassRecommender

    class DistinctScores(OnePassRecommender):  # every (user, item) its own score
        name = "distinct"

        def fit_bound(self, dataset, on_progress):
            rng = np.random.default_rng(0)
            self.table = rng.permutation(dataset.num_users * dataset.num_items).reshape(
                dataset.num_users, dataset.num_items).astype(np.float64)

        def score(self, users, items=None):
            rows = self.table[np.asarray(users)]
            return rows if items is None else rows[:, np.asarray(items)]

    rng = np.random.default_rng(1)
    weights = 1.0 / np.arange(1, 31)
    rows = [(f"u{u}", f"i{i}") for u in range(25)
            for i in rng.choice(30, 8, replace=False, p=weights / weights.sum())]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)],
                          "title": [f"Item {i}" for i in range(30)]})
    dataset = Dataset(frame, items)
    test_rows = dataset.interactions.groupby("user_idx").tail(2).index
    train = dataset.interactions.drop(test_rows)
    test = dataset.interactions.loc[test_rows]
    model = DistinctScores().fit(dataset, train)
    users = pd.unique(test["user_id"]).tolist()
    result = evaluate.evaluate_run(model, dataset, test, users, 5, train=train)
    full = model.recommend(users=users, k=dataset.num_items, exclude_seen=True)
    reference = evaluate_recommendations(test, full, train=train, k=5,
                                         num_items=dataset.num_items)
    assert result["slices"]["cold_items"]["n_users"] > 0  # the cold slice is exercised
    assert result["auc"] == pytest.approx(reference["auc"])
    for name, values in reference["slices"].items():
        for key, value in values.items():
            assert result["slices"][name][key] == pytest.approx(value), (name, key)


# ---------------------------------------------------------------------------- csv_safety
@pytest.mark.parametrize("hostile", [
    '=HYPERLINK("http://evil.example","click")', "=1+2", "+cmd|' /C calc'!A0", "-foo",
    "-2+3", "@SUM(A1:A9)", "\tindent", "\rreturn", "-", "+", "=",
])
def test_hostile_cells_are_quoted(hostile):
    assert sanitize_cell(hostile) == "'" + hostile


@pytest.mark.parametrize("number", ["-1.5", "+3", "-5", "2e-4", "-.5", "1.", "0", "+1E+10"])
def test_numeric_strings_are_untouched(number):
    assert is_plain_number(number)
    assert sanitize_cell(number) == number


@pytest.mark.parametrize("value", [-1.5, 3, None, float("nan"), True, "plain text", "", "a=b"])
def test_other_cells_are_untouched(value):
    result = sanitize_cell(value)
    assert result is value or (isinstance(value, float) and np.isnan(result))


def test_sanitize_frame_keeps_numbers_and_quotes_text():
    frame = pd.DataFrame({"user_id": ["=evil", "-7", "ok"], "score": [-1.5, 2.0, -0.25],
                          "rank": [1, 2, 3], "=header": ["a", "b", "c"],
                          "genre": pd.Categorical(["@cat", "Drama", "+x"])})
    safe = sanitize_frame(frame)
    assert safe["user_id"].tolist() == ["'=evil", "-7", "ok"]
    assert safe["genre"].tolist() == ["'@cat", "Drama", "'+x"]
    assert safe["score"].tolist() == [-1.5, 2.0, -0.25] and safe["score"].dtype == np.float64
    assert safe["rank"].dtype == frame["rank"].dtype
    assert list(safe.columns) == ["user_id", "score", "rank", "'=header", "genre"]
    assert frame["user_id"].tolist() == ["=evil", "-7", "ok"]  # input untouched


def test_write_csv_round_trips_through_a_csv_reader(tmp_path):
    frame = pd.DataFrame({"item_id": ['=HYPERLINK("x","y")', "-foo", "-1.5", 'quote"d'],
                          "score": [-1.5, 0.5, 1.0, 2.0]})
    path = write_csv(frame, tmp_path / "sub" / "out.csv")
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    assert rows[0] == ["item_id", "score"]
    assert [r[0] for r in rows[1:]] == ["'=HYPERLINK(\"x\",\"y\")", "'-foo", "-1.5", 'quote"d']
    assert [r[1] for r in rows[1:]] == ["-1.5", "0.5", "1.0", "2.0"]
    assert to_csv_string(frame) == path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["out.csv"]  # no temp file left
    assert list(csv.reader(io.StringIO(to_csv_string(frame))))[1][0].startswith("'=")
