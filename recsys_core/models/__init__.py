"""Recommender models and the name -> class registry used by the CLI, the app and saved runs.

Model modules are imported lazily: the registry maps a name to ``"module:Class"`` and
:func:`get_model_class` imports it on first use, so a model whose module (or one of its
dependencies) is missing does not stop the others from working.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from ..errors import RecScopeError
from .base import ProgressCallback, Recommender
from .params import constructor_parameters

#: Registry name -> ``"module:Class"`` (module relative to this package). First is the default.
MODEL_REGISTRY: dict[str, str] = {
    "gnn-llm": "gnn_llm:GNNLLMRecommender",
    "lightgcn": "lightgcn:LightGCNRecommender",
    "mf": "mf:MFRecommender",
    "ease": "ease:EASERecommender",
    "pop": "pop:PopularityRecommender",
    "text-knn": "text_knn:TextKNNRecommender",
    "rp3beta": "rp3beta:RP3betaRecommender",
    "itemknn": "itemknn:ItemKNNRecommender",
    "text-pop": "text_pop:TextPopRecommender",
}

#: The flagship model, trained when no other is asked for.
DEFAULT_MODEL = "gnn-llm"


class ModelNotAvailableError(RecScopeError):
    """The model name is unknown, or its module cannot be imported in this installation."""


def _split(name: str) -> tuple[str, str]:
    if name not in MODEL_REGISTRY:
        raise ModelNotAvailableError(
            f"Unknown model '{name}'. Choose one of: {', '.join(MODEL_REGISTRY)}.")
    module, cls = MODEL_REGISTRY[name].split(":")
    return f"{__name__}.{module}", cls


def available_models() -> list[str]:
    """Registered names whose module is present (checked without importing it)."""
    names = []
    for name in MODEL_REGISTRY:
        module, _ = _split(name)
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    return names


def get_model_class(name: str) -> type[Recommender]:
    """The :class:`Recommender` subclass registered as ``name`` (imported on first use).

    Raises:
        ModelNotAvailableError: Unknown name, or the module fails to import.
    """
    module_name, cls_name = _split(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"Model '{name}' is not available in this installation ({exc}). Available: "
            f"{', '.join(available_models()) or 'none'}.") from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ModelNotAvailableError(f"Module {module_name} defines no class {cls_name}.")
    return cls


def create_model(name: str, **kwargs: Any) -> Recommender:
    """Instantiate the model registered as ``name`` with constructor arguments ``kwargs``.

    Raises:
        ModelNotAvailableError: Unknown name, missing module, or an argument the model's
            constructor does not take.
    """
    cls = get_model_class(name)
    accepted = model_arguments(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown and not _takes_var_kwargs(cls):
        raise ModelNotAvailableError(
            f"Model '{name}' has no argument(s) {', '.join(unknown)}; it takes: "
            f"{', '.join(accepted) or 'no arguments'}.")
    return cls(**kwargs)


def model_arguments(name: str) -> list[str]:
    """Names of the constructor arguments of the model registered as ``name`` (a trainable
    model's training options included, see
    :func:`~recsys_core.models.params.constructor_parameters`)."""
    params = constructor_parameters(get_model_class(name))
    return [p for p, v in params.items() if v.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _takes_var_kwargs(cls: type) -> bool:
    params = constructor_parameters(cls).values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


__all__ = [
    "DEFAULT_MODEL",
    "MODEL_REGISTRY",
    "ModelNotAvailableError",
    "ProgressCallback",
    "Recommender",
    "available_models",
    "create_model",
    "get_model_class",
    "model_arguments",
]
