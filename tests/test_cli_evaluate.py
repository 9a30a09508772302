"""`python -m recsys_core evaluate`: --split, --k, --ci and --compare on tiny files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys_core.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py
METRICS = ["recall", "precision", "ndcg", "map", "hit"]


@pytest.fixture
def runs(split_files, tmp_path):
    out = {}
    for name in ("ease", "pop"):
        out[name] = tmp_path / f"run_{name}"
        assert main(["train", "--interactions", str(split_files["train"]), "--model", name,
                     "--out", str(out[name])]) == 0
    return out


def test_one_run_with_ci_keeps_the_old_json(runs, split_files, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--run", str(runs["ease"]), "--test", str(split_files["test"]),
                 "--k", "3", "--ci", "--resamples", "200"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["model"] == "ease" and result["k"] == 3 and result["num_test_users"] == 8
    assert list(result["intervals"]) == METRICS
    for metric in METRICS:
        ci = result["intervals"][metric]
        assert ci["low"] <= ci["value"] <= ci["high"]
    # the point estimates are the metrics' own means
    assert result["intervals"]["recall"]["value"] == pytest.approx(result["metrics"]["recall"])
    assert result["intervals"]["ndcg"]["value"] == pytest.approx(result["metrics"]["ndcg"])
    assert "95% bootstrap intervals over 8 test users" in out.err
    assert "recall@3" in out.err


def test_compare_two_runs_paired(runs, split_files, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--run", str(runs["ease"]), "--run", str(runs["pop"]),
                 "--test", str(split_files["test"]), "--k", "5", "--compare",
                 "--compare-method", "wilcoxon"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert [m["model"] for m in result["models"]] == ["ease", "pop"]
    rows = {r["metric"]: r for r in result["comparisons"]}
    assert set(rows) == set(METRICS)
    ndcg = rows["ndcg"]
    assert ndcg["method"] == "wilcoxon" and ndcg["n_users"] == 8 and 0 <= ndcg["p_value"] <= 1
    assert ndcg["mean_a"] == pytest.approx(result["models"][0]["metrics"]["ndcg"])
    assert ndcg["difference"] == pytest.approx(ndcg["mean_a"] - ndcg["mean_b"])
    assert "vs" in out.err and "p = " in out.err


def test_unknown_users_and_items_are_counted_not_fatal(runs, split_files, write_file, capsys):
    test = pd.read_csv(split_files["test"], dtype=str)
    extra = pd.DataFrame({"user_id": ["stranger", "u1"], "item_id": ["i1", "i404"],
                          "rating": ["5", "5"], "timestamp": ["1600000000"] * 2})
    mixed = write_file("mixed.csv", pd.concat([test, extra]).to_csv(index=False))
    capsys.readouterr()
    assert main(["evaluate", "--run", str(runs["ease"]), "--run", str(runs["pop"]), "--test",
                 str(mixed), "--k", "5", "--ci", "--resamples", "100"]) == 0
    out = capsys.readouterr()
    for model in json.loads(out.out)["models"]:
        assert model["skipped_test_rows"]["unknown_user"] == 1
        assert model["skipped_test_rows"]["unknown_item"] == 1
    assert "skipped 1 test row(s): unknown user" in out.err


@pytest.mark.parametrize("split", ["random", "temporal", "time-cut"])
def test_split_fits_and_evaluates_models(split, split_files, capsys):
    capsys.readouterr()
    code = main(["evaluate", "--interactions", str(split_files["all"]), "--split", split,
                 "--model", "pop", "--model", "ease", "--k", "4", "--ci", "--compare",
                 "--resamples", "100", "--time-quantile", "0.7"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["split"]["method"] == split and result["k"] == 4
    assert result["split"]["num_test_interactions"] > 0
    assert [m["model"] for m in result["models"]] == ["pop", "ease"]
    assert all(set(m["intervals"]) == set(METRICS) for m in result["models"])
    assert {r["a"] for r in result["comparisons"]} == {"pop"}
    words = {"random": "random per user", "temporal": "temporal leave-last-out",
             "time-cut": "global time cut"}[split]
    assert f"Split: {words}" in out.err


def test_time_cut_by_date(split_files, capsys):
    capsys.readouterr()
    frame = pd.read_csv(split_files["all"])
    cut = pd.Timestamp(frame["timestamp"].quantile(0.6), unit="s").isoformat()
    assert main(["evaluate", "--interactions", str(split_files["all"]), "--split", "time-cut",
                 "--time-cut", cut, "--model", "pop", "--k", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "after" in result["split"]["description"]


@pytest.mark.parametrize("argv, message", [
    (["--k", "0"], "--k must be at least 1"),
    (["--split", "temporal", "--model", "pop"], "needs timestamps"),
    (["--split", "time-cut", "--time-cut", "1990-01-01", "--model", "pop"], "no interaction is"),
    (["--model", "pop", "--compare"], "--compare needs at least two"),
    ([], "at least one --model"),
])
def test_bad_requests_exit_2_with_a_message(argv, message, tiny_files, write_file, capsys):
    source = str(tiny_files["interactions"])
    if "temporal" in argv:  # the same data without its time column
        frame = pd.read_csv(source).drop(columns=["timestamp"])
        source = str(write_file("no_time.csv", frame.to_csv(index=False)))
    capsys.readouterr()
    assert main(["evaluate", "--interactions", source, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_run_and_interactions_together_exit_2(runs, split_files, capsys):
    assert main(["evaluate", "--run", str(runs["pop"]), "--interactions",
                 str(split_files["all"]), "--model", "pop"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(runs["pop"])]) == 2
    assert "--test FILE" in capsys.readouterr().err


def test_peers_fitted_on_a_split_are_tuned_on_validation_by_default(split_files, capsys):
    from recsys_core.tuning import DEFAULT_GRIDS

    capsys.readouterr()
    args = ["evaluate", "--interactions", str(split_files["all"]), "--model", "pop",
            "--model", "ease", "--k", "4"]
    assert main(args) == 0
    pop, ease = json.loads(capsys.readouterr().out)["models"]
    assert pop["tuning"] is None  # nothing to choose
    assert ease["tuning"]["settings_tried"] == len(DEFAULT_GRIDS["ease"]["reg_lambda"])
    assert ease["tuning"]["chosen"]["reg_lambda"] in DEFAULT_GRIDS["ease"]["reg_lambda"]
    assert main([*args, "--grid", "reg_lambda=2,20"]) == 0
    chosen = json.loads(capsys.readouterr().out)["models"][1]["tuning"]["chosen"]
    assert chosen["reg_lambda"] in (2.0, 20.0)
    assert main([*args, "--no-tune"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][1]["tuning"] is None
    assert main([*args, "--grid", "alpha=1"]) == 2
    assert "no --model given takes that argument" in capsys.readouterr().err


def test_a_model_that_cannot_fit_is_reported_and_the_others_go_on(split_files, capsys):
    """EASE refused by its dense-matrix bound: refused before its grid (the bound is checked
    on every training interaction, not only on the carved part), reported in the JSON and on
    stderr; the other model's figures are still printed, and the exit status is 1."""
    import recsys_core.tuning as tuning

    fitted = []
    real_fit = tuning._fit

    def counting_fit(model, *args, **kwargs):
        fitted.append(model.name)
        return real_fit(model, *args, **kwargs)

    capsys.readouterr()
    tuning._fit = counting_fit
    try:
        code = main(["evaluate", "--interactions", str(split_files["all"]), "--model", "pop",
                     "--model", "ease", "--k", "4", "--compare", "--grid", "max_items=2"])
    finally:
        tuning._fit = real_fit
    out = capsys.readouterr()
    assert code == 1
    pop, ease = json.loads(out.out)["models"]
    assert pop["model"] == "pop" and pop["metrics"]["recall"] >= 0
    assert ease == {"model": "ease", "error": ease["error"]}
    assert "above max_items=2" in ease["error"] and "ease" not in fitted
    assert "error: ease: EASE keeps a dense item-item matrix" in out.err
    assert "error: ease could not be fitted" in out.err
