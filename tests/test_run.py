"""Saved runs: safetensors + JSON + Parquet round trips, strict and pickle-free loading."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST_SETTINGS, PicklePayload, fast_model
from safetensors.torch import load_file, save_file

from recsys_core.errors import ModelLoadError, RecScopeError
from recsys_core.models import available_models
from recsys_core.run import (
    INTERACTIONS_FILE,
    ITEMS_FILE,
    MODEL_FILE,
    RUN_FILE,
    USER_EDGES_FILE,
    USER_FEATURES_FILE,
    load_run,
    save_run,
)


@pytest.fixture
def train_split(tiny_dataset):
    """Training rows without user u3's last interactions (so train != all interactions)."""
    inter = tiny_dataset.interactions
    drop = inter.index[inter["user_id"] == "u3"][-2:]
    return inter.drop(drop)


@pytest.fixture
def ease_run(tmp_path, tiny_dataset, train_split):
    model = fast_model("ease", tiny_dataset).fit(tiny_dataset, train_split)
    return save_run(tmp_path / "run", model, tiny_dataset, train_split), model


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", [m for m in FAST_SETTINGS if m in available_models()])
def test_round_trip_gives_identical_scores(name, tmp_path, tiny_dataset, train_split):
    model = fast_model(name, tiny_dataset).fit(tiny_dataset, train_split)
    run_dir = save_run(tmp_path / name, model, tiny_dataset, train_split, metrics={"ndcg": 0.5})
    loaded, dataset, info = load_run(run_dir)
    assert type(loaded) is type(model) and info["model"] == name
    users = np.arange(tiny_dataset.num_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    pd.testing.assert_frame_equal(loaded.recommend(k=4), model.recommend(k=4))
    cold = dataset.item_ids[~tiny_dataset.interacted_items()]
    pd.testing.assert_frame_equal(loaded.recommend(k=3, candidates=cold),
                                  model.recommend(k=3, candidates=cold))
    assert loaded.config() == model.config()


def test_dataset_snapshot_round_trips(ease_run, tiny_dataset, train_split):
    run_dir, _ = ease_run
    _, dataset, _ = load_run(run_dir)
    assert list(dataset.user_ids) == list(tiny_dataset.user_ids)
    assert list(dataset.item_ids) == list(tiny_dataset.item_ids)
    assert dataset.attribute_columns == tiny_dataset.attribute_columns
    for col in tiny_dataset.attribute_columns:  # list[str] cells, not numpy arrays
        assert dataset.items[col].tolist() == [list(v) for v in tiny_dataset.items[col]]
        assert all(isinstance(v, list) for v in dataset.items[col])
    assert dataset.item_texts() == tiny_dataset.item_texts()
    # The dataset's interactions are the training split, with the original indices.
    got = dataset.interactions[["user_idx", "item_idx", "rating"]].reset_index(drop=True)
    want = train_split[["user_idx", "item_idx", "rating"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert dataset.user_edges[["src", "dst"]].astype(str).values.tolist() == \
        tiny_dataset.user_edges[["src", "dst"]].astype(str).values.tolist()
    assert dataset.users["user_id"].astype(str).tolist() == \
        tiny_dataset.users["user_id"].astype(str).tolist()


def test_run_json_records_what_rebuilds_the_model(ease_run, tiny_dataset, train_split):
    run_dir, model = ease_run
    info = json.loads((run_dir / RUN_FILE).read_text())
    assert info["format"] == "recscope-run" and info["model"] == "ease"
    assert info["config"] == model.config()
    assert info["data"]["num_users"] == tiny_dataset.num_users
    assert info["data"]["num_train_interactions"] == len(train_split)
    assert {"python", "torch", "numpy", "recsys_core"} <= set(info["versions"])
    assert info["created"].endswith("+00:00")
    assert {MODEL_FILE, INTERACTIONS_FILE, ITEMS_FILE, USER_EDGES_FILE,
            USER_FEATURES_FILE} <= set(info["files"])
    assert all(len(meta["sha256"]) == 64 for meta in info["files"].values())
    assert info["tensors"]["weights"]["dtype"] == "float32"


def test_overwriting_a_run_is_atomic_and_clean(ease_run, tiny_dataset, train_split):
    run_dir, _ = ease_run
    pop = fast_model("pop", tiny_dataset).fit(tiny_dataset, train_split)
    save_run(run_dir, pop, tiny_dataset, train_split)
    assert load_run(run_dir)[2]["model"] == "pop"
    leftovers = [p.name for p in run_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary or backup directories left behind


def test_failed_save_keeps_the_previous_run(ease_run, tiny_dataset, train_split, monkeypatch):
    import recsys_core.run as run_module

    run_dir, model = ease_run
    before = (run_dir / MODEL_FILE).read_bytes()

    def disk_full(table, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_module, "_write_parquet", disk_full)
    pop = fast_model("pop", tiny_dataset).fit(tiny_dataset, train_split)
    with pytest.raises(OSError, match="No space"):
        save_run(run_dir, pop, tiny_dataset, train_split)
    assert (run_dir / MODEL_FILE).read_bytes() == before
    assert [p.name for p in run_dir.parent.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    assert load_run(run_dir)[2]["model"] == "ease"


def test_never_overwrites_a_directory_that_is_not_a_run(tmp_path, tiny_dataset, train_split):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    model = fast_model("pop", tiny_dataset).fit(tiny_dataset, train_split)
    with pytest.raises(RecScopeError, match="not a RecScope run"):
        save_run(precious, model, tiny_dataset, train_split)
    assert (precious / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------- refusals
def test_pickle_posing_as_model_is_refused(ease_run, no_pickle):
    run_dir, _ = ease_run
    (run_dir / MODEL_FILE).write_bytes(pickle.dumps({"weights": PicklePayload()}))
    with pytest.raises(ModelLoadError, match="not a safetensors file.*never pickle"):
        load_run(run_dir)


def test_torch_save_file_posing_as_model_is_refused(ease_run, no_pickle):
    run_dir, model = ease_run
    torch.save(model.state_tensors(), run_dir / MODEL_FILE)  # a zip of pickles
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        load_run(run_dir)


def test_truncated_safetensors_is_refused(ease_run):
    run_dir, _ = ease_run
    data = (run_dir / MODEL_FILE).read_bytes()
    (run_dir / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_run(run_dir)


@pytest.mark.parametrize("edit, fix_checksums, message", [
    (lambda tensors: {**tensors, "weights": tensors["weights"] * 2}, False, "checksum"),
    (lambda tensors: {**tensors, "weights": tensors["weights"][:, :-1].contiguous()}, True,
     "do not fit.*shape"),
    (lambda tensors: {**tensors, "backdoor": torch.zeros(2)}, True, "unexpected"),
], ids=["modified values fail the checksum", "wrong shapes even with a valid checksum",
        "unexpected names even with a valid checksum"])
def test_tampered_tensors_are_refused(ease_run, edit, fix_checksums, message):
    run_dir, _ = ease_run
    save_file(edit(load_file(str(run_dir / MODEL_FILE))), str(run_dir / MODEL_FILE))
    if fix_checksums:
        _rewrite_checksums(run_dir)
    with pytest.raises(ModelLoadError, match=message):
        load_run(run_dir)


def test_corrupt_parquet_is_refused(ease_run):
    run_dir, _ = ease_run
    (run_dir / ITEMS_FILE).write_bytes(b"PAR1 this is not parquet PAR1")
    _rewrite_checksums(run_dir)
    with pytest.raises(ModelLoadError, match="Parquet"):
        load_run(run_dir)


@pytest.mark.parametrize("victim", [RUN_FILE, MODEL_FILE, INTERACTIONS_FILE])
def test_missing_files_are_refused(ease_run, victim):
    run_dir, _ = ease_run
    (run_dir / victim).unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_run(run_dir)


def test_bad_run_json_is_refused(ease_run, tmp_path):
    run_dir, _ = ease_run
    (run_dir / RUN_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_run(run_dir)
    (run_dir / RUN_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelLoadError, match="not a RecScope run"):
        load_run(run_dir)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_run(tmp_path / "nowhere")


def test_unknown_model_or_bad_config_is_refused(ease_run):
    run_dir, _ = ease_run
    info = json.loads((run_dir / RUN_FILE).read_text())
    (run_dir / RUN_FILE).write_text(json.dumps({**info, "model": "ghost"}))
    with pytest.raises(ModelLoadError, match="ghost"):
        load_run(run_dir)
    (run_dir / RUN_FILE).write_text(json.dumps({**info, "config": {"shell": "rm -rf /"}}))
    with pytest.raises(ModelLoadError, match="config does not fit"):
        load_run(run_dir)


def test_header_check_rejects_an_absurd_header_length(ease_run):
    run_dir, _ = ease_run
    (run_dir / MODEL_FILE).write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        load_run(run_dir)


def _rewrite_checksums(run_dir):
    """Simulate a consistent but tampered run: update run.json's checksums."""
    import hashlib

    info = json.loads((run_dir / RUN_FILE).read_text())
    for name in info["files"]:
        info["files"][name]["sha256"] = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
    (run_dir / RUN_FILE).write_text(json.dumps(info))
