"""Popularity prior: each item's training popularity as an additive score term.

On sparse, popularity-heavy data (few interactions per user and item) the personal signal a
network can learn is weak and the plain popularity ranking is hard to beat; the graph filter
removes popularity by design (degree normalisation). The prior puts it back where validation
shows it pays: ``score(u, i) + s * f(n_i)``, with ``n_i`` the item's number of training users,
``f`` one of :data:`PRIOR_TRANSFORMS` (scaled to ``[0, 1]``) and ``s`` a weight, both chosen on
the validation split like the other closed-form parts (:func:`choose_blend`, with the same
margin), before the graph filter is chosen on top of it. Items without interactions get 0:
their score is the model's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from .base import ProgressCallback
from .item_item import DEFAULT_MARGIN, ValidationRanking, choose_blend, masked_std

#: Transforms of the popularity count tried on validation, from flat to peaked.
PRIOR_TRANSFORMS: tuple[str, ...] = ("log", "sqrt", "linear")

#: Weights tried, in units of the spread ratio of the score to the prior (see
#: :func:`~recsys_core.models.item_item.choose_blend`); the largest make the ranking
#: popularity with the model's score as tie-break, so the prior can reach plain popularity.
DEFAULT_PRIOR_WEIGHTS: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0,
                                            16.0)


def item_popularity(matrix: sp.spmatrix) -> np.ndarray:
    """Number of distinct users of each item in a ``[users, items]`` interaction matrix."""
    return np.diff(sp.csc_matrix(matrix).indptr).astype(np.float64)


def popularity_values(counts: np.ndarray, transform: str) -> np.ndarray:
    """``f(counts)`` scaled to ``[0, 1]`` (all 0 without interactions).

    Args:
        counts (numpy.ndarray): ``[items]`` training users per item.
        transform (str): One of :data:`PRIOR_TRANSFORMS`.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if transform == "log":
        values = np.log1p(counts)
    elif transform == "sqrt":
        values = np.sqrt(counts)
    elif transform == "linear":
        values = counts
    else:
        raise ValueError(f"transform must be one of {PRIOR_TRANSFORMS}, got {transform!r}.")
    top = values.max(initial=0.0)
    return (values / top if top > 0 else values).astype(np.float32)


@dataclass
class PopularityPriorChoice:
    """What :func:`select_popularity_prior` chose and saw.

    Attributes:
        transform (str): Chosen transform (:data:`PRIOR_TRANSFORMS`).
        relative_weight (float): Chosen weight relative to the spread ratio (0: prior off).
        valid_ndcg_base (float): Validation NDCG@K of the score without the prior.
        valid_ndcg (float): With the chosen prior.
        grid (list[dict]): Every (``transform``, ``relative_weight``, ``valid_ndcg``) tried.
        values (numpy.ndarray, optional): ``[items]`` the chosen transform on the validation
            ranking's training popularity (``None`` when off), the term the caller adds.
    """

    transform: str
    relative_weight: float
    valid_ndcg_base: float
    valid_ndcg: float
    grid: list[dict[str, Any]]
    values: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        return {"transform": self.transform, "relative_weight": self.relative_weight,
                "valid_ndcg_base": self.valid_ndcg_base, "valid_ndcg": self.valid_ndcg}


def prior_term(ranking: ValidationRanking, values: np.ndarray) -> Tensor:
    """The prior as a ``[validation users, items]`` term (one row, broadcast)."""
    return torch.from_numpy(values).expand(len(ranking.users), -1)


@torch.no_grad()
def select_popularity_prior(
    ranking: ValidationRanking,
    transforms: Sequence[str] = PRIOR_TRANSFORMS,
    relative_weights: Sequence[float] = DEFAULT_PRIOR_WEIGHTS,
    margin: float | None = DEFAULT_MARGIN,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PopularityPriorChoice:
    """Choose the prior's transform and weight on validation (:func:`choose_blend`); it stays
    off unless it lifts validation NDCG@K by ``margin`` over ``ranking``'s base.

    Args:
        ranking (ValidationRanking): Validation users, targets and the score so far (its
            training matrix gives the popularity counts).
        transforms (sequence of str): Transforms tried. (default: :data:`PRIOR_TRANSFORMS`)
        relative_weights (sequence of float): Weights tried.
            (default: :data:`DEFAULT_PRIOR_WEIGHTS`)
        margin (float, optional): Relative gain needed (``None``: keep the best cell).
            (default: :data:`~recsys_core.models.item_item.DEFAULT_MARGIN`)
        on_progress (callable, optional): Called with ``stage="popularity-prior"``,
            ``fraction`` and ``valid_ndcg`` after each transform.
        should_stop (callable, optional): Polled before each transform.
    """
    transforms = list(transforms)
    counts = item_popularity(ranking.train_matrix)
    weights = [float(w) for w in relative_weights if w > 0]

    def report(row: int, best_ndcg: float) -> None:
        if on_progress is not None:
            on_progress({"stage": "popularity-prior", "fraction": (row + 1) / len(transforms),
                         "valid_ndcg": best_ndcg})

    blend = choose_blend(ranking, lambda row: prior_term(ranking, popularity_values(
        counts, transforms[row])), len(transforms), weights, margin, should_stop, report)
    grid = [{"transform": transforms[r], "relative_weight": w,
             "valid_ndcg": float(blend.table[r, c])}
            for r in range(blend.table.shape[0]) for c, w in enumerate(weights)
            if np.isfinite(blend.table[r, c])]
    transform = transforms[blend.row] if blend.row >= 0 else transforms[0]
    values = popularity_values(counts, transform) if blend.row >= 0 else None
    return PopularityPriorChoice(transform, blend.relative_weight, blend.valid_ndcg_base,
                                 blend.valid_ndcg, grid, values)


def prior_scale(scores: Tensor, seen: Tensor, values: np.ndarray,
                relative_weight: float) -> float:
    """The prior's absolute scale on a fitted model: ``relative_weight`` times the spread
    ratio of ``scores`` (``[users, items]``, the model's score so far) to the prior over the
    unseen items, as on validation."""
    term = torch.from_numpy(values).expand(scores.size(0), -1)
    spread = masked_std(term, seen)
    return relative_weight * masked_std(scores, seen) / spread if spread > 0 else 0.0


def describe_prior_choice(summary: dict[str, Any]) -> str:
    """A :meth:`PopularityPriorChoice.summary` in words."""
    if summary["relative_weight"] <= 0:
        return "popularity prior off (it did not help on validation)"
    text = (f"popularity prior: {summary['transform']} of the item's users, "
            f"weight={summary['relative_weight']:g}")
    if np.isfinite(summary.get("valid_ndcg_base", np.nan)):
        text += (f" (validation NDCG {summary['valid_ndcg_base']:.4f} without it, "
                 f"{summary['valid_ndcg']:.4f} with it)")
    return text


__all__ = [
    "DEFAULT_PRIOR_WEIGHTS",
    "PRIOR_TRANSFORMS",
    "PopularityPriorChoice",
    "describe_prior_choice",
    "item_popularity",
    "popularity_values",
    "prior_scale",
    "prior_term",
    "select_popularity_prior",
]
