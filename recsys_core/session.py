"""Per-session state for the app, free of Streamlit: background training jobs and run registry.

The Streamlit pages keep one :class:`Workspace` per browser session (in ``st.session_state``).
It holds the dataset, its split and graph, the trained runs and at most one running
:class:`TrainingJob`. A job trains in a daemon thread, reports progress through a thread-safe
queue, publishes each finished model through another, and stops cooperatively through an event,
so reruns and page switches (which re-execute the page scripts) neither block on nor interrupt
it. Nothing here is global: two sessions never share a mutable object (the text encoder they
may share is only read).

Tests and other front-ends build a :class:`Workspace` directly, e.g. with
:func:`prepare_workspace` on a tiny dataset and a pre-trained model added with
:meth:`RunRegistry.add`, and hand it to the app, which then skips loading the demo data and the
automatic training.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .dataset import DEFAULT_TEXT_TEMPLATE, ITEM_COL, ITEM_IDX, USER_COL, USER_IDX, Dataset
from .errors import RecScopeError

PENDING, RUNNING, DONE, STOPPED, FAILED = "pending", "running", "done", "stopped", "failed"

#: Baselines trained next to the flagship by :func:`default_training_plan`: fast and strong.
DEFAULT_BASELINES = ("pop", "ease", "text-knn")
#: Cut-offs of the Recall/NDCG@K curves.
DEFAULT_KS = (1, 5, 10, 20, 50)
#: Cut-off of the headline metrics.
HEADLINE_K = 20


class StopRequested(Exception):
    """Raised inside a job by :meth:`JobContext.check_stop` to abandon work that cannot stop
    gracefully."""


class JobContext:
    """What a job target receives: progress reporting, the stop flag and result publishing."""

    def __init__(self, job: TrainingJob) -> None:
        self._job = job

    def progress(self, event: dict[str, Any]) -> None:
        """Report a progress event (see :data:`recsys_core.models.base.ProgressCallback`)."""
        self._job._emit(event)

    def should_stop(self) -> bool:
        """``True`` once :meth:`TrainingJob.stop` was called."""
        return self._job.stop_requested

    def check_stop(self) -> None:
        """Raise :class:`StopRequested` when a stop was requested."""
        if self.should_stop():
            raise StopRequested()

    def publish(self, result: Any) -> None:
        """Hand a finished result (e.g. a :class:`TrainedModel`) to the session right away."""
        self._job._results.put(result)


JobTarget = Callable[[JobContext], Any]


class TrainingJob:
    """Run ``target(context)`` in a background thread.

    The target reports progress with ``context.progress(dict)``, polls
    ``context.should_stop()`` and hands over finished models with ``context.publish(obj)``
    (its return value, when not ``None``, is published too). A
    :class:`~recsys_core.errors.RecScopeError` becomes :attr:`error` (its message); any other
    exception an error message plus :attr:`error_details` (the traceback, for logs, never for
    the page).

    Args:
        target (callable): The work, ``target(context) -> result or None``.
        label (str): Display name, e.g. ``"gnn-llm (epochs=30)"``.
        meta (dict, optional): Anything the caller wants to keep with the job.
            (default: :obj:`None`)
        start (bool): Start the thread immediately. (default: :obj:`False`)
    """

    def __init__(
        self, target: JobTarget, label: str, meta: dict[str, Any] | None = None, start: bool = False
    ) -> None:
        self.job_id = uuid.uuid4().hex[:8]  # no counter shared between sessions
        self.target = target
        self.label = label
        self.meta = dict(meta or {})
        self.history: list[dict[str, Any]] = []
        self.error: str | None = None
        self.error_details: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._status = PENDING
        self._thread = threading.Thread(
            target=self._main, name=f"recscope-job-{self.job_id}", daemon=True
        )
        if start:
            self.start()

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start the thread (once)."""
        if self._status != PENDING:
            return
        self._status = RUNNING
        self.started_at = time.time()
        self._thread.start()

    def stop(self) -> None:
        """Ask the target to stop at its next check; returns at once."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; ``True`` when it has finished."""
        self._done.wait(timeout)
        self.poll()
        return self._done.is_set()

    # ------------------------------------------------------------------ state
    @property
    def status(self) -> str:
        """``pending``, ``running``, ``done``, ``stopped`` or ``failed``."""
        return self._status

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def poll(self) -> list[dict[str, Any]]:
        """Move queued progress events into :attr:`history`; returns the new ones."""
        new = []
        while True:
            try:
                new.append(self._events.get_nowait())
            except queue.Empty:
                break
        self.history.extend(new)
        return new

    def take_results(self) -> list[Any]:
        """Results published since the last call (each is returned once)."""
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    @property
    def latest(self) -> dict[str, Any]:
        """The most recent progress event (after :meth:`poll`)."""
        return self.history[-1] if self.history else {}

    @property
    def fraction(self) -> float:
        """Overall progress in ``[0, 1]`` (1 once finished)."""
        if self.finished:
            return 1.0
        for event in reversed(self.history):
            if event.get("overall") is not None:
                return float(min(max(event["overall"], 0.0), 1.0))
            if event.get("fraction") is not None:
                return float(min(max(event["fraction"], 0.0), 1.0))
        return 0.0

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    def describe(self) -> str:
        """One line for a status widget, e.g. ``"gnn-llm · train · epoch 3/20 · loss 0.41 · 12 s"``."""
        event = self.latest
        parts = [str(event[k]) for k in ("model", "stage") if event.get(k)]
        if event.get("epoch") is not None:
            total = event.get("epochs")
            parts.append(f"epoch {event['epoch']}" + (f"/{total}" if total else ""))
        if _is_number(event.get("loss")):
            parts.append(f"loss {float(event['loss']):.4f}")
        for key, value in event.items():
            if key.startswith("valid_") and _is_number(value):
                parts.append(f"{key.removeprefix('valid_')} {float(value):.4f}")
        parts.append(f"{self.elapsed:.0f} s")
        return " · ".join(parts)

    # ------------------------------------------------------------------ thread
    def _emit(self, event: dict[str, Any]) -> None:
        event = dict(event)
        event.setdefault("time", time.time())
        self._events.put(event)

    def _main(self) -> None:
        status = DONE
        try:
            result = self.target(JobContext(self))
            if result is not None:
                self._results.put(result)
            if self._stop.is_set():
                status = STOPPED
        except StopRequested:
            status = STOPPED
        except RecScopeError as exc:
            self.error, status = str(exc), FAILED
        except Exception as exc:  # noqa: BLE001 - reported to the page as a message
            self.error = f"Training failed: {type(exc).__name__}: {exc}"
            self.error_details = traceback.format_exc()
            status = FAILED
        self.finished_at = time.time()
        self._status = status
        self._done.set()


def _is_number(value: Any) -> bool:
    try:
        return value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------- runs
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


def chosen_on_validation(model: Any) -> str:
    """What a model chose on its validation split, in words (the flagship's graph filter and
    item-item path, a tuned peer's grid choice); empty when nothing was chosen."""
    from .models.graph_filter import describe_selection

    record = getattr(model, "tuning", None)
    if record is not None:
        return record.describe()
    result = getattr(model, "train_result", None)
    return describe_selection(getattr(result, "selected", None) or {})


def validation_choice(model: Any) -> dict[str, Any]:
    """``chosen on validation``, ``how`` and ``valid ndcg@20`` of one fitted model (see
    :meth:`RunRegistry.validation_choices`)."""
    valid_ndcg = f"valid ndcg@{HEADLINE_K}"
    record = getattr(model, "tuning", None)
    if record is not None:  # a peer tuned by recsys_core.tuning
        settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in record.chosen.items())
        return {"chosen on validation": settings or "defaults (nothing to tune)",
                "how": (f"grid of {len(record.points)} on the validation split "
                        f"({record.valid_fraction:.0%} of each user's training interactions, "
                        f"seed {record.seed}), best {record.metric}, then refit on all"),
                valid_ndcg: record.best.ndcg if record.best is not None else None}
    result = getattr(model, "train_result", None)
    if result is not None:  # trained with early stopping on a carved validation split
        parts = [f"{result.best_epoch} epochs (early stopping)"]
        chosen = chosen_on_validation(model)
        if chosen:
            parts.append(chosen)
        ndcg = result.best_valid_ndcg
        return {"chosen on validation": "; ".join(parts),
                "how": "early stopping on the validation split carved from the training "
                       "interactions" + (", then refit on all" if result.refit_epochs else ""),
                valid_ndcg: float(ndcg) if _is_number(ndcg) else None}
    weight = (getattr(model, "validation", None) or {}).get("popularity_weight")
    if weight is not None:  # text-pop's pseudo-cold choice
        recall = model.validation["recall_by_weight"][str(weight)]
        return {"chosen on validation": f"popularity weight {weight:g}",
                "how": (f"pseudo-cold validation: {model.validation['held_out_items']} items "
                        f"held out, Recall@{model.valid_k} {recall:.4f}"),
                valid_ndcg: None}
    return {"chosen on validation": "constructor settings (nothing chosen on validation)",
            "how": "", valid_ndcg: None}


# ---------------------------------------------------------------------------------- workspace
@dataclass
class Workspace:
    """Everything one browser session works on.

    Args:
        dataset (Dataset): The loaded data.
        train (pandas.DataFrame): Interactions models are fitted on (models that stop early
            carve their own validation split out of it).
        test (pandas.DataFrame): Held-out interactions for the offline metrics.
        source (str): Where the data came from (shown in the sidebar).
        item_text (numpy.ndarray, optional): ``[num_items, d]`` item text embeddings, filled by
            the first job that needs them.
    """

    dataset: Dataset
    train: pd.DataFrame
    test: pd.DataFrame
    source: str = "demo data"
    item_text: np.ndarray | None = None
    runs: RunRegistry = field(default_factory=RunRegistry)
    job: TrainingJob | None = None
    finished_jobs: list[TrainingJob] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def training(self) -> bool:
        return self.job is not None and not self.job.finished

    def start_job(self, job: TrainingJob) -> TrainingJob:
        """Attach and start a job; refuses while another one runs (one trainer per session
        keeps a shared CPU responsive)."""
        if self.training:
            raise RecScopeError(
                f"'{self.job.label}' is still training. Wait for it to finish or press Stop."
            )
        if self.job is not None:
            self.collect()
        self.job = job
        job.start()
        return job

    def collect(self) -> list[Run]:
        """Register models the job published since the last call; retire a finished job.

        Call on every rerun. A failed job stays in :attr:`finished_jobs` with its message.
        """
        job = self.job
        if job is None:
            return []
        job.poll()
        new_runs = [
            self.runs.add_trained(r) for r in job.take_results() if isinstance(r, TrainedModel)
        ]
        if job.finished:
            new_runs += [
                self.runs.add_trained(r) for r in job.take_results() if isinstance(r, TrainedModel)
            ]
            self.job = None
            self.finished_jobs.append(job)
        return new_runs

    @property
    def last_error(self) -> str | None:
        """Message of the most recent job if it failed."""
        if self.finished_jobs and self.finished_jobs[-1].status == FAILED:
            return self.finished_jobs[-1].error
        return None

    def graph(self):
        """Heterogeneous graph of all interactions (built once, for the Graph page)."""
        if "graph" not in self.cache:
            from .graph import build_hetero_graph

            self.cache["graph"] = build_hetero_graph(self.dataset)
        return self.cache["graph"]

    # --------------------------------------------------------------- lookups the pages share
    def item_counts(self) -> np.ndarray:
        """Training interactions per item (index order)."""
        if "item_counts" not in self.cache:
            self.cache["item_counts"] = np.bincount(
                self.train[ITEM_IDX].to_numpy(), minlength=self.dataset.num_items
            )
        return self.cache["item_counts"]

    def head_items(self, head_share: float = 0.8) -> set[str]:
        """Most popular training items that together hold ``head_share`` of the interactions."""
        key = ("head_items", head_share)
        if key not in self.cache:
            from .metrics import head_items

            self.cache[key] = set(map(str, head_items(self.train, head_share)))
        return self.cache[key]

    def user_history(self, user_id: str) -> pd.DataFrame:
        """The user's training interactions joined with item metadata, newest first."""
        ds = self.dataset
        rows = self.train[self.train[USER_COL] == str(user_id)]
        cols = ["title", *ds.attribute_columns]
        meta = ds.items.iloc[rows[ITEM_IDX].to_numpy()][cols].reset_index(drop=True)
        out = pd.concat(
            [rows[[ITEM_COL, "rating", "timestamp"]].reset_index(drop=True), meta], axis=1
        )
        return out.sort_values("timestamp", ascending=False, na_position="last", kind="stable")

    def test_items(self, user_id: str) -> set[str]:
        return set(self.test.loc[self.test[USER_COL] == str(user_id), ITEM_COL])


def split_for_evaluation(
    dataset: Dataset,
    test_fraction: float = 0.1,
    cold_item_fraction: float = 0.05,
    seed: int = 42,
    cold_seed: int = 7,
    min_interactions: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test split for the app's offline metrics: ``(train, test)``.

    First ``cold_item_fraction`` of the interacted items (random, ``cold_seed``) are held out
    entirely: all their interactions go to the test split, so the cold-item slice measures
    recommending items known only by their text and attributes. Of the rest, users with at
    least ``min_interactions`` interactions give ``round(test_fraction * n)`` (at least one) to
    the test split (per-user random, ``seed``); lighter users keep everything for training.

    Args:
        dataset (Dataset): The data.
        test_fraction (float): Per-user test share. (default: :obj:`0.1`)
        cold_item_fraction (float): Share of interacted items held out completely; 0 disables.
            (default: :obj:`0.05`)
        seed (int): Seed of the per-user split. (default: :obj:`42`)
        cold_seed (int): Seed of the cold-item choice. (default: :obj:`7`)
        min_interactions (int): Lighter users are never held out from. (default: :obj:`5`)
    """
    from .training import split_validation

    inter = dataset.interactions
    interacted = np.unique(inter[ITEM_IDX].to_numpy())
    n_cold = int(round(cold_item_fraction * len(interacted)))
    # Keep at least a few warm items: a catalogue this small cannot spare cold ones.
    if n_cold and len(interacted) - n_cold >= 10:
        cold = np.random.default_rng(cold_seed).permutation(interacted)[:n_cold]
        is_cold = np.isin(inter[ITEM_IDX].to_numpy(), cold)
    else:
        is_cold = np.zeros(len(inter), dtype=bool)
    train, test = split_validation(inter[~is_cold], test_fraction, seed, min_interactions)
    test = pd.concat([test, inter[is_cold]]).sort_index()
    return train, test


def prepare_workspace(dataset: Dataset, source: str = "uploaded data", seed: int = 42) -> Workspace:
    """A fresh :class:`Workspace` with a train/test split of ``dataset``."""
    train, test = split_for_evaluation(dataset, seed=seed)
    return Workspace(
        dataset=dataset,
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        source=source,
    )


# ---------------------------------------------------------------------------------- training
def model_defaults(model_name: str) -> dict[str, Any]:
    """Constructor arguments of a registered model with their default values."""
    from .models import get_model_class

    params = inspect.signature(get_model_class(model_name).__init__).parameters
    return {
        name: p.default
        for name, p in params.items()
        if name != "self"
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def _accepts(fn: Callable, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def ensure_item_text(
    ws: Workspace, encoder_factory: Callable[[], Any] | None, ctx: JobContext | None = None
) -> np.ndarray:
    """Encode the item texts once per workspace (reusing the encoder's on-disk cache)."""
    if ws.item_text is None:
        from .text import encode_items

        encoder = encoder_factory() if encoder_factory is not None else None

        def report(event: dict[str, Any]) -> None:
            if ctx is not None:
                ctx.check_stop()
                ctx.progress({**event, "stage": "encode item texts"})

        # Runs in a job thread: the process's thread count (set once at start-up) stays as is.
        emb = encode_items(ws.dataset, template=DEFAULT_TEXT_TEMPLATE, encoder=encoder,
                           on_progress=report)
        ws.item_text = np.asarray(emb, dtype=np.float32)
        ws.cache["item_text_encoded"] = True  # from the shared encoder (not user-supplied)
    return ws.item_text


def fit_model(
    ws: Workspace,
    model_name: str,
    params: dict[str, Any],
    ctx: JobContext,
    encoder_factory: Callable[[], Any] | None = None,
    evaluate: bool = True,
    activate: bool = True,
    overall: tuple[float, float] = (0.0, 1.0),
    tune: bool | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainedModel:
    """Create, fit (and evaluate) one model inside a job.

    Text-based models get the workspace's item text embeddings (computed on first use) when
    their constructor takes ``item_text_embeddings``, else the shared ``encoder``. A peer
    with an app grid (:func:`recsys_core.tuning.app_tuning_grid`, e.g. EASE's lambda) that
    is given no settings chooses them on validation with
    :func:`recsys_core.tuning.tune_model` when the data is small enough to do it quickly;
    the run then records the chosen settings and the grid.

    Args:
        ws (Workspace): Data and split.
        model_name (str): Registry name.
        params (dict): Constructor arguments.
        ctx (JobContext): Progress / stop / publish.
        encoder_factory (callable, optional): Returns the shared text encoder.
        evaluate (bool): Compute :func:`evaluate_model` on the test split. (default: :obj:`True`)
        activate (bool): Make the run active when registered. (default: :obj:`True`)
        overall (tuple of float): Share ``(start, end)`` of the whole job this fit covers, for
            the job's overall progress bar. (default: :obj:`(0.0, 1.0)`)
        tune (bool, optional): Choose the settings on validation (``None``: when ``params``
            is empty and the data is small enough). (default: :obj:`None`)
        meta (dict, optional): ``label`` (the run id to register it under) and anything to
            keep with the run (see :class:`TrainedModel`). (default: :obj:`None`)
    """
    from .device import describe_device, pick_device
    from .models import create_model, model_arguments
    from .tuning import app_tuning_grid, tune_model

    accepted = set(model_arguments(model_name))
    kwargs = dict(params)
    lo, hi = overall

    def report(event: dict[str, Any]) -> None:
        frac = event.get("fraction")
        out = {**event, "model": model_name}
        if _is_number(frac):
            out["overall"] = lo + (hi - lo) * float(frac)
        ctx.progress(out)

    if "item_text_embeddings" in accepted and kwargs.get("item_text_embeddings") is None:
        kwargs["item_text_embeddings"] = ensure_item_text(ws, encoder_factory, ctx)
    elif "encoder" in accepted and encoder_factory is not None and "encoder" not in kwargs:
        kwargs["encoder"] = encoder_factory()
    ctx.check_stop()
    model = create_model(model_name, **kwargs)
    device = describe_device(
        pick_device(params.get("device") if isinstance(params.get("device"), str) else None)
    )
    report({"stage": "train", "fraction": 0.0})
    started = time.perf_counter()
    history: list[dict[str, Any]] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("epoch") is not None:
            history.append(dict(event))
        report(event)

    fit_kwargs: dict[str, Any] = {"on_progress": on_progress}
    if _accepts(model.fit, "should_stop"):
        fit_kwargs["should_stop"] = ctx.should_stop
    else:
        # Models without a stop hook are stopped between progress reports.
        def on_progress_checked(event: dict[str, Any]) -> None:
            on_progress(event)
            ctx.check_stop()

        fit_kwargs["on_progress"] = on_progress_checked
    grid = (app_tuning_grid(model_name, ws.dataset, ws.train, force=bool(tune))
            if tune or (tune is None and not params) else None)
    record = None
    if grid:
        model, record = tune_model(model_name, ws.dataset, ws.train, grid, base_params=kwargs,
                                   on_progress=fit_kwargs["on_progress"],
                                   should_stop=ctx.should_stop)
    else:
        model.fit(ws.dataset, ws.train, **fit_kwargs)
    seconds = time.perf_counter() - started
    train_result = getattr(model, "train_result", None)
    if train_result is not None and getattr(train_result, "device", None):
        import torch

        device = describe_device(torch.device(str(train_result.device)))
    status = STOPPED if ctx.should_stop() else DONE
    metrics = None
    if evaluate and len(ws.test):
        report({"stage": "evaluate", "fraction": 1.0})
        metrics = evaluate_model(model, ws)
    shown = {k: v for k, v in params.items() if k not in ("item_text_embeddings", "encoder")}
    if record is not None:
        shown.update(record.chosen)
    return TrainedModel(
        model_name=model_name,
        model=model,
        params=shown,
        history=history,
        seconds=seconds,
        device=device,
        status=status,
        metrics=metrics,
        activate=activate,
        tuning=None if record is None else record.to_dict(),
        label=(meta or {}).get("label"),
        meta={k: v for k, v in (meta or {}).items() if k != "label"},
    )


def training_target(
    ws: Workspace,
    plan: Sequence[tuple[str, dict[str, Any], bool]],
    encoder_factory: Callable[[], Any] | None = None,
    weights: Sequence[float] | None = None,
) -> JobTarget:
    """A job target that fits the models of ``plan`` one after the other.

    Args:
        ws (Workspace): Data and split.
        plan (sequence): ``(model_name, params, activate)`` per model, in training order,
            optionally with a fourth item, a dict of ``label`` (the run id) and what to keep
            with the run (see :func:`ablation_plan`). Each model is published as soon as it
            is fitted and evaluated.
        encoder_factory (callable, optional): Returns the shared text encoder.
        weights (sequence of float, optional): Relative cost of each step for the overall
            progress bar. (default: equal)
    """
    weights = list(weights or [1.0] * len(plan))
    bounds = np.concatenate([[0.0], np.cumsum(weights) / max(sum(weights), 1e-9)])

    def target(ctx: JobContext) -> None:
        for i, (name, params, activate, *meta) in enumerate(plan):
            ctx.check_stop()
            trained = fit_model(
                ws,
                name,
                params,
                ctx,
                encoder_factory,
                activate=activate,
                overall=(float(bounds[i]), float(bounds[i + 1])),
                meta=meta[0] if meta else None,
            )
            ctx.publish(trained)
            warm_up_explanations(trained.model)

    return target


def warm_up_explanations(model: Any) -> None:
    """Build the flagship's explanation engine (one full forward pass, cached per model) in the
    background, so the Explain page opens without that wait. Other models need nothing."""
    try:
        from .explain.engine import flagship_engine, is_flagship

        if is_flagship(model):
            flagship_engine(model)
    except Exception:  # noqa: BLE001 - only a speed-up; the Explain page reports real errors
        logging.getLogger(__name__).warning("explanation warm-up failed", exc_info=True)


def default_training_plan(
    flagship: str | None = None,
    flagship_params: dict[str, Any] | None = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
) -> tuple[list, list[float]]:
    """Fast baselines first (results within seconds), then the flagship, which becomes active.

    Returns:
        ``(plan, weights)`` for :func:`training_target`; models not available in this
        installation are left out.
    """
    from .models import DEFAULT_MODEL, available_models

    flagship = flagship or DEFAULT_MODEL
    have = set(available_models())
    # EASE is strong and fast: it is the active model until the flagship is ready.
    plan = [(name, {}, name == "ease") for name in baselines if name in have and name != flagship]
    weights = [0.5 if name == "text-knn" else 0.1 for name, _, _ in plan]
    if flagship in have:
        plan.append((flagship, dict(flagship_params or {}), True))
        weights.append(6.0)
    if plan and not plan[-1][2]:  # no flagship: activate the last baseline
        name, params, _ = plan[-1]
        plan[-1] = (name, params, True)
    return plan, weights


def run_settings(run: Run) -> dict[str, Any]:
    """The constructor arguments that remake ``run``'s model: the settings it was trained with
    (:attr:`Run.params`) over every value of its configuration that differs from the model's
    defaults (data handed over by the app, such as text embeddings, left out)."""
    defaults = model_defaults(run.model_name) if _registered(run.model_name) else {}
    config = run.model.config() if callable(getattr(run.model, "config", None)) else {}
    settings = {k: v for k, v in config.items()
                if k in defaults and k not in APP_SUPPLIED and not _same(v, defaults[k])}
    settings.update({k: v for k, v in run.params.items() if k not in APP_SUPPLIED})
    return settings


#: Constructor arguments the app supplies itself (data, files, terminal output).
APP_SUPPLIED = frozenset({"item_text_embeddings", "encoder", "checkpoint_dir", "resume",
                          "show_progress"})


def ablation_plan(run: Run, dataset: Dataset) -> tuple[list, list[float]]:
    """Retrain a flagship run with each of its parts switched off in turn.

    One step per variant of :func:`recsys_core.models.ablations.applicable_ablations` that
    changes something: the run's settings (:func:`run_settings`) with the variant's arguments
    on top, on the same data and split (the workspace's). Variants are registered as
    ``"<model> (<what is off>)"``, e.g. ``"gnn-llm (no text)"``, never made active, with
    ``meta`` ``{"ablation_of": run id, "ablation": key}``.

    Args:
        run (Run): A flagship run.
        dataset (Dataset): Its data (which variants apply: attribute nodes, user-user edges,
            user attributes).

    Returns:
        ``(plan, weights)`` for :func:`training_target` (empty when nothing applies).
    """
    from .models.ablations import applicable_ablations

    base = run_settings(run)
    defaults = model_defaults(run.model_name)
    plan = []
    for ablation in applicable_ablations(dataset):
        if all(_same(base.get(k, defaults.get(k)), v) for k, v in ablation.params.items()):
            continue  # "full", or a part the run already has off
        what = ablation.label.split(" (")[0]
        plan.append((run.model_name, {**base, **ablation.params}, False,
                     {"label": f"{run.model_name} ({what})", "ablation_of": run.run_id,
                      "ablation": ablation.key}))
    return plan, [1.0] * len(plan)


def _registered(model_name: str) -> bool:
    from .models import MODEL_REGISTRY

    return model_name in MODEL_REGISTRY


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays: never equal to a default
        return False


# ---------------------------------------------------------------------------------- evaluation
def evaluate_model(
    model: Any, ws: Workspace, ks: Sequence[int] = DEFAULT_KS, head_share: float = 0.8
) -> dict[str, Any]:
    """Offline metrics of a fitted model on the workspace's test split.

    Returns:
        dict with ``summary`` (:func:`recsys_core.metrics.evaluate_recommendations` at
        :data:`HEADLINE_K`), ``at_k`` (long DataFrame ``k, metric, value``), ``per_user``
        (:func:`recsys_core.metrics.per_user_metrics` at :data:`HEADLINE_K`), ``warm_items``,
        ``cold_items`` and ``long_tail`` (slice metrics where only warm / cold / long-tail items
        are ranked and only their test interactions count; warm items are those with
        training interactions, so ``warm_items`` and ``cold_items`` are the headline pair) and
        ``seconds``.
    """
    from .metrics import RANKING_METRICS, evaluate_recommendations, per_user_metrics, slice_metrics

    started = time.perf_counter()
    ds = ws.dataset
    test = ws.test
    users = pd.unique(test[USER_COL])
    k_max = max(max(ks), HEADLINE_K)
    recs = model.recommend(users=users, k=k_max)
    top = recs[recs["rank"] <= HEADLINE_K]
    summary = evaluate_recommendations(
        test, top, train=ws.train, k=HEADLINE_K, num_items=ds.num_items, head_share=head_share
    )
    rows = []
    for k in ks:
        per_k = per_user_metrics(test, recs, k=k)
        for name, column in RANKING_METRICS.items():
            rows.append({"k": int(k), "metric": name, "value": float(per_k[column].mean())})
    per_user = per_user_metrics(test, recs, k=HEADLINE_K)
    train_items = set(ws.train[ITEM_COL])
    warm = [i for i in ds.item_ids if i in train_items]
    cold = [i for i in ds.item_ids if i not in train_items]
    tail = [i for i in ds.item_ids if i in train_items and i not in ws.head_items(head_share)]
    slices = {}
    for name, candidates in (("warm_items", warm), ("cold_items", cold), ("long_tail", tail)):
        if candidates:
            slice_recs = model.recommend(users=users, k=HEADLINE_K, candidates=candidates)
            slices[name] = slice_metrics(test, slice_recs, k=HEADLINE_K, items=candidates)
        else:
            slices[name] = {"n_users": 0, "n_items": 0, **dict.fromkeys(RANKING_METRICS)}
    return {
        "summary": summary,
        "at_k": pd.DataFrame(rows),
        "per_user": per_user,
        "warm_items": slices["warm_items"],
        "cold_items": slices["cold_items"],
        "long_tail": slices["long_tail"],
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------------- cold start
def cold_start_text(
    ws: Workspace,
    title: str,
    description: str = "",
    attributes: dict[str, list[str]] | None = None,
) -> str:
    """The text of a new item, built by the same code and template as the catalogue texts
    the workspace's item embeddings were encoded from (:func:`ensure_item_text`), so the new
    item and the catalogue are compared like for like.

    Args:
        ws (Workspace): The workspace.
        title (str): The new item's title.
        description (str): Its description. (default: :obj:`""`)
        attributes (dict, optional): Attribute column -> values. (default: :obj:`None`)
    """
    return ws.dataset.new_item_text(title, description, attributes,
                                    template=DEFAULT_TEXT_TEMPLATE)


def cold_start_reach(
    model: Any,
    ws: Workspace,
    text_embedding: np.ndarray,
    attributes: dict[str, list[str]] | None = None,
    k_items: int = 10,
    top_users: int = 20,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which users a new item (known by its text and attributes) would reach.

    A model that can score items outside its catalogue (the flagship's
    ``score_new_items``) scores the new item itself, exactly as it scores a catalogue item
    without interactions. Any other model is asked through a content bridge: the new item's
    score for a user is the similarity-weighted mean of the model's scores of the ``k_items``
    catalogue items whose texts are closest. Scores are standardised per user against the
    user's scores of the whole catalogue, so a user ranks high when the new item would rank
    high in *their* list, not because their scores are large overall.

    Args:
        model (Recommender): A fitted model.
        ws (Workspace): The workspace (needs :attr:`Workspace.item_text`).
        text_embedding (numpy.ndarray): ``[d]`` embedding of the new item's text.
        attributes (dict, optional): Attribute column -> values of the new item.
        k_items (int): Similar catalogue items listed (and used by the bridge). (default:
            :obj:`10`)
        top_users (int): Users returned. (default: :obj:`20`)

    Returns:
        ``(users, neighbours)``: users with ``user_id``, ``score``, ``interactions`` and
        ``method`` (``"model"`` or ``"text bridge"``); the similar catalogue items with
        ``item_id``, ``title`` and ``similarity``.
    """
    if ws.item_text is None:
        raise RecScopeError(
            "Item text embeddings are not ready yet; wait for the text "
            "encoding step of training to finish."
        )
    ds = ws.dataset
    emb = np.asarray(ws.item_text, dtype=np.float32)
    query = np.asarray(text_embedding, dtype=np.float32).reshape(-1)
    sims = emb @ query / (np.linalg.norm(emb, axis=1) * np.linalg.norm(query) + 1e-12)
    k_items = min(k_items, ds.num_items)
    nearest = np.argsort(-sims, kind="stable")[:k_items]
    weights = np.clip(sims[nearest], 0.0, None)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(k_items, 1.0 / k_items)
    native = callable(getattr(model, "score_new_items", None))
    if native:  # one forward pass for every user
        new = np.asarray(model.score_new_items(query[None, :], [dict(attributes or {})]),
                         dtype=np.float64)[:, 0]
    scores = np.zeros(ds.num_users, dtype=np.float64)
    for start in range(0, ds.num_users, 2048):
        block = np.arange(start, min(start + 2048, ds.num_users))
        full = np.asarray(model.score(block, None), dtype=np.float64)
        mean = full.mean(axis=1, keepdims=True)
        std = full.std(axis=1, keepdims=True) + 1e-9
        if native:
            scores[block] = ((new[block, None] - mean) / std)[:, 0]
        else:
            scores[block] = ((full[:, nearest] - mean) / std) @ weights
    counts = np.bincount(ws.train[USER_IDX].to_numpy(), minlength=ds.num_users)
    order = np.argsort(-scores, kind="stable")[:top_users]
    users = pd.DataFrame(
        {
            "user_id": ds.user_ids[order],
            "score": scores[order],
            "interactions": counts[order],
            "method": "model" if native else "text bridge",
        }
    )
    neighbours = pd.DataFrame(
        {
            "item_id": ds.item_ids[nearest],
            "title": ds.items["title"].to_numpy()[nearest],
            "similarity": sims[nearest],
        }
    )
    return users, neighbours
