"""Fitting models inside a job: one model (:func:`fit_model`) or a plan of them one after the
other (:func:`training_target`)."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .evaluation import evaluate_model
from .jobs import DONE, STOPPED, JobContext, JobTarget, is_number
from .runs import TrainedModel
from .workspace import Workspace, ensure_item_text


def _accepts(fn: Callable, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


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
    from ..device import describe_device, pick_device
    from ..models import create_model, model_arguments
    from ..tuning import app_tuning_grid, tune_model

    accepted = set(model_arguments(model_name))
    kwargs = dict(params)
    lo, hi = overall

    def report(event: dict[str, Any]) -> None:
        frac = event.get("fraction")
        out = {**event, "model": model_name}
        if is_number(frac):
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
        from ..explain.engine import flagship_engine, is_flagship

        if is_flagship(model):
            flagship_engine(model)
    except Exception:  # noqa: BLE001 - only a speed-up; the Explain page reports real errors
        logging.getLogger(__name__).warning("explanation warm-up failed", exc_info=True)
