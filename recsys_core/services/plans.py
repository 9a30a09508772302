"""What a job trains: the default plan (baselines, then the flagship), a run's settings and the
ablation variants of a flagship run."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ..dataset import Dataset
from .runs import Run

#: Baselines trained next to the flagship by :func:`default_training_plan`: fast and strong.
DEFAULT_BASELINES = ("pop", "ease", "text-knn")


def model_defaults(model_name: str) -> dict[str, Any]:
    """Constructor arguments of a registered model with their default values (a trainable
    model's training options included)."""
    from ..models import get_model_class
    from ..models.params import constructor_parameters

    params = constructor_parameters(get_model_class(model_name))
    return {
        name: p.default
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


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
    from ..models import DEFAULT_MODEL, available_models

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
    from ..models.ablations import applicable_ablations

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
    from ..models import MODEL_REGISTRY

    return model_name in MODEL_REGISTRY


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays: never equal to a default
        return False
