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
  the dataset has them.

Nothing is ever read with :mod:`pickle` or :func:`torch.load`. A directory is written into a
temporary sibling and moved into place with :func:`os.replace`, so a crash never leaves a
half-written run behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import struct
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from .dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL, Dataset
from .errors import ModelLoadError, RecScopeError
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

#: A safetensors header is a JSON object; anything claiming more is not one of ours.
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def save_run(
    directory: str | os.PathLike,
    model: Recommender,
    dataset: Dataset,
    train: pd.DataFrame,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
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
        "data": data_summary(dataset, train),
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
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelLoadError(f"Run directory '{directory}' does not exist. Train one with "
                             f"`python -m recsys_core train ... --out {directory}`.")
    info = _read_info(directory)
    _check_safetensors_header(directory / MODEL_FILE)
    try:
        # Own, aligned memory: load_file maps the file, and a mapped tensor kept as a buffer
        # could change kernel paths (last-bit differences) and would pin the file.
        tensors = {k: v.clone() for k, v in load_file(str(directory / MODEL_FILE)).items()}
    except Exception as exc:  # safetensors raises its own error types; all mean "corrupt"
        raise ModelLoadError(f"'{directory / MODEL_FILE}' is not a valid safetensors file "
                             f"({exc}).") from exc
    for name, meta in info["files"].items():
        path = directory / name
        if not path.is_file():
            raise ModelLoadError(f"Run '{directory}' is incomplete: '{name}' is missing.")
        if _sha256(path) != meta.get("sha256"):
            raise ModelLoadError(f"'{path}' does not match the checksum recorded in run.json: "
                                 f"the file was modified or corrupted. Retrain the model.")

    dataset, train = _read_dataset(directory, info)
    model = _build_model(info, device)
    try:
        model.restore(dataset, train, tensors)
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        raise ModelLoadError(f"The tensors in '{directory / MODEL_FILE}' do not fit a "
                             f"'{info['model']}' model for this data: {exc}") from exc
    restored = model.state_tensors()
    if {k: tuple(v.shape) for k, v in restored.items()} != {
            k: tuple(v.shape) for k, v in tensors.items()}:
        raise ModelLoadError(f"'{directory / MODEL_FILE}' does not hold exactly the tensors a "
                             f"'{info['model']}' model has; the run is inconsistent.")
    return model, dataset, info


# ---------------------------------------------------------------------------- summaries
def data_summary(dataset: Dataset, train: pd.DataFrame) -> dict[str, Any]:
    """Sizes of the dataset and training split, recorded in ``run.json``."""
    trained_items = int(pd.unique(train[ITEM_COL]).size) if len(train) else 0
    return {
        "name": dataset.name,
        "num_users": int(dataset.num_users),
        "num_items": int(dataset.num_items),
        "num_train_interactions": int(len(train)),
        "num_items_without_train_interactions": int(dataset.num_items - trained_items),
        "attribute_columns": list(dataset.attribute_columns),
        "num_user_edges": 0 if dataset.user_edges is None else int(len(dataset.user_edges)),
    }


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
def _read_info(directory: Path) -> dict[str, Any]:
    path = directory / RUN_FILE
    if not path.is_file():
        raise ModelLoadError(f"'{directory}' is not a RecScope run: '{RUN_FILE}' is missing.")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"'{path}' is not valid JSON ({exc}).") from exc
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise ModelLoadError(f"'{path}' is not a RecScope run description.")
    if info.get("format_version") != RUN_FORMAT_VERSION:
        raise ModelLoadError(f"'{path}' has run format version {info.get('format_version')!r}; "
                             f"this RecScope reads version {RUN_FORMAT_VERSION}.")
    for key, kind in (("model", str), ("config", dict), ("files", dict), ("data", dict)):
        if not isinstance(info.get(key), kind):
            raise ModelLoadError(f"'{path}' lacks a valid '{key}' entry.")
    for required in (MODEL_FILE, INTERACTIONS_FILE, ITEMS_FILE, USERS_FILE):
        if required not in info["files"]:
            raise ModelLoadError(f"'{path}' does not list '{required}'; the run is incomplete.")
    if not (directory / MODEL_FILE).is_file():
        raise ModelLoadError(f"Run '{directory}' is incomplete: '{MODEL_FILE}' is missing.")
    return info


def _check_safetensors_header(path: Path) -> None:
    """Cheap format check before parsing, for a clear message on e.g. a pickle file."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    size = path.stat().st_size
    header_len = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
    if (len(head) < 9 or header_len > min(size - 8, _MAX_SAFETENSORS_HEADER)
            or head[8:9] != b"{"):
        raise ModelLoadError(
            f"'{path}' is not a safetensors file (RecScope only loads models saved as "
            f"safetensors + JSON, never pickle). Retrain the model or restore the original file.")


def _read_table(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ModelLoadError(f"'{path}' is not a readable Parquet file ({exc}).") from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ModelLoadError(f"'{path}' lacks column(s) {missing}.")
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type):  # python lists, not numpy arrays, like ingestion
            columns[name] = pd.Series([[] if v is None else v for v in column.to_pylist()],
                                      dtype=object)
        else:
            columns[name] = column.to_pandas()
    return pd.DataFrame(columns)


def _read_dataset(directory: Path, info: dict[str, Any]) -> tuple[Dataset, pd.DataFrame]:
    data = info["data"]
    items = _read_table(directory / ITEMS_FILE, [ITEM_COL])
    users = _read_table(directory / USERS_FILE, [USER_COL])
    train = _read_table(directory / INTERACTIONS_FILE, [USER_COL, ITEM_COL, RATING_COL, TIME_COL])
    edges = None
    if USER_EDGES_FILE in info["files"]:
        edges = _read_table(directory / USER_EDGES_FILE, ["src", "dst"])
    features = None
    if USER_FEATURES_FILE in info["files"]:
        features = _read_table(directory / USER_FEATURES_FILE, [USER_COL])
    attributes = list(data.get("attribute_columns", []))
    missing = [c for c in attributes if c not in items.columns]
    if missing:
        raise ModelLoadError(f"'{directory / ITEMS_FILE}' lacks attribute column(s) {missing}.")

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
            raise ModelLoadError(f"The user/item tables of run '{directory}' do not match "
                                 f"run.json; the run is inconsistent.")
        train = train.assign(user_idx=base.user_idx(train[USER_COL]),
                             item_idx=base.item_idx(train[ITEM_COL]))
    except RecScopeError as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(f"The data snapshot of run '{directory}' is inconsistent: "
                             f"{exc}") from exc
    dataset = base.subset_interactions(train)
    dataset.users = features
    return dataset, dataset.interactions


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
