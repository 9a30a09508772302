"""Background jobs: a target runs in a daemon thread, reports progress through a thread-safe
queue, publishes each finished result through another and stops cooperatively through an event,
so reruns and page switches (which re-execute the page scripts) neither block on nor interrupt
it."""

from __future__ import annotations

import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import RecScopeError

PENDING, RUNNING, DONE, STOPPED, FAILED = "pending", "running", "done", "stopped", "failed"


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
        if event.get("batches"):  # inside a long epoch (recsys_core.training)
            parts.append(f"batch {event.get('batch', 0)}/{event['batches']}")
            if is_number(event.get("epoch_seconds_left")):
                parts.append(f"{float(event['epoch_seconds_left']):.0f} s left in the epoch")
        if event.get("training_mode"):
            parts.append(str(event["training_mode"]).replace("minibatch", "mini-batch"))
        if is_number(event.get("loss")):
            parts.append(f"loss {float(event['loss']):.4f}")
        for key, value in event.items():
            if key.startswith("valid_") and is_number(value):
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


def is_number(value: Any) -> bool:
    try:
        return value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False
