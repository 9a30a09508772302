"""The trained runs of one session: what a job publishes (:class:`TrainedModel`), what the
session keeps (:class:`Run`) and which one is active (:class:`RunRegistry`)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .evaluation import HEADLINE_K, chosen_on_validation, validation_choice
from .jobs import DONE


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
