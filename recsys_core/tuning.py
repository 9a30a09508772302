"""Choosing a peer's hyper-parameters on validation, the way the flagship chooses its own.

:func:`tune_model` carves the same validation split as the flagship
(:func:`~recsys_core.training.split_validation` with ``valid_fraction=0.1`` and ``seed=0``,
the :class:`~recsys_core.training.TrainConfig` defaults), fits every point of a grid on the
rest, scores each by NDCG@K (and Recall@K) on the validation split with the project's metrics,
picks the best and refits that setting on all the fit interactions. Iterative models stop
early on the same validation split, and the refit trains on everything for the number of
epochs that validation chose, as the flagship's own refit does.

Pure: the inputs are not modified and the same inputs give the same result.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from .dataset import ITEM_COL, USER_COL, Dataset
from .models import create_model
from .models.base import ProgressCallback, Recommender

#: Validation split of the flagship (:class:`~recsys_core.models.gnn_llm.GNNLLMRecommender`'s
#: ``valid_fraction`` and ``seed`` defaults).
VALID_FRACTION = 0.1
VALID_SEED = 0
#: Cut-off of the validation metrics.
VALID_K = 20

#: The flagship's training objective, given to the iterative peers so that architecture is
#: compared with architecture (``GNNLLMRecommender``'s defaults).
FLAGSHIP_TRAINING = {"loss": "softmax", "num_negatives": 2048, "batch_size": 8192, "lr": 1e-2,
                     "epochs": 300}
#: Early-stopping patience of the iterative peers: more than the flagship's 5, so early
#: stopping never cuts a peer shorter than the flagship.
PEER_PATIENCE = 10

#: Grids searched by default, per registry name (every combination is tried).
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "ease": {"reg_lambda": [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0]},
    "rp3beta": {"alpha": [0.5, 0.75, 1.0], "beta": [0.0, 0.25, 0.5],
                "neighbours": [50, 100, 200, 400]},
    "itemknn": {"neighbours": [50, 100, 200, 400], "shrink": [0.0, 10.0, 50.0, 100.0]},
    "mf": {"embedding_dim": [64, 128], "weight_decay": [0.0, 1e-5]},
    "lightgcn": {"embedding_dim": [64, 128], "weight_decay": [0.0, 1e-5]},
    "pop": {},
}

#: Fixed settings every grid point of a model gets (the grid's values override them).
DEFAULT_BASE_PARAMS: dict[str, dict[str, Any]] = {
    "mf": {**FLAGSHIP_TRAINING, "patience": PEER_PATIENCE},
    "lightgcn": {**FLAGSHIP_TRAINING, "patience": PEER_PATIENCE},
}


#: Grids the app searches when it trains a peer with no settings given (fast peers only).
APP_GRIDS: dict[str, dict[str, list[Any]]] = {"ease": DEFAULT_GRIDS["ease"]}
#: The app tunes only on data this small: EASE inverts an items x items matrix per grid point
#: (about a second at 3,000 items on 2 CPU cores).
APP_TUNING_MAX_ITEMS = 3000
APP_TUNING_MAX_INTERACTIONS = 1_000_000


def app_tuning_grid(model_name: str, dataset: Dataset, fit_interactions: pd.DataFrame,
                    force: bool = False) -> dict[str, list[Any]] | None:
    """The grid the app searches for ``model_name`` on this data, or ``None``.

    ``None`` when the model has no app grid (:data:`APP_GRIDS`) or, unless ``force``, when the
    data is too large to search it quickly (more than :data:`APP_TUNING_MAX_ITEMS` items with
    interactions or :data:`APP_TUNING_MAX_INTERACTIONS` interactions).
    """
    grid = APP_GRIDS.get(model_name)
    if grid is None:
        return None
    items = fit_interactions[ITEM_COL].nunique()
    if not force and (items > APP_TUNING_MAX_ITEMS
                      or len(fit_interactions) > APP_TUNING_MAX_INTERACTIONS):
        return None
    return dict(grid)


@dataclass
class GridPoint:
    """One tried setting and what validation said of it.

    Attributes:
        params (dict): The grid values of this point.
        ndcg (float): Validation NDCG@K.
        recall (float): Validation Recall@K.
        fit_seconds (float): Fit time on the training part.
        best_epoch (int, optional): Epochs chosen by early stopping (iterative models).
        stop_reason (str, optional): How training ended (iterative models): ``"patience"``,
            ``"epochs"``, ``"time_limit"`` or ``"stopped"``.
    """

    params: dict[str, Any]
    ndcg: float
    recall: float
    fit_seconds: float
    best_epoch: int | None = None
    stop_reason: str | None = None


@dataclass
class TuningResult:
    """The record of :func:`tune_model`.

    Attributes:
        model_name (str): Registry name.
        chosen (dict): The winning grid values (plus ``epochs`` for iterative models: the
            refit's epoch count, chosen by early stopping).
        points (list of GridPoint): Every setting tried, in grid order.
        base_params (dict): Settings shared by every point.
        metric (str): What chose the winner (``"ndcg@20"``); ties go to the earlier point.
        valid_fraction (float): Validation share per user.
        seed (int): Seed of the validation split.
        valid_users (int): Users with validation interactions.
        valid_interactions (int): Validation interactions.
        tune_seconds (float): Wall time of the grid.
        refit_seconds (float): Wall time of the final fit on all interactions.
    """

    model_name: str
    chosen: dict[str, Any]
    points: list[GridPoint] = field(default_factory=list)
    base_params: dict[str, Any] = field(default_factory=dict)
    metric: str = f"ndcg@{VALID_K}"
    valid_fraction: float = VALID_FRACTION
    seed: int = VALID_SEED
    valid_users: int = 0
    valid_interactions: int = 0
    tune_seconds: float = 0.0
    refit_seconds: float = 0.0

    @property
    def best(self) -> GridPoint | None:
        """The chosen grid point (``None`` for an empty grid)."""
        return max(self.points, key=lambda p: p.ndcg) if self.points else None

    def table(self) -> pd.DataFrame:
        """One row per grid point: its values, validation NDCG / Recall, seconds, chosen."""
        best = self.best
        rows = [{**p.params, f"valid ndcg@{VALID_K}": p.ndcg, f"valid recall@{VALID_K}": p.recall,
                 "fit seconds": p.fit_seconds, "best epoch": p.best_epoch,
                 "stopped by": p.stop_reason, "chosen": p is best} for p in self.points]
        return pd.DataFrame(rows)

    def describe(self) -> str:
        """The chosen setting in words, e.g. ``"reg_lambda 200 (7 settings; valid NDCG@20
        0.3012)"``."""
        if not self.points:
            return "not tuned"
        settings = ", ".join(f"{k} {_short(v)}" for k, v in self.chosen.items()) or "defaults"
        return (f"{settings} ({len(self.points)} setting{'s' * (len(self.points) != 1)}; "
                f"valid NDCG@{VALID_K} {self.best.ndcg:.4f})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record (base settings that are not plain values, such as
        embedding arrays, are named by their type)."""
        out = asdict(self)
        out["base_params"] = {k: v if isinstance(v, (str, int, float, bool, type(None)))
                              else f"<{type(v).__name__}>" for k, v in self.base_params.items()}
        return out


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values, the last key varying fastest (``[{}]`` when
    the grid is empty)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(list(grid[k]) for k in keys))]


def validation_metrics(model: Recommender, valid: pd.DataFrame, k: int = VALID_K,
                       batch_size: int = 1024) -> tuple[float, float]:
    """``(NDCG@k, Recall@k)`` of a fitted model on ``valid``, averaged over its users.

    The model ranks every item it has not seen in training (its own
    :meth:`~recsys_core.models.base.Recommender.recommend`, users scored in blocks of
    ``batch_size``); :func:`recsys_core.metrics.per_user_metrics` judges the lists.
    """
    from .metrics import per_user_metrics

    if not len(valid):
        return float("nan"), float("nan")
    users = pd.unique(valid[USER_COL])
    recs = model.recommend(users=users, k=k, batch_size=batch_size)
    per_user = per_user_metrics(valid, recs[["user_id", "item_id", "rank"]], k=k)
    return float(per_user["ndcg"].mean()), float(per_user["recall"].mean())


def tune_model(
    model_name: str,
    dataset: Dataset,
    fit_interactions: pd.DataFrame,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    base_params: Mapping[str, Any] | None = None,
    valid_fraction: float = VALID_FRACTION,
    seed: int = VALID_SEED,
    k: int = VALID_K,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Recommender, TuningResult]:
    """Choose ``model_name``'s hyper-parameters on validation, then refit on everything.

    Args:
        model_name (str): Registry name.
        dataset (Dataset): The data.
        fit_interactions (pandas.DataFrame): Rows of ``dataset.interactions`` to fit on.
        grid (dict, optional): Argument name -> values; every combination is tried.
            (default: :data:`DEFAULT_GRIDS` ``[model_name]``, else no tuning)
        base_params (dict, optional): Constructor arguments shared by every point.
            (default: :data:`DEFAULT_BASE_PARAMS` ``[model_name]``)
        valid_fraction (float): Per-user validation share. (default: :obj:`0.1`)
        seed (int): Seed of the validation split. (default: :obj:`0`)
        k (int): Cut-off of the validation metrics. (default: :obj:`20`)
        on_progress (callable, optional): Called with ``stage="tune"``, ``point``,
            ``points``, ``fraction`` after each grid point and ``stage="refit"`` at the end.
        should_stop (callable, optional): Polled between grid points (and passed to the
            iterative models' training); ``True`` stops the search and refits the best
            point so far.

    Returns:
        ``(model, record)``: the chosen setting fitted on ``fit_interactions`` and a
        :class:`TuningResult`.
    """
    from .training import split_validation

    grid = dict(DEFAULT_GRIDS.get(model_name, {}) if grid is None else grid)
    base = dict(DEFAULT_BASE_PARAMS.get(model_name, {}) if base_params is None else base_params)
    train, valid = split_validation(fit_interactions, valid_fraction, seed)
    points = grid_points(grid)
    record = TuningResult(model_name=model_name, chosen={}, base_params=base,
                          metric=f"ndcg@{k}", valid_fraction=valid_fraction, seed=seed,
                          valid_users=int(valid[USER_COL].nunique()),
                          valid_interactions=int(len(valid)))
    # A model that cannot fit all the interactions fails now, not after the grid.
    create_model(model_name, **{**base, **(points[0] if points else {})}).check_fit(
        dataset, fit_interactions)
    started = time.perf_counter()
    for i, params in enumerate(points):
        if should_stop is not None and should_stop() and record.points:
            break
        model = create_model(model_name, **{**base, **params})
        fit_started = time.perf_counter()
        _fit(model, dataset, train, valid, should_stop)
        seconds = time.perf_counter() - fit_started
        ndcg, recall = validation_metrics(model, valid, k)
        trained = getattr(model, "train_result", None)
        record.points.append(GridPoint(dict(params), ndcg, recall, seconds,
                                       getattr(trained, "best_epoch", None),
                                       getattr(trained, "stop_reason", None)))
        if on_progress is not None:
            on_progress({"stage": "tune", "point": i + 1, "points": len(points),
                         "valid_ndcg": ndcg, "fraction": (i + 1) / (len(points) + 1)})
    record.tune_seconds = time.perf_counter() - started

    best = record.best
    final_params = {**base, **(best.params if best is not None else {})}
    record.chosen = dict(best.params) if best is not None else {}
    iterative = best is not None and best.best_epoch is not None
    if iterative:
        # Early stopping chose the epochs: train on everything for that many (at least one),
        # as the flagship's refit does (same seed), without repeating the validated run. The
        # epoch count bounds the refit, so a time limit would only cut it short.
        epochs = max(1, best.best_epoch)
        final_params.update(epochs=epochs, refit=False, time_limit=None)
        record.chosen["epochs"] = epochs
    started = time.perf_counter()
    final = create_model(model_name, **final_params)
    _fit(final, dataset, fit_interactions, fit_interactions.iloc[:0] if iterative else None,
         should_stop)
    record.refit_seconds = time.perf_counter() - started
    if on_progress is not None:
        on_progress({"stage": "refit", "fraction": 1.0})
    final.tuning = record
    return final, record


def _fit(model: Recommender, dataset: Dataset, train: pd.DataFrame, valid: pd.DataFrame | None,
         should_stop: Callable[[], bool] | None) -> None:
    """Fit, passing the validation frame to models that stop early on one."""
    from .models.embedding import EmbeddingRecommender

    if isinstance(model, EmbeddingRecommender):
        model.fit(dataset, train, valid, should_stop=should_stop)
    else:
        model.fit(dataset, train)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
