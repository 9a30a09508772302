"""``python -m recsys_core train --param KEY=VALUE``: any hyper-parameter of the chosen model,
clear exit-2 errors for unknown keys, bad values and conflicts with dedicated options."""

from __future__ import annotations

import json

import pytest

from recsys_core.cli import build_parser, main


def train(files, out, *extra):
    return main(["train", "--interactions", str(files["interactions"]), "--out", str(out),
                 *extra])


def test_param_is_repeatable_and_defaults_to_none():
    args = build_parser().parse_args(["train", "--interactions", "x.csv", "--out", "r",
                                      "--param", "a=1", "--param", "b=2"])
    assert args.param == ["a=1", "b=2"]
    assert build_parser().parse_args(["train", "--interactions", "x", "--out", "r"]).param == []


def test_closed_form_model_takes_a_param(tiny_files, tmp_path):
    out = tmp_path / "ease"
    assert train(tiny_files, out, "--model", "ease", "--param", "reg_lambda=7.5") == 0
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["reg_lambda"] == 7.5
    assert info["extra"]["params"] == ["reg_lambda=7.5"]


@pytest.mark.parametrize("param, words", [
    ("reg_lamda=3", ["reg_lamda", "Did you mean 'reg_lambda'", "Valid keys for ease:",
                     "reg_lambda (float)", "max_items (int)"]),
    ("reg_lambda=lots", ["reg_lambda", "expected float", "'lots'", "Valid keys for ease:"]),
    ("reg_lambda", ["not KEY=VALUE"]),
    ("reg_lambda=-1", ["refuses reg_lambda=-1", "must be positive"]),
])
def test_bad_params_exit_2_with_a_clear_message(tiny_files, tmp_path, capsys, param, words):
    assert train(tiny_files, tmp_path / "r", "--model", "ease", "--param", param) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert all(word in err for word in words), err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("param, flag", [
    ("epochs=3", "--epochs"), ("seed=4", "--seed"), ("eval_k=5", "--k"),
    ("device=cpu", "--device")])
def test_a_param_that_a_dedicated_option_sets_is_an_error(tiny_files, tmp_path, capsys, param,
                                                         flag):
    assert train(tiny_files, tmp_path / "r", "--model", "mf", "--param", param) == 2
    assert f"conflicts with {flag}" in capsys.readouterr().err


def test_show_progress_belongs_to_the_command(tiny_files, tmp_path, capsys):
    assert train(tiny_files, tmp_path / "r", "--model", "mf",
                 "--param", "show_progress=true") == 2
    assert "cannot be set" in capsys.readouterr().err


def test_flagship_paths_switch_off(tiny_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "flagship"
    assert train(tiny_files, out, "--items", str(tiny_files["items"]), "--epochs", "1",
                 "--param", "item_item=false", "--param", "graph_filter=false",
                 "--param", "embedding_dim=16") == 0
    info = json.loads((out / "run.json").read_text())
    config = info["config"]
    assert config["item_item"] is False and config["graph_filter"] is False
    assert config["embedding_dim"] == 16 and config["epochs"] == 1
    assert not any(name.startswith("item_item.") for name in info["tensors"])
    assert "Chosen on validation: item-item path" not in capsys.readouterr().err


def test_every_command_reading_files_takes_the_same_input_and_column_options():
    """validate, train, evaluate and report share one definition of the input files and the
    column overrides (recsys_core.cli.options), so the same flags read the same files."""
    from recsys_core.cli.options import column_options

    parser = build_parser()
    columns = ["--user-col", "u", "--item-col", "i", "--rating-col", "r", "--time-col", "t"]
    commands = {"validate": ["--interactions", "a.csv"],
                "train": ["--interactions", "a.csv", "--out", "run"],
                "evaluate": ["--interactions", "a.csv"],
                "report": ["--run", "run", "--test", "t.csv", "--out", "r.html"]}
    for command, required in commands.items():
        args = parser.parse_args([command, *required, *columns])
        assert column_options(args) == {"user_col": "u", "item_col": "i", "rating_col": "r",
                                        "time_col": "t"}, command
        if command != "report":
            files = parser.parse_args([command, *required, "--items", "b.csv", "--users",
                                       "c.csv", "--user-edges", "d.csv"])
            assert (files.items, files.users, files.user_edges) == ("b.csv", "c.csv", "d.csv")


# ---------------------------------------------------------------------------------- --tune
def test_tune_chooses_on_the_flagships_validation_split_and_saves_the_choice(tiny_files,
                                                                             tmp_path, capsys):
    from recsys_core.ingest import load_dataset
    from recsys_core.tuning import tune_model

    out = tmp_path / "ease"
    assert train(tiny_files, out, "--model", "ease", "--tune",
                 "--grid", "reg_lambda=0.5,50,5000") == 0
    info = json.loads((out / "run.json").read_text())
    tuning = info["extra"]["tuning"]
    assert [p["params"]["reg_lambda"] for p in tuning["points"]] == [0.5, 50.0, 5000.0]
    assert info["config"]["reg_lambda"] == tuning["chosen"]["reg_lambda"]
    assert "Chosen on validation: reg_lambda" in capsys.readouterr().err
    # the same choice as the library's tuner on the same data (same carve, same metric)
    dataset = load_dataset(tiny_files["interactions"])
    _, record = tune_model("ease", dataset, dataset.interactions,
                           {"reg_lambda": [0.5, 50.0, 5000.0]})
    assert record.chosen == tuning["chosen"]
    assert [p.ndcg for p in record.points] == pytest.approx([p["ndcg"] for p in tuning["points"]])


def test_tune_leaves_keys_fixed_by_param_out_of_the_default_grid(tiny_files, tmp_path):
    out = tmp_path / "rp3"
    assert train(tiny_files, out, "--model", "rp3beta", "--tune", "--param", "beta=0.25",
                 "--grid", "neighbours=5,10") == 0
    info = json.loads((out / "run.json").read_text())
    tried = [p["params"] for p in info["extra"]["tuning"]["points"]]
    assert all(set(p) == {"alpha", "neighbours"} for p in tried) and len(tried) == 3 * 2
    assert info["config"]["beta"] == 0.25


@pytest.mark.parametrize("extra, words", [
    (["--grid", "reg_lambda=1,2"], ["--grid sets the values --tune tries"]),
    (["--tune", "--grid", "reg_lambda=1,lots"], ["--grid reg_lambda='lots'", "expected float"]),
    (["--tune", "--grid", "reg_lambda"], ["is not KEY=V1,V2"]),
])
def test_bad_tuning_options_exit_2_before_reading_data(tiny_files, tmp_path, capsys, extra,
                                                       words):
    assert train(tiny_files, tmp_path / "r", "--model", "ease", *extra) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words), err
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_tune_without_a_grid_fits_as_given(tiny_files, tmp_path, capsys):
    assert train(tiny_files, tmp_path / "pop", "--model", "pop", "--tune") == 0
    assert "pop has no settings for --tune to choose" in capsys.readouterr().err
    assert "tuning" not in json.loads((tmp_path / "pop" / "run.json").read_text())["extra"]
