"""The trained runs of one session: what a job publishes (:class:`TrainedModel`), what the
session keeps (:class:`Run`) and which one is active (:class:`RunRegistry`); saved runs found
on disk (:func:`find_saved_runs`), opened in the app (:func:`open_saved_run`) and exported
(:func:`export_run_zip`)."""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, ITEM_IDX, USER_COL, USER_IDX
from .evaluation import HEADLINE_K, chosen_on_validation, validation_choice
from .jobs import DONE

if TYPE_CHECKING:
    from .workspace import Workspace


@dataclass
class TrainedModel:
    """A fitted model as a job publishes it.

    Args:
        model_name (str): Registry name.
        model (Recommender): The fitted model.
        params (dict): Hyper-parameters given to the constructor (display values).
        history (list of dict): Progress events of its training.
        seconds (float): Fit wall time.
        device (str): Where it was trained.
        status (str): ``done`` or ``stopped`` (stopped early; best weights so far).
        metrics (dict, optional): Output of :func:`evaluate_model`.
        activate (bool): Make it the session's active run. (default: :obj:`True`)
        tuning (dict, optional): :meth:`recsys_core.tuning.TuningResult.to_dict` when the
            settings were chosen on validation (``params`` then holds the chosen values).
        label (str, optional): Run id to register it under (made unique; ``None``:
            ``"<model> #<n>"``). (default: :obj:`None`)
        meta (dict): What the run is, beyond its settings (e.g. ``ablation_of`` and
            ``ablation`` for a variant of :func:`ablation_plan`). (default: :obj:`{}`)
    """

    model_name: str
    model: Any
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    status: str = DONE
    metrics: dict[str, Any] | None = None
    activate: bool = True
    tuning: dict[str, Any] | None = None
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """One trained model of the session and what is known about it (see :class:`TrainedModel`);
    ``cache`` holds derived results (metrics, explanations) keyed by the page that made them."""

    run_id: str
    model_name: str
    model: Any
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"
    train_seconds: float = 0.0
    status: str = DONE
    created: float = field(default_factory=time.time)
    cache: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class RunRegistry:
    """Ordered runs of one session plus which one is active."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self.active_id: str | None = None
        self._counter = itertools.count(1)

    def new_id(self, model_name: str) -> str:
        while True:
            run_id = f"{model_name} #{next(self._counter)}"
            if run_id not in self._runs:
                return run_id

    def unique_id(self, label: str) -> str:
        """``label`` when no run has it yet, else ``"<label> #2"``, ``#3`` ..."""
        run_id, n = label, 1
        while run_id in self._runs:
            n += 1
            run_id = f"{label} #{n}"
        return run_id

    def add(
        self,
        model: Any,
        model_name: str | None = None,
        *,
        run_id: str | None = None,
        activate: bool = True,
        metrics: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        """Register a fitted model; returns its :class:`Run` (made active by default)."""
        model_name = model_name or getattr(model, "name", "model")
        run = Run(
            run_id=run_id or self.new_id(model_name), model_name=model_name, model=model, **fields
        )
        if metrics is not None:
            run.cache["metrics"] = metrics
        self._runs[run.run_id] = run
        if activate or self.active_id is None:
            self.active_id = run.run_id
        return run

    def add_trained(self, trained: TrainedModel) -> Run:
        return self.add(
            trained.model,
            trained.model_name,
            run_id=self.unique_id(trained.label) if trained.label else None,
            activate=trained.activate,
            metrics=trained.metrics,
            params=trained.params,
            history=list(trained.history),
            device=trained.device,
            train_seconds=trained.seconds,
            status=trained.status,
            tuning=trained.tuning,
            meta=dict(trained.meta),
        )

    def remove(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        if self.active_id == run_id:
            self.active_id = next(reversed(self._runs), None) if self._runs else None

    def get(self, run_id: str) -> Run:
        return self._runs[run_id]

    @property
    def active(self) -> Run | None:
        return self._runs.get(self.active_id) if self.active_id else None

    def ids(self) -> list[str]:
        return list(self._runs)

    def __iter__(self):
        return iter(list(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def summary(self) -> pd.DataFrame:
        """One row per run: id, model, status, device, seconds, headline metrics (warm and cold
        items separately, see :func:`evaluate_model`), parameters."""
        rows = []
        for r in self:
            metrics = r.cache.get("metrics") or {}
            warm, cold = metrics.get("warm_items") or {}, metrics.get("cold_items") or {}
            rows.append(
                {
                    "run": r.run_id,
                    "model": r.model_name,
                    "status": r.status,
                    "device": r.device,
                    "train_seconds": round(r.train_seconds, 2),
                    f"warm recall@{HEADLINE_K}": warm.get("recall"),
                    f"warm ndcg@{HEADLINE_K}": warm.get("ndcg"),
                    f"cold recall@{HEADLINE_K}": cold.get("recall"),
                    "parameters": ", ".join(f"{k}={v}" for k, v in r.params.items()),
                    "chosen_on_validation": chosen_on_validation(r.model),
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
                "run",
                "model",
                "status",
                "device",
                "train_seconds",
                f"warm recall@{HEADLINE_K}",
                f"warm ndcg@{HEADLINE_K}",
                f"cold recall@{HEADLINE_K}",
                "parameters",
                "chosen_on_validation",
            ],
        )

    def validation_choices(self) -> pd.DataFrame:
        """Which model chose which settings on validation: one row per run.

        Columns ``run``, ``model``, ``chosen on validation`` (the settings, in words),
        ``how`` (what was searched, on which split) and ``valid ndcg@20`` (of the chosen
        setting, where measured).
        """
        rows = [{"run": r.run_id, "model": r.model_name, **validation_choice(r.model)}
                for r in self]
        return pd.DataFrame(rows, columns=["run", "model", "chosen on validation", "how",
                                           f"valid ndcg@{HEADLINE_K}"])


# ---------------------------------------------------------------------------- saved runs
#: Folder (relative to the working directory) whose run directories the app lists.
DEFAULT_RUNS_DIR = "runs"
#: Most run directories listed from one runs folder.
MAX_LISTED_RUNS = 500


@dataclass(frozen=True)
class SavedRunEntry:
    """A run directory found under a runs folder (read from its ``run.json`` only).

    Args:
        path (Path): The run directory.
        model (str): Its model name.
        created (str): When it was saved (ISO time, as recorded).
        data_name (str): The name of its data set.
    """

    path: Path
    model: str
    created: str
    data_name: str

    def label(self) -> str:
        """``"<folder> · <model> · <data> · <created>"`` for a picker."""
        return " · ".join(p for p in (self.path.name, self.model, self.data_name,
                                      self.created.replace("T", " ")[:16]) if p)


def find_saved_runs(root: str | os.PathLike, limit: int = MAX_LISTED_RUNS) -> list[SavedRunEntry]:
    """The run directories directly under ``root`` (and ``root`` itself when it is one),
    newest first; folders whose ``run.json`` is not a RecScope run are left out.

    Args:
        root (str or PathLike): The runs folder; a missing one lists nothing.
        limit (int): Most entries returned. (default: :data:`MAX_LISTED_RUNS`)
    """
    from ..run import RUN_FILE, RUN_FORMAT

    root = Path(root)
    if not root.is_dir():
        return []
    candidates = [root] + sorted((p for p in root.iterdir() if p.is_dir()
                                  and not p.name.startswith(".")), key=lambda p: p.name)
    entries = []
    for path in candidates:
        info_path = path / RUN_FILE
        if not info_path.is_file() or info_path.stat().st_size > 16 * 2**20:
            continue
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
            continue
        data = info.get("data") if isinstance(info.get("data"), dict) else {}
        entries.append(SavedRunEntry(path=path, model=str(info.get("model", "?")),
                                     created=str(info.get("created") or ""),
                                     data_name=str(data.get("name") or "")))
        if len(entries) >= limit:
            break
    return sorted(entries, key=lambda e: (e.created, e.path.name), reverse=True)


def same_training_data(ws: Workspace, dataset: Any, train: pd.DataFrame) -> bool:
    """Whether a run's data is the workspace's: the same users and items in the same order and
    the same training interactions (then the workspace's test split is fair to it)."""
    if (dataset.num_users != ws.dataset.num_users or dataset.num_items != ws.dataset.num_items
            or len(train) != len(ws.train)):
        return False
    if not (np.array_equal(np.asarray(dataset.user_ids, dtype=object),
                           np.asarray(ws.dataset.user_ids, dtype=object))
            and np.array_equal(np.asarray(dataset.item_ids, dtype=object),
                               np.asarray(ws.dataset.item_ids, dtype=object))):
        return False
    width = np.int64(max(dataset.num_items, 1))

    def pairs(frame: pd.DataFrame) -> np.ndarray:
        return np.sort(frame[USER_IDX].to_numpy(np.int64) * width
                       + frame[ITEM_IDX].to_numpy(np.int64))

    return bool(np.array_equal(pairs(train), pairs(ws.train)))


def open_saved_run(saved: Any, ws: Workspace | None = None,
                   label: str | None = None) -> tuple[Workspace, Run, bool]:
    """Register a run read by :func:`recsys_core.run.read_run` / ``read_run_zip`` in the app.

    When the run was trained on ``ws``'s training split (:func:`same_training_data`), it joins
    ``ws`` beside the session's own runs and is evaluated on the same test split. Otherwise it
    gets a new workspace on its own data: its training interactions, and its saved test split
    (none when it was saved without one; :func:`attach_test` adds one).

    Args:
        saved (SavedRun): The run.
        ws (Workspace, optional): The session's current workspace. (default: :obj:`None`)
        label (str, optional): Run id to register it under (made unique). (default: the id it
            had when saved, else its folder or file name)

    Returns:
        ``(workspace, run, is_new_workspace)``; the run is made active.
    """
    from .plans import run_settings
    from .workspace import Workspace

    info, dataset = saved.info, saved.dataset
    extra = info.get("extra") if isinstance(info.get("extra"), dict) else {}
    train = dataset.interactions
    if ws is not None and same_training_data(ws, dataset, train):
        target, new = ws, False
    else:
        test = saved.test if saved.test is not None else train.iloc[:0]
        target = Workspace(dataset=dataset, train=train.reset_index(drop=True),
                           test=test.reset_index(drop=True),
                           source=f"saved run {Path(saved.source).name}")
        new = True
    name = label or str(extra.get("run_id") or Path(saved.source).name or info["model"])
    history = extra.get("history")
    run = target.runs.add(
        saved.model, info["model"], run_id=target.runs.unique_id(f"{name} (saved)"),
        history=list(history) if isinstance(history, list) else [],
        device=str(extra.get("device") or "cpu"),
        train_seconds=float(extra.get("fit_seconds") or 0.0),
        meta={"opened_from": saved.source, "created": info.get("created")},
    )
    run.params = run_settings(run)
    return target, run, new


def attach_test(ws: Workspace, test: pd.DataFrame, file_name: str) -> dict[str, int]:
    """Use ``test`` (ingested interactions) as ``ws``'s held-out split; every run's cached
    metrics are dropped so the pages evaluate again.

    Rows the workspace cannot evaluate are left out and counted (see
    :func:`recsys_core.cli.evaluate.align_test`).

    Args:
        ws (Workspace): The workspace.
        test (pandas.DataFrame): Interactions (``user_id, item_id, rating, timestamp``).
        file_name (str): The file's display name, for messages.

    Returns:
        dict: Rows skipped by reason (``unknown_user``, ``unknown_item``,
        ``in_training_data``).

    Raises:
        DataError: No row can be evaluated.
    """
    from ..cli.evaluate import align_test

    frame, skipped = align_test(test, ws.dataset.subset_interactions(ws.train), file_name)
    frame = frame.assign(user_idx=ws.dataset.user_idx(frame[USER_COL]),
                         item_idx=ws.dataset.item_idx(frame[ITEM_COL]))
    ws.test = frame
    ws.cache.clear()
    for run in ws.runs:
        run.cache.clear()
    return skipped


def export_run_zip(ws: Workspace, run: Run) -> bytes:
    """A session run as a zipped run directory (:func:`recsys_core.run.save_run_zip`) with
    the workspace's training and test splits, its metrics summary and training history, so
    it opens again with everything the app shows."""
    from ..run import safe_folder_name, save_run_zip

    metrics = (run.cache.get("metrics") or {}).get("summary")
    return save_run_zip(
        run.model, ws.dataset, ws.train, folder=safe_folder_name(run.run_id),
        test=ws.test if len(ws.test) else None, metrics=metrics,
        extra={"run_id": run.run_id, "fit_seconds": run.train_seconds, "device": run.device,
               "history": run.history, "params": {k: str(v) for k, v in run.params.items()}},
    )


def run_info(ws: Workspace, run: Run) -> dict[str, Any]:
    """What ``run.json`` would record for a session run (model, settings, data, versions),
    for a report of a run that was never saved."""
    from ..run import data_summary, library_versions

    config = run.model.config() if callable(getattr(run.model, "config", None)) else {}
    return {
        "model": run.model_name,
        "config": config,
        "seed": config.get("seed", getattr(run.model, "seed", None)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(run.created)),
        "data": data_summary(ws.dataset.subset_interactions(ws.train), ws.train, ws.test),
        "extra": {"run_id": run.run_id, "fit_seconds": run.train_seconds, "device": run.device},
        "versions": library_versions(),
    }
