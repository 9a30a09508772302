"""Zipped runs: export, strict in-memory import, and every refusal naming the file."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from recsys_core.errors import ModelLoadError
from recsys_core.models import create_model
from recsys_core.run import (
    INTERACTIONS_FILE,
    ITEMS_FILE,
    MODEL_FILE,
    RUN_FILE,
    TEST_FILE,
    read_run,
    read_run_zip,
    run_zip_bytes,
    safe_folder_name,
    save_run,
    save_run_zip,
)


@pytest.fixture
def split(tiny_dataset):
    inter = tiny_dataset.interactions
    test = inter.groupby("user_id").tail(1)
    return inter.drop(test.index), test


@pytest.fixture
def ease(tiny_dataset, split):
    train, _ = split
    return create_model("ease", reg_lambda=5.0).fit(tiny_dataset, train)


@pytest.fixture
def zipped(tiny_dataset, split, ease):
    train, test = split
    return save_run_zip(ease, tiny_dataset, train, folder="my run", test=test)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {e.filename: archive.read(e) for e in archive.infolist() if not e.is_dir()}


def rezip(files: dict[str, bytes], fix_checksums: bool = True) -> bytes:
    """A zip of ``files`` (names as given); ``run.json``'s checksums updated to match, as a
    careful tamperer would."""
    files = dict(files)
    info_name = next((n for n in files if n.endswith(RUN_FILE)), None)
    if fix_checksums and info_name is not None:
        prefix = info_name[: -len(RUN_FILE)]
        info = json.loads(files[info_name])
        for name in info["files"]:
            if prefix + name in files:
                info["files"][name]["sha256"] = hashlib.sha256(files[prefix + name]).hexdigest()
        files[info_name] = json.dumps(info).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- round trips
def test_zip_round_trip_keeps_scores_and_the_test_split(zipped, tiny_dataset, split, ease,
                                                        no_pickle):
    names = sorted(members(zipped))
    assert all(n.startswith("my-run/") for n in names)  # folder name made safe
    saved = read_run_zip(zipped, name="upload.zip")
    users = np.arange(tiny_dataset.num_users)
    np.testing.assert_array_equal(saved.model.score(users), ease.score(users))
    _, test = split
    assert len(saved.test) == len(test)
    assert list(saved.test["user_id"]) == list(test["user_id"].astype(str))
    np.testing.assert_array_equal(saved.test["item_idx"].to_numpy(),
                                  test["item_idx"].to_numpy())
    assert saved.info["data"]["num_test_interactions"] == len(test)
    assert saved.source == "upload.zip"


def test_directory_zip_is_deterministic_and_holds_only_run_files(tmp_path, tiny_dataset,
                                                                 split, ease):
    train, _ = split
    run_dir = save_run(tmp_path / "r", ease, tiny_dataset, train)
    (run_dir / "notes.txt").write_text("not part of the run")
    first, second = run_zip_bytes(run_dir), run_zip_bytes(run_dir)
    assert first == second
    assert sorted(members(first)) == sorted(
        f"r/{n}" for n in [RUN_FILE, *json.loads((run_dir / RUN_FILE).read_text())["files"]])
    assert read_run_zip(first).test is None
    assert read_run(run_dir).info["model"] == "ease"


def test_a_flat_zip_is_accepted(zipped):
    flat = rezip({name.split("/", 1)[1]: data for name, data in members(zipped).items()})
    assert read_run_zip(flat).info["model"] == "ease"


def test_safe_folder_name():
    assert safe_folder_name("../../etc/passwd") == "etc-passwd"
    assert safe_folder_name("gnn-llm #2") == "gnn-llm-2"
    assert safe_folder_name("<>") == "run"


# ---------------------------------------------------------------------------- refusals
def refused(data: bytes, *fragments: str, name: str = "upload.zip") -> str:
    with pytest.raises(ModelLoadError) as err:
        read_run_zip(data, name=name)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_not_a_zip_is_refused():
    refused(b"definitely not a zip", "upload.zip", "not a readable zip")


def test_a_pickle_inside_the_zip_is_refused(zipped, no_pickle):
    files = members(zipped)
    files["my-run/model.pkl"] = pickle.dumps({"weights": [1, 2, 3]})
    refused(rezip(files), "upload.zip: my-run/model.pkl", "pickle")


def test_a_pickle_posing_as_the_model_is_refused(zipped, no_pickle):
    files = members(zipped)
    files[f"my-run/{MODEL_FILE}"] = pickle.dumps({"weights": [1, 2, 3]})
    refused(rezip(files), f"upload.zip: my-run/{MODEL_FILE}", "pickle")


def test_a_torch_save_archive_posing_as_the_model_is_refused(zipped, ease, no_pickle):
    files = members(zipped)
    buffer = io.BytesIO()
    torch.save(ease.state_tensors(), buffer)
    files[f"my-run/{MODEL_FILE}"] = buffer.getvalue()
    refused(rezip(files), MODEL_FILE, "never pickle")


@pytest.mark.parametrize("bad", ["../run.json", "/abs/run.json", "a/b/run.json", "C:run.json",
                                 "my-run\\run.json"])
def test_unsafe_or_nested_names_are_refused(zipped, bad):
    files = members(zipped)
    files[bad] = files.pop(f"my-run/{RUN_FILE}")
    refused(rezip(files, fix_checksums=False), "upload.zip")


def test_unknown_file_names_are_refused(zipped):
    files = members(zipped)
    files["my-run/readme.txt"] = b"hello"
    refused(rezip(files), "my-run/readme.txt", "not a file of a RecScope run")


def test_a_run_file_not_listed_in_run_json_is_refused(zipped):
    files = members(zipped)
    info = json.loads(files[f"my-run/{RUN_FILE}"])
    del info["files"][TEST_FILE]
    files[f"my-run/{RUN_FILE}"] = json.dumps(info).encode()
    refused(rezip(files), f"my-run/{TEST_FILE}", "not listed")


def test_missing_tensors_are_refused(zipped):
    files = members(zipped)
    tensors = load_safetensors(files[f"my-run/{MODEL_FILE}"])
    tensors.pop(sorted(tensors)[0])
    tensors["other"] = torch.zeros(2)
    files[f"my-run/{MODEL_FILE}"] = save_safetensors(tensors)
    refused(rezip(files), MODEL_FILE, "missing tensor")


@pytest.mark.parametrize("run_json_agrees, where, message", [
    (False, f"upload.zip: my-run/{MODEL_FILE}", "shape"),
    (True, MODEL_FILE, "do not fit"),
], ids=["even with fixed checksums", "against the model even when run.json agrees"])
def test_a_tensor_of_the_wrong_shape_is_refused(zipped, run_json_agrees, where, message):
    files = members(zipped)
    tensors = load_safetensors(files[f"my-run/{MODEL_FILE}"])
    key = max(tensors, key=lambda k: tensors[k].numel())
    tensors[key] = tensors[key][:-1].contiguous()
    files[f"my-run/{MODEL_FILE}"] = save_safetensors(tensors)
    if run_json_agrees:
        info = json.loads(files[f"my-run/{RUN_FILE}"])
        info["tensors"][key]["shape"] = list(tensors[key].shape)
        files[f"my-run/{RUN_FILE}"] = json.dumps(info).encode()
    refused(rezip(files), where, message)


def test_modified_files_fail_the_checksum(zipped):
    files = members(zipped)
    data = bytearray(files[f"my-run/{ITEMS_FILE}"])
    data[len(data) // 2] ^= 0xFF
    files[f"my-run/{ITEMS_FILE}"] = bytes(data)
    refused(rezip(files, fix_checksums=False), f"my-run/{ITEMS_FILE}", "checksum")


def test_missing_files_are_refused(zipped):
    files = members(zipped)
    del files[f"my-run/{INTERACTIONS_FILE}"]
    refused(rezip(files), INTERACTIONS_FILE, "missing")
    del files[f"my-run/{RUN_FILE}"]
    refused(rezip(files), "upload.zip", RUN_FILE)


def test_unknown_version_is_refused(zipped):
    files = members(zipped)
    info = json.loads(files[f"my-run/{RUN_FILE}"])
    info["format_version"] = 99
    files[f"my-run/{RUN_FILE}"] = json.dumps(info).encode()
    refused(rezip(files), f"upload.zip: my-run/{RUN_FILE}", "version 99")


def test_a_corrupt_parquet_member_is_refused(zipped):
    files = members(zipped)
    files[f"my-run/{ITEMS_FILE}"] = b"not parquet at all"
    refused(rezip(files), ITEMS_FILE, "not a Parquet file")


def test_size_caps(zipped):
    with pytest.raises(ModelLoadError, match="upload.zip.*MiB"):
        read_run_zip(zipped, name="upload.zip", max_zip_bytes=100)
    with pytest.raises(ModelLoadError, match="bytes"):
        read_run_zip(zipped, name="upload.zip", max_total_bytes=1000)


def test_a_zip_bomb_member_is_refused_by_its_declared_size(zipped):
    files = members(zipped)
    files[f"my-run/{TEST_FILE}"] = b"PAR1" + b"\0" * (3 * 2**20) + b"PAR1"
    data = rezip(files)
    assert len(data) < 2**20
    with pytest.raises(ModelLoadError, match=f"my-run/{TEST_FILE}.*bytes"):
        read_run_zip(data, max_total_bytes=2**20)


def test_symlinks_are_refused(zipped):
    files = members(zipped)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name)
            if name.endswith(ITEMS_FILE):
                entry.external_attr = 0o120777 << 16
            archive.writestr(entry, data)
    refused(buffer.getvalue(), ITEMS_FILE, "symbolic link")


def test_a_run_json_listing_a_foreign_path_is_refused(tmp_path, tiny_dataset, split, ease):
    train, _ = split
    run_dir = save_run(tmp_path / "r", ease, tiny_dataset, train)
    info = json.loads((run_dir / RUN_FILE).read_text())
    info["files"]["../../secret.txt"] = {"sha256": "0" * 64, "bytes": 1}
    (run_dir / RUN_FILE).write_text(json.dumps(info))
    with pytest.raises(ModelLoadError, match="secret.txt.*not a file of a RecScope run"):
        read_run(run_dir)


def test_saved_test_split_must_name_known_users(tmp_path, tiny_dataset, split, ease):
    train, test = split
    bad = pd.concat([test, test.head(1).assign(user_id="stranger")])
    run_dir = save_run(tmp_path / "r", ease, tiny_dataset, train, test=bad)
    with pytest.raises(ModelLoadError, match="inconsistent"):
        read_run(run_dir)
