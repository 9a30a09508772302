"""Saved runs: a fitted model plus the data snapshot needed to rebuild it, in one directory.

A run directory holds only data formats that cannot execute code:

* ``run.json`` - model name and constructor config, seed, creation time, data summary,
  metrics, library versions, and a SHA-256 checksum of every other file;
* ``model.safetensors`` - the model's :meth:`~recsys_core.models.base.Recommender.state_tensors`;
* ``interactions.parquet`` - the training interactions (``user_id, item_id, rating,
  timestamp``);
* ``items.parquet`` - item metadata in item-index order, attribute columns as ``list<string>``;
* ``users.parquet`` - every user id in user-index order;
* ``user_features.parquet`` / ``user_edges.parquet`` - user metadata and user-user edges, when
  the dataset has them;
* ``test.parquet`` - held-out interactions, when the run was saved with its test split (the
  app does, so a reopened run shows its metrics).

A run travels as a zip of these files (:func:`run_zip_bytes`, :func:`save_run_zip`) and is read
back from one in memory (:func:`read_run_zip`), strictly: only these names, size caps, no
links, no pickles, checksums, tensor names and shapes as ``run.json`` records them.

Nothing is ever read with :mod:`pickle` or :func:`torch.load`. A directory is written into a
temporary sibling and moved into place with :func:`os.replace`, so a crash never leaves a
half-written run behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import struct
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from .dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL, Dataset
from .errors import ModelLoadError, RecScopeError
from .html_safety import clean_text
from .models import ModelNotAvailableError, get_model_class
from .models.base import Recommender

RUN_FORMAT = "recscope-run"
RUN_FORMAT_VERSION = 1
RUN_FILE = "run.json"
MODEL_FILE = "model.safetensors"
INTERACTIONS_FILE = "interactions.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
USER_FEATURES_FILE = "user_features.parquet"
USER_EDGES_FILE = "user_edges.parquet"
TEST_FILE = "test.parquet"
#: Every file a run may hold; a run that lists or zips any other name is refused.
RUN_MEMBERS = (RUN_FILE, MODEL_FILE, INTERACTIONS_FILE, ITEMS_FILE, USERS_FILE,
               USER_FEATURES_FILE, USER_EDGES_FILE, TEST_FILE)
#: Largest zipped run accepted (bytes, compressed).
MAX_ZIP_BYTES = 512 * 2**20
#: Largest total of a zipped run's files, uncompressed (bytes); each file is also capped.
MAX_ZIP_TOTAL_BYTES = 1024 * 2**20
_MEMBER_CAPS = {RUN_FILE: 16 * 2**20}
_MAX_ZIP_ENTRIES = 2 * len(RUN_MEMBERS)
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz", ".ckpt")

#: A safetensors header is a JSON object; anything claiming more is not one of ours.
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def save_run(
    directory: str | os.PathLike,
    model: Recommender,
    dataset: Dataset,
    train: pd.DataFrame,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    test: pd.DataFrame | None = None,
) -> Path:
    """Write a fitted model and its data snapshot to ``directory`` (atomically).

    Args:
        directory (str or PathLike): The run directory. It is created; an existing run there is
            replaced, but a non-empty directory that is not a run is never overwritten.
        model (Recommender): A fitted model.
        dataset (Dataset): The dataset the model was fitted on.
        train (pandas.DataFrame): The training interactions (rows of ``dataset.interactions``);
            they are what recommendations exclude after loading.
        metrics (dict, optional): Evaluation results to record. (default: :obj:`None`)
        extra (dict, optional): Anything else JSON-serialisable to record, e.g. fit seconds or
            the command line. (default: :obj:`None`)
        test (pandas.DataFrame, optional): Held-out interactions to keep with the run
            (``user_id, item_id, rating, timestamp``; users and items of ``dataset``), so the
            run can be evaluated again where it is opened. (default: :obj:`None`)

    Returns:
        The run directory.
    """
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise RecScopeError(f"'{directory}' exists and is not a directory; choose another "
                                f"--out for the run.")
        if any(directory.iterdir()) and not (directory / RUN_FILE).is_file():
            raise RecScopeError(f"'{directory}' is a non-empty directory that is not a RecScope "
                                f"run; refusing to overwrite it. Choose a new or empty --out.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    config = model.config()
    tensors = _cpu_tensors(model.state_tensors())
    info: dict[str, Any] = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "model": model.name,
        "config": config,
        "seed": config.get("seed", getattr(model, "seed", None)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data_summary(dataset, train, test),
        "metrics": metrics,
        "extra": extra or {},
        "versions": library_versions(),
        "tensors": {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
                    for k, v in tensors.items()},
        "files": {},
    }
    info_text = _to_json(info)  # fail on unserialisable config/metrics before writing anything

    tmp = directory.parent / f".{directory.name}.{uuid.uuid4().hex[:8]}.tmp"
    os.mkdir(tmp)  # a named directory (not mkdtemp) so it gets the usual umask permissions
    try:
        save_file(tensors, str(tmp / MODEL_FILE))
        _write_parquet(_interactions_table(train), tmp / INTERACTIONS_FILE)
        _write_parquet(_items_table(dataset), tmp / ITEMS_FILE)
        _write_parquet(pa.table({USER_COL: pa.array([str(u) for u in dataset.user_ids],
                                                    type=pa.string())}), tmp / USERS_FILE)
        if dataset.users is not None:
            _write_parquet(_plain_table(dataset.users), tmp / USER_FEATURES_FILE)
        if dataset.user_edges is not None:
            _write_parquet(_plain_table(dataset.user_edges), tmp / USER_EDGES_FILE)
        if test is not None:
            _write_parquet(_interactions_table(test), tmp / TEST_FILE)
        for path in sorted(tmp.iterdir()):
            info["files"][path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        info_text = _to_json(info)
        (tmp / RUN_FILE).write_text(info_text, encoding="utf-8")
        if directory.exists():
            old = directory.parent / f".{directory.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


@dataclass
class SavedRun:
    """A run read back by :func:`read_run` or :func:`read_run_zip`.

    Args:
        model (Recommender): The fitted model (scores identical to the saved one).
        dataset (Dataset): The dataset whose interactions are the training split.
        info (dict): The parsed ``run.json``.
        test (pandas.DataFrame, optional): The held-out interactions saved with the run
            (``user_id, item_id, rating, timestamp, user_idx, item_idx``), or ``None``.
        source (str): Where the run was read from, for display (a directory, or
            ``"<upload name>"`` for a zip; never used as a path).
    """

    model: Recommender
    dataset: Dataset
    info: dict[str, Any]
    test: pd.DataFrame | None
    source: str


def load_run(directory: str | os.PathLike,
             device: str | None = None) -> tuple[Recommender, Dataset, dict[str, Any]]:
    """Rebuild the model and dataset saved by :func:`save_run`.

    Args:
        directory (str or PathLike): The run directory.
        device (str, optional): Overrides the saved ``device`` argument of models that take
            one (``"auto"``, ``"cpu"``, ``"cuda"``). A run trained on a GPU falls back to
            ``"auto"`` when that GPU is absent. (default: :obj:`None`)

    Returns:
        ``(model, dataset, info)``: the fitted model (scores identical to the saved one), the
        dataset whose interactions are the training split, and the parsed ``run.json``.

    Raises:
        ModelLoadError: A file is missing, corrupt, modified, or not in the expected format.
    """
    saved = read_run(directory, device)
    return saved.model, saved.dataset, saved.info


def read_run(directory: str | os.PathLike, device: str | None = None) -> SavedRun:
    """:func:`load_run`, also returning the saved test split (see :class:`SavedRun`).

    Only the files the run format knows (:data:`RUN_MEMBERS`) are ever opened.

    Args:
        directory (str or PathLike): The run directory.
        device (str, optional): See :func:`load_run`. (default: :obj:`None`)

    Raises:
        ModelLoadError: A file is missing, corrupt, modified, or not in the expected format.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelLoadError(f"Run directory '{directory}' does not exist. Train one with "
                             f"`python -m recsys_core train ... --out {directory}`.")
    if not (directory / RUN_FILE).is_file():
        raise ModelLoadError(f"'{directory}' is not a RecScope run: '{RUN_FILE}' is missing.")
    files = {RUN_FILE: _read_bytes(directory / RUN_FILE)}
    info = _parse_info(files[RUN_FILE], str(directory / RUN_FILE))
    for name in info["files"]:
        path = directory / name
        if path.is_file():
            files[name] = _read_bytes(path)
    return _load_files(files, info, str(directory), lambda name: str(directory / name), device)


def read_run_zip(data: bytes, name: str = "run.zip", device: str | None = None,
                 max_zip_bytes: int | None = None,
                 max_total_bytes: int | None = None) -> SavedRun:
    """Read a zipped run (as written by :func:`run_zip_bytes`) from memory, strictly.

    Nothing is extracted and no name from the archive is ever used as a path: members are
    read into memory by name. The archive must hold exactly the files of one run
    (:data:`RUN_MEMBERS`, flat or inside one folder), each within its size cap, none
    encrypted or a link, none a pickle, each of the expected format (JSON, safetensors,
    Parquet) and matching the checksums, tensor names and shapes ``run.json`` records.

    Args:
        data (bytes): The zip archive.
        name (str): Its display name, used in messages only. (default: :obj:`"run.zip"`)
        device (str, optional): See :func:`load_run`. (default: :obj:`None`)
        max_zip_bytes (int, optional): Largest archive accepted.
            (default: :data:`MAX_ZIP_BYTES`)
        max_total_bytes (int, optional): Largest total of the uncompressed members.
            (default: :data:`MAX_ZIP_TOTAL_BYTES`)

    Raises:
        ModelLoadError: The archive is refused; the message names the file and why.
    """
    max_zip = MAX_ZIP_BYTES if max_zip_bytes is None else int(max_zip_bytes)
    max_total = MAX_ZIP_TOTAL_BYTES if max_total_bytes is None else int(max_total_bytes)
    label = clean_text(name, 120) or "run.zip"
    if len(data) > max_zip:
        raise ModelLoadError(f"'{label}' is {len(data) / 2**20:,.1f} MiB, more than the "
                             f"{max_zip / 2**20:,.0f} MiB a zipped run may be.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ModelLoadError(f"'{label}' is not a readable zip archive ({exc}). Upload the "
                             f"zip that RecScope's 'Download run' wrote.") from exc
    if len(entries) > _MAX_ZIP_ENTRIES:
        raise ModelLoadError(f"'{label}' holds {len(entries)} entries; a run has at most "
                             f"{len(RUN_MEMBERS)} files.")
    members = _zip_members(entries, label)
    files: dict[str, bytes] = {}
    total = 0
    for member, entry in members.items():
        where = f"{label}: {entry.filename}"
        cap = _MEMBER_CAPS.get(member, max_total)
        if entry.file_size > min(cap, max_total):
            raise ModelLoadError(f"'{where}' is {entry.file_size:,} bytes uncompressed, more "
                                 f"than the {min(cap, max_total):,} bytes allowed.")
        try:
            with archive.open(entry) as handle:
                content = handle.read(min(cap, max_total) + 1)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError,
                EOFError) as exc:
            raise ModelLoadError(f"'{where}' cannot be read from the archive ({exc}); the "
                                 f"zip is corrupt.") from exc
        total += len(content)
        if len(content) > cap or total > max_total:
            raise ModelLoadError(f"'{where}' is larger than the archive says; refusing the "
                                 f"zip (more than {max_total:,} bytes in all).")
        _sniff_member(member, content, where)
        files[member] = content
    if RUN_FILE not in files:
        raise ModelLoadError(f"'{label}' is not a RecScope run: it has no '{RUN_FILE}'.")
    prefix = next(iter(members.values())).filename[:-len(next(iter(members)))]

    def where(member: str) -> str:
        return f"{label}: {prefix}{member}"

    info = _parse_info(files[RUN_FILE], where(RUN_FILE))
    unlisted = sorted(set(files) - set(info["files"]) - {RUN_FILE})
    if unlisted:
        raise ModelLoadError(f"'{where(unlisted[0])}' is not listed in {RUN_FILE}: the run "
                             f"was modified after it was saved.")
    return _load_files(files, info, label, where, device)


# ---------------------------------------------------------------------------- zip export
def run_zip_bytes(directory: str | os.PathLike, folder: str | None = None) -> bytes:
    """A saved run directory as a zip archive (for download), in memory.

    Only the run's own files (``run.json`` and those it lists) are added, inside one
    folder; entries carry a fixed date so the same run always gives the same bytes.

    Args:
        directory (str or PathLike): A run directory written by :func:`save_run`.
        folder (str, optional): The folder inside the archive (letters, digits, ``.-_``
            kept). (default: the directory's name)

    Raises:
        ModelLoadError: ``directory`` is not a run.
    """
    directory = Path(directory)
    if not (directory / RUN_FILE).is_file():
        raise ModelLoadError(f"'{directory}' is not a RecScope run: '{RUN_FILE}' is missing.")
    info = _parse_info(_read_bytes(directory / RUN_FILE), str(directory / RUN_FILE))
    folder = safe_folder_name(folder if folder is not None else directory.name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in [RUN_FILE, *sorted(info["files"])]:
            entry = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, _read_bytes(directory / name))
    return buffer.getvalue()


def save_run_zip(model: Recommender, dataset: Dataset, train: pd.DataFrame,
                 folder: str = "run", **kwargs: Any) -> bytes:
    """:func:`save_run` into a temporary directory, returned as :func:`run_zip_bytes`.

    Args:
        model (Recommender): A fitted model.
        dataset (Dataset): Its dataset.
        train (pandas.DataFrame): Its training interactions.
        folder (str): The folder inside the archive. (default: :obj:`"run"`)
        **kwargs: ``test``, ``metrics`` and ``extra`` of :func:`save_run`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = save_run(Path(tmp) / "run", model, dataset, train, **kwargs)
        return run_zip_bytes(out, folder)


def safe_folder_name(name: object, default: str = "run") -> str:
    """``name`` reduced to letters, digits, ``.``, ``-`` and ``_`` (at most 80), for a
    folder or file name chosen from user text (e.g. a run id); ``default`` when nothing is
    left."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", clean_text(name)).strip(".-_")[:80]
    return text or default


# ---------------------------------------------------------------------------- summaries
def data_summary(dataset: Dataset, train: pd.DataFrame,
                 test: pd.DataFrame | None = None) -> dict[str, Any]:
    """Sizes of the dataset and training split (and test split, when given), recorded in
    ``run.json``."""
    trained_items = int(pd.unique(train[ITEM_COL]).size) if len(train) else 0
    summary = {
        "name": dataset.name,
        "num_users": int(dataset.num_users),
        "num_items": int(dataset.num_items),
        "num_train_interactions": int(len(train)),
        "num_items_without_train_interactions": int(dataset.num_items - trained_items),
        "attribute_columns": list(dataset.attribute_columns),
        "num_user_edges": 0 if dataset.user_edges is None else int(len(dataset.user_edges)),
    }
    if test is not None:
        summary["num_test_interactions"] = int(len(test))
    return summary


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a run's numbers."""
    from . import __version__

    versions = {"python": platform.python_version(), "recsys_core": __version__}
    for package in ("torch", "torch_geometric", "numpy", "pandas", "scipy", "pyarrow",
                    "safetensors", "transformers"):
        try:
            versions[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    return versions


# ---------------------------------------------------------------------------- writing
def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state tensor '{key}' is a {type(value).__name__}, not a Tensor")
        value = value.detach().to("cpu").contiguous()
        if value.data_ptr() in seen and value.numel():
            value = value.clone()  # safetensors refuses tensors that share memory
        seen.add(value.data_ptr())
        out[key] = value
    return out


def _interactions_table(train: pd.DataFrame) -> pa.Table:
    return pa.table({
        USER_COL: pa.array(train[USER_COL].astype(str).tolist(), type=pa.string()),
        ITEM_COL: pa.array(train[ITEM_COL].astype(str).tolist(), type=pa.string()),
        RATING_COL: pa.array(train[RATING_COL].to_numpy(np.float64), type=pa.float64()),
        TIME_COL: pa.array(train[TIME_COL].to_numpy(np.float64), type=pa.float64()),
    })


def _items_table(dataset: Dataset) -> pa.Table:
    items = dataset.items
    columns = {}
    for col in items.columns:
        if col in dataset.attribute_columns:
            values = [[str(v) for v in (cell if _is_list(cell) else [])] for cell in items[col]]
            columns[str(col)] = pa.array(values, type=pa.list_(pa.string()))
        else:
            columns[str(col)] = _arrow_column(items[col])
    return pa.table(columns)


def _plain_table(frame: pd.DataFrame) -> pa.Table:
    return pa.table({str(col): _arrow_column(frame[col]) for col in frame.columns})


def _arrow_column(series: pd.Series) -> pa.Array:
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        try:
            return pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    if series.map(_is_list).any():
        return pa.array([[str(v) for v in cell] if _is_list(cell) else None for cell in series],
                        type=pa.list_(pa.string()))
    # Text or mixed values: keep them as text, missing stays missing.
    return pa.array([None if _is_missing(v) else str(v) for v in series], type=pa.string())


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_json(info: dict[str, Any]) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (np.ndarray, torch.Tensor)):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable")

    try:
        return json.dumps(_finite(info), indent=2, default=default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run.json content is not JSON-serialisable: {exc}") from exc


def _finite(value: Any) -> Any:
    """NaN / infinity become ``None``: strict JSON has no such numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return None
    return value


# ---------------------------------------------------------------------------- reading
def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"'{path}' cannot be read ({exc.strerror or exc}).") from exc


def _parse_info(data: bytes, where: str) -> dict[str, Any]:
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelLoadError(f"'{where}' is not valid JSON ({exc}).") from exc
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise ModelLoadError(f"'{where}' is not a RecScope run description.")
    if info.get("format_version") != RUN_FORMAT_VERSION:
        raise ModelLoadError(f"'{where}' has run format version {info.get('format_version')!r}; "
                             f"this RecScope reads version {RUN_FORMAT_VERSION}.")
    for key, kind in (("model", str), ("config", dict), ("files", dict), ("data", dict)):
        if not isinstance(info.get(key), kind):
            raise ModelLoadError(f"'{where}' lacks a valid '{key}' entry.")
    unknown = sorted(str(n) for n in info["files"] if n not in RUN_MEMBERS or n == RUN_FILE)
    if unknown:
        raise ModelLoadError(f"'{where}' lists '{unknown[0]}', which is not a file of a "
                             f"RecScope run ({', '.join(RUN_MEMBERS)}).")
    for required in (MODEL_FILE, INTERACTIONS_FILE, ITEMS_FILE, USERS_FILE):
        if required not in info["files"]:
            raise ModelLoadError(f"'{where}' does not list '{required}'; the run is incomplete.")
    if not all(isinstance(meta, dict) for meta in info["files"].values()):
        raise ModelLoadError(f"'{where}' has a malformed 'files' entry.")
    return info


def _load_files(files: dict[str, bytes], info: dict[str, Any], label: str,
                where: Callable[[str], str], device: str | None) -> SavedRun:
    """Check and rebuild a run from its files' bytes (``where(name)`` names a file in
    messages)."""
    if MODEL_FILE not in files:
        raise ModelLoadError(f"Run '{label}' is incomplete: '{MODEL_FILE}' is missing.")
    _check_safetensors_header(files[MODEL_FILE], where(MODEL_FILE))
    try:
        # Own, aligned memory (the parsed tensors view the file's bytes).
        tensors = {k: v.clone() for k, v in load_safetensors(files[MODEL_FILE]).items()}
    except Exception as exc:  # safetensors raises its own error types; all mean "corrupt"
        raise ModelLoadError(f"'{where(MODEL_FILE)}' is not a valid safetensors file "
                             f"({exc}).") from exc
    for name, meta in info["files"].items():
        if name not in files:
            raise ModelLoadError(f"Run '{label}' is incomplete: '{name}' is missing.")
        if hashlib.sha256(files[name]).hexdigest() != meta.get("sha256"):
            raise ModelLoadError(f"'{where(name)}' does not match the checksum recorded in "
                                 f"run.json: the file was modified or corrupted. Retrain the "
                                 f"model.")
    _check_listed_tensors(tensors, info, where(MODEL_FILE))
    dataset, train, test = _read_dataset(files, info, label, where)
    model = _build_model(info, device)
    try:
        model.restore(dataset, train, tensors)
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        raise ModelLoadError(f"The tensors in '{where(MODEL_FILE)}' do not fit a "
                             f"'{info['model']}' model for this data: {exc}") from exc
    # A model may fill in tensors that runs saved by an older version lack (their defaults,
    # e.g. the flagship's side-information groups all on); anything else must match exactly.
    filled = set(getattr(model, "defaulted_state_keys", ())) - set(tensors)
    restored = {k: v for k, v in model.state_tensors().items() if k not in filled}
    if {k: tuple(v.shape) for k, v in restored.items()} != {
            k: tuple(v.shape) for k, v in tensors.items()}:
        raise ModelLoadError(f"'{where(MODEL_FILE)}' does not hold exactly the tensors a "
                             f"'{info['model']}' model has; the run is inconsistent.")
    return SavedRun(model=model, dataset=dataset, info=info, test=test, source=label)


def _check_listed_tensors(tensors: dict[str, torch.Tensor], info: dict[str, Any],
                          where: str) -> None:
    """The tensors match the names, shapes and dtypes ``run.json`` records (when it does)."""
    listed = info.get("tensors")
    if listed is None:
        return
    if not isinstance(listed, dict):
        raise ModelLoadError(f"run.json of '{where}' has a malformed 'tensors' entry.")
    missing = sorted(set(listed) - set(tensors))
    unexpected = sorted(set(tensors) - set(listed))
    if missing or unexpected:
        raise ModelLoadError(
            f"The tensors in '{where}' do not fit run.json: "
            + "; ".join(part for part in (
                f"missing tensor(s) {missing}" if missing else "",
                f"unexpected tensor(s) {unexpected}" if unexpected else "") if part)
            + ". The run was modified after it was saved.")
    for key, meta in listed.items():
        shape = list(tensors[key].shape)
        dtype = str(tensors[key].dtype).removeprefix("torch.")
        if not isinstance(meta, dict) or meta.get("shape") != shape or meta.get("dtype") != dtype:
            recorded = meta.get("shape") if isinstance(meta, dict) else meta
            raise ModelLoadError(f"The tensors in '{where}' do not fit run.json: tensor "
                                 f"'{key}' has shape {shape} ({dtype}), run.json records "
                                 f"{recorded}. The run was modified after it was saved.")


def _check_safetensors_header(data: bytes, where: str) -> None:
    """Cheap format check before parsing, for a clear message on e.g. a pickle file."""
    head = data[:9]
    header_len = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
    if (len(head) < 9 or header_len > min(len(data) - 8, _MAX_SAFETENSORS_HEADER)
            or head[8:9] != b"{"):
        raise ModelLoadError(
            f"'{where}' is not a safetensors file (RecScope only loads models saved as "
            f"safetensors + JSON, never pickle). Retrain the model or restore the original file.")


def _zip_members(entries: list[zipfile.ZipInfo], label: str) -> dict[str, zipfile.ZipInfo]:
    """The run files of a zip by name: every entry checked (safe name, a known run file, at
    most one folder level shared by all, no link, no encryption, a plain compression)."""
    members: dict[str, zipfile.ZipInfo] = {}
    folders: set[str] = set()
    for entry in entries:
        raw = entry.filename
        where = f"{label}: {clean_text(raw, 200)}"
        parts = raw.split("/")
        if (not raw or "\\" in raw or "\x00" in raw or raw.startswith("/") or ":" in parts[0]
                or any(p in ("", ".", "..") for p in parts[:-1]) or ".." in parts):
            raise ModelLoadError(f"'{where}' has an unsafe name (absolute, '..' or a drive); "
                                 f"refusing the zip.")
        mode = (entry.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            raise ModelLoadError(f"'{where}' is a symbolic link; a run zip holds plain files "
                                 f"only.")
        if entry.flag_bits & 0x1:
            raise ModelLoadError(f"'{where}' is encrypted; RecScope reads unencrypted run zips "
                                 f"only.")
        if entry.is_dir():
            if len(parts) != 2:
                raise ModelLoadError(f"'{where}': a run zip holds one folder at most.")
            folders.add(parts[0])
            continue
        if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelLoadError(f"'{where}' uses an unsupported compression; re-zip the run "
                                 f"with the standard (deflate) method.")
        if len(parts) > 2:
            raise ModelLoadError(f"'{where}' is nested too deep: a run zip holds the run's "
                                 f"files directly or inside one folder.")
        if len(parts) == 2:
            folders.add(parts[0])
        member = parts[-1]
        if member not in RUN_MEMBERS:
            kind = (" It looks like a pickle or torch file; RecScope never loads those."
                    if member.lower().endswith(_PICKLE_SUFFIXES) else "")
            raise ModelLoadError(f"'{where}' is not a file of a RecScope run (expected "
                                 f"{', '.join(RUN_MEMBERS)}).{kind}")
        if member in members:
            raise ModelLoadError(f"'{where}' appears twice in the zip; refusing it.")
        members[member] = entry
    if len(folders) > 1 or (folders and any("/" not in e.filename for e in members.values())):
        raise ModelLoadError(f"'{label}' mixes folders; a run zip holds one run, flat or "
                             f"inside one folder.")
    if not members:
        raise ModelLoadError(f"'{label}' holds no files of a RecScope run.")
    return members


def _sniff_member(member: str, content: bytes, where: str) -> None:
    """Refuse a member whose bytes are a pickle or a torch archive, or not its format."""
    if (content[:1] == b"\x80" and content[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or \
            content[:4] == b"PK\x03\x04":
        raise ModelLoadError(f"'{where}' holds a pickle (or a torch.save archive); RecScope "
                             f"only loads safetensors + JSON + Parquet, never pickle.")
    if member.endswith(".parquet") and (len(content) < 12 or content[:4] != b"PAR1"
                                        or content[-4:] != b"PAR1"):
        raise ModelLoadError(f"'{where}' is not a Parquet file.")


def _read_table(data: bytes, where: str, required: list[str]) -> pd.DataFrame:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise ModelLoadError(f"'{where}' is not a readable Parquet file ({exc}).") from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ModelLoadError(f"'{where}' lacks column(s) {missing}.")
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type):  # python lists, not numpy arrays, like ingestion
            columns[name] = pd.Series([[] if v is None else v for v in column.to_pylist()],
                                      dtype=object)
        else:
            columns[name] = column.to_pandas()
    return pd.DataFrame(columns)


def _read_dataset(files: dict[str, bytes], info: dict[str, Any], label: str,
                  where: Callable[[str], str]
                  ) -> tuple[Dataset, pd.DataFrame, pd.DataFrame | None]:
    data = info["data"]
    interaction_columns = [USER_COL, ITEM_COL, RATING_COL, TIME_COL]
    items = _read_table(files[ITEMS_FILE], where(ITEMS_FILE), [ITEM_COL])
    users = _read_table(files[USERS_FILE], where(USERS_FILE), [USER_COL])
    train = _read_table(files[INTERACTIONS_FILE], where(INTERACTIONS_FILE), interaction_columns)
    edges = None
    if USER_EDGES_FILE in info["files"]:
        edges = _read_table(files[USER_EDGES_FILE], where(USER_EDGES_FILE), ["src", "dst"])
    features = None
    if USER_FEATURES_FILE in info["files"]:
        features = _read_table(files[USER_FEATURES_FILE], where(USER_FEATURES_FILE), [USER_COL])
    test = None
    if TEST_FILE in info["files"]:
        test = _read_table(files[TEST_FILE], where(TEST_FILE), interaction_columns)
    attributes = list(data.get("attribute_columns", []))
    missing = [c for c in attributes if c not in items.columns]
    if missing:
        raise ModelLoadError(f"'{where(ITEMS_FILE)}' lacks attribute column(s) {missing}.")

    # Build the id maps from the saved orders first (no interactions), so user and item
    # indices are exactly the saved ones, then attach the training interactions.
    empty = pd.DataFrame({USER_COL: pd.Series([], dtype=str), ITEM_COL: pd.Series([], dtype=str),
                          RATING_COL: pd.Series([], dtype=np.float64),
                          TIME_COL: pd.Series([], dtype=np.float64)})
    try:
        base = Dataset(interactions=empty, items=items, attribute_columns=attributes,
                       user_edges=edges, users=users, name=str(data.get("name", "dataset")))
        if (base.num_users != len(users) or base.num_items != len(items)
                or base.num_users != data.get("num_users")
                or base.num_items != data.get("num_items")):
            raise ModelLoadError(f"The user/item tables of run '{label}' do not match "
                                 f"run.json; the run is inconsistent.")
        train = train.assign(user_idx=base.user_idx(train[USER_COL]),
                             item_idx=base.item_idx(train[ITEM_COL]))
        if test is not None:
            test = test.assign(user_idx=base.user_idx(test[USER_COL]),
                               item_idx=base.item_idx(test[ITEM_COL]))
    except RecScopeError as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(f"The data snapshot of run '{label}' is inconsistent: "
                             f"{exc}") from exc
    dataset = base.subset_interactions(train)
    dataset.users = features
    return dataset, dataset.interactions, test


def _build_model(info: dict[str, Any], device: str | None) -> Recommender:
    name = info["model"]
    try:
        cls = get_model_class(name)
    except ModelNotAvailableError as exc:
        raise ModelLoadError(f"The run was saved by model '{name}': {exc}") from exc
    config = dict(info["config"])
    if "device" in config:
        if device is not None:
            config["device"] = device
        elif str(config["device"]).startswith("cuda") and not torch.cuda.is_available():
            config["device"] = "auto"
    try:
        return cls(**config)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"run.json's config does not fit model '{name}': {exc}") from exc
