"""Cold-start peer: a user's text profile plus the popularity an item's text predicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..dataset import DEFAULT_TEXT_TEMPLATE, Dataset
from .base import OnePassRecommender, ProgressCallback, check_state_tensors
from .text_knn import unit_text_embeddings

#: Popularity weights tried on the pseudo-cold validation split.
DEFAULT_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


class TextPopRecommender(OnePassRecommender):
    r"""Text-kNN profile similarity plus popularity predicted from the item's text.

    Item texts are embedded and L2-normalised, :math:`\hat{\mathbf{e}}_i`; a user's profile
    :math:`\hat{\mathbf{p}}_u` is the normalised mean embedding of their training items (as
    in :class:`~recsys_core.models.text_knn.TextKNNRecommender`). A ridge regression from
    :math:`\hat{\mathbf{e}}_i` (plus an intercept) to :math:`\log(1 + n_i)`, fitted on the
    items with :math:`n_i > 0` training interactions, predicts every item's popularity
    :math:`\hat{y}_i` from its text alone. The score is

    .. math::
        s_{ui} = z_u\big(\cos(\hat{\mathbf{p}}_u, \hat{\mathbf{e}}_i)\big)
                 + w \, z(\hat{y}_i),

    where :math:`z_u` standardises the user's cosines over the whole catalogue (exactly, from
    the embeddings' mean and covariance, without scoring every item) and :math:`z`
    standardises the predictions over the catalogue. No interaction of the candidate item is
    used, so items known only by their text score like any other.

    The weight :math:`w` is chosen on a pseudo-cold validation: ``valid_fraction`` of the
    items with interactions are held out entirely, the ridge and the profiles are refitted on
    the other interactions, and each user with held-out interactions ranks only the held-out
    items; the :math:`w` of ``weight_grid`` with the best Recall@``valid_k`` wins (ties: the
    smaller). The ridge is then refitted on every item with interactions.

    Args:
        item_text_embeddings (Tensor, optional): Precomputed ``[num_items, d]`` embeddings in
            the dataset's item order; when omitted, :meth:`fit` encodes the item texts.
            (default: :obj:`None`)
        template (str): Item text template (see :meth:`Dataset.item_texts`).
            (default: :obj:`DEFAULT_TEXT_TEMPLATE`)
        encoder (recsys_core.text.TextEncoder, optional): Encoder to use when embeddings are
            not given. (default: the package's all-MiniLM-L6-v2)
        ridge_lambda (float): L2 penalty of the popularity regression (the intercept is not
            penalised). (default: :obj:`1.0`)
        popularity_weight (float, optional): Fix :math:`w` instead of choosing it.
            (default: :obj:`None`)
        weight_grid (sequence of float, optional): Candidate values of :math:`w`.
            (default: :data:`DEFAULT_WEIGHT_GRID`, ``(0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3)``)
        valid_fraction (float): Share of the items with interactions held out for choosing
            :math:`w`. (default: :obj:`0.1`)
        valid_k (int): Cut-off of the validation recall. (default: :obj:`20`)
        seed (int): Seed of the held-out item choice. (default: :obj:`0`)
    """

    name = "text-pop"

    def __init__(
        self,
        item_text_embeddings: torch.Tensor | np.ndarray | None = None,
        template: str = DEFAULT_TEXT_TEMPLATE,
        encoder: Any | None = None,
        ridge_lambda: float = 1.0,
        popularity_weight: float | None = None,
        weight_grid: Sequence[float] | None = None,
        valid_fraction: float = 0.1,
        valid_k: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if ridge_lambda <= 0:
            raise ValueError(f"ridge_lambda must be positive, got {ridge_lambda}.")
        if not 0 < valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}.")
        weight_grid = DEFAULT_WEIGHT_GRID if weight_grid is None else weight_grid
        if not len(weight_grid):
            raise ValueError("weight_grid must hold at least one weight.")
        self.template = template
        self.encoder = encoder
        self._given_embeddings = item_text_embeddings
        self.ridge_lambda = float(ridge_lambda)
        self.popularity_weight_given = (None if popularity_weight is None
                                        else float(popularity_weight))
        self.weight_grid = [float(w) for w in weight_grid]
        self.valid_fraction = float(valid_fraction)
        self.valid_k = int(valid_k)
        self.seed = int(seed)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Forget the fitted embeddings, regression and weight."""
        self.item_embeddings: torch.Tensor | None = None  # [num_items, d], L2-normalised
        self.predicted_log_popularity: torch.Tensor | None = None  # [num_items]
        self.popularity_weight: float | None = None
        #: What the pseudo-cold validation measured: ``{"popularity_weight", "recall_by_weight",
        #: "held_out_items", "users"}`` (empty when the weight was given).
        self.validation: dict[str, Any] = {}
        self._stats: _CatalogueStats | None = None

    # ------------------------------------------------------------------ fitting
    def fit_bound(self, dataset: Dataset, on_progress: ProgressCallback | None) -> None:
        self.item_embeddings = unit_text_embeddings(dataset, self._given_embeddings, self.encoder,
                                                    self.template, on_progress)
        unit = self.item_embeddings.numpy().astype(np.float64)
        counts = np.asarray(self.train_matrix.sum(axis=0)).ravel()
        if self.popularity_weight_given is not None:
            self.popularity_weight = self.popularity_weight_given
            self.validation = {}
        else:
            self.popularity_weight, self.validation = self._choose_weight(unit, counts)
        predicted = ridge_popularity(unit, counts, self.ridge_lambda)
        self.predicted_log_popularity = torch.from_numpy(predicted.astype(np.float32))
        self._prepare()

    def _choose_weight(self, unit: np.ndarray, counts: np.ndarray) -> tuple[float, dict]:
        """The pseudo-cold validation: hold out warm items, rank only them, best recall."""
        from ..metrics import recall_at_k

        ds = self.dataset
        warm = np.flatnonzero(counts > 0)
        n_held = min(max(1, round(self.valid_fraction * len(warm))), len(warm) - 1)
        if n_held < 1:
            return self.weight_grid[0], {}
        rng = np.random.default_rng(self.seed)
        held = np.sort(rng.choice(warm, size=n_held, replace=False))
        is_held = np.zeros(ds.num_items, dtype=bool)
        is_held[held] = True
        kept = self.train_matrix @ sp.diags((~is_held).astype(np.float32))
        kept = sp.csr_matrix(kept)
        kept.eliminate_zeros()
        held_part = self.train_matrix[:, held].tocsr()
        users = np.flatnonzero(np.diff(held_part.indptr) > 0)
        rest_counts = np.where(is_held, 0.0, counts)
        predicted = ridge_popularity(unit, rest_counts, self.ridge_lambda)
        stats = _CatalogueStats(unit, predicted)
        truth_rows, truth_cols = held_part[users].nonzero()
        truth = pd.DataFrame({"user_id": ds.user_ids[users[truth_rows]],
                              "item_id": ds.item_ids[held[truth_cols]]})
        recall_by_weight = {}
        for weight in self.weight_grid:
            lists = []
            for start in range(0, len(users), 1024):
                block = users[start:start + 1024]
                scores = stats.scores(kept[block], held, weight)
                lists.append(_top_k_frame(scores, ds.user_ids[block], ds.item_ids[held],
                                          self.valid_k))
            recs = pd.concat(lists, ignore_index=True)
            recall_by_weight[weight] = recall_at_k(truth, recs, k=self.valid_k)
        best = max(self.weight_grid, key=lambda w: (recall_by_weight[w], -w))
        return best, {"popularity_weight": best,
                      "recall_by_weight": {str(w): r for w, r in recall_by_weight.items()},
                      "held_out_items": int(n_held), "users": int(len(users))}

    def _prepare(self) -> None:
        self._stats = _CatalogueStats(self.item_embeddings.numpy().astype(np.float64),
                                      self.predicted_log_popularity.numpy().astype(np.float64))

    # ------------------------------------------------------------------ scoring
    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self._stats is None:
            raise RuntimeError("TextPopRecommender is not fitted.")
        history = self.train_matrix[np.asarray(users, dtype=np.int64)]
        item_idx = (np.arange(self.dataset.num_items) if items is None
                    else np.asarray(items, dtype=np.int64))
        return self._stats.scores(history, item_idx, self.popularity_weight).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        return {"template": self.template, "ridge_lambda": self.ridge_lambda,
                "popularity_weight": self.popularity_weight_given,
                "weight_grid": list(self.weight_grid), "valid_fraction": self.valid_fraction,
                "valid_k": self.valid_k, "seed": self.seed}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.item_embeddings is None:
            return {}
        return {"item_embeddings": self.item_embeddings,
                "predicted_log_popularity": self.predicted_log_popularity,
                "popularity_weight": torch.tensor([self.popularity_weight], dtype=torch.float64)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        num_items = self.dataset.num_items if self.dataset is not None else None
        check_state_tensors(self.name, tensors, {"item_embeddings": (num_items, None),
                                                 "predicted_log_popularity": (num_items,),
                                                 "popularity_weight": (1,)})
        if tensors["item_embeddings"].shape[0] != tensors["predicted_log_popularity"].shape[0]:
            raise ValueError(f"{self.name}: 'item_embeddings' and 'predicted_log_popularity' "
                             "disagree on the number of items.")
        self.item_embeddings = tensors["item_embeddings"].detach().to(
            "cpu", torch.float32).contiguous()
        self.predicted_log_popularity = tensors["predicted_log_popularity"].detach().to(
            "cpu", torch.float32).contiguous()
        self.popularity_weight = float(tensors["popularity_weight"][0])
        self._prepare()


def ridge_popularity(unit: np.ndarray, counts: np.ndarray, ridge_lambda: float) -> np.ndarray:
    r"""Every item's :math:`\log(1 + n)` as predicted from its embedding.

    Ridge regression with an unpenalised intercept, fitted on the items with ``counts > 0``:
    :math:`\min_{\mathbf{b}, c} \sum_i (y_i - \mathbf{e}_i^\top \mathbf{b} - c)^2 +
    \lambda \|\mathbf{b}\|^2`, solved in closed form on centred data.

    Args:
        unit (numpy.ndarray): ``[num_items, d]`` item embeddings.
        counts (numpy.ndarray): ``[num_items]`` training interactions per item.
        ridge_lambda (float): :math:`\lambda`.

    Returns:
        ``[num_items]`` predictions (all items, the ones without interactions included); the
        constant 0 when no item has interactions.
    """
    warm = counts > 0
    if not warm.any():
        return np.zeros(len(counts))
    x = unit[warm]
    y = np.log1p(counts[warm].astype(np.float64))
    x_mean, y_mean = x.mean(axis=0), y.mean()
    xc = x - x_mean
    gram = xc.T @ xc + ridge_lambda * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, xc.T @ (y - y_mean))
    return (unit - x_mean) @ coef + y_mean


class _CatalogueStats:
    """Catalogue-wide means and spreads behind the two z-scores of :class:`TextPopRecommender`.

    The cosine of a unit profile :math:`\\hat{p}` with the items has catalogue mean
    :math:`\\hat{p}^\\top \\mu` and variance :math:`\\hat{p}^\\top \\Sigma \\hat{p}` (the
    embeddings' mean and population covariance), so standardising needs no full scoring.
    """

    def __init__(self, unit: np.ndarray, predicted: np.ndarray) -> None:
        self.unit = unit
        self.mean = unit.mean(axis=0)
        centred = unit - self.mean
        self.covariance = centred.T @ centred / max(len(unit), 1)
        spread = predicted.std()
        self.popularity_z = ((predicted - predicted.mean()) / spread if spread > 1e-12
                             else np.zeros_like(predicted))

    def scores(self, history: sp.spmatrix, items: np.ndarray, weight: float) -> np.ndarray:
        """``[users, len(items)]`` scores of the users whose training rows are ``history``."""
        profiles = np.asarray(history @ self.unit, dtype=np.float64)
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        profiles = profiles / np.maximum(norms, 1e-12)
        mean = profiles @ self.mean
        std = np.sqrt(np.maximum(np.einsum("ud,de,ue->u", profiles, self.covariance, profiles),
                                 0.0))
        cosine = profiles @ self.unit[items].T
        safe = std > 1e-12
        z_cosine = np.zeros_like(cosine)
        z_cosine[safe] = (cosine[safe] - mean[safe, None]) / std[safe, None]
        return z_cosine + weight * self.popularity_z[items]


def _top_k_frame(scores: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray,
                 k: int) -> pd.DataFrame:
    """Each row's ``k`` best columns as ``user_id, item_id, rank`` (ties: lower column)."""
    kk = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    rows = np.repeat(np.arange(scores.shape[0]), kk)
    return pd.DataFrame({"user_id": user_ids[rows], "item_id": item_ids[order.ravel()],
                         "rank": np.tile(np.arange(1, kk + 1), scores.shape[0])})
