r"""The flagship's full-rank item-item path: closed-form EASE weights over the training graph.

A rank-``d`` dot product cannot express every item-item co-occurrence pattern; on dense
catalogues such as MovieLens a full-rank linear item-item model (EASE, Steck 2019) beats
low-rank graph models. The flagship therefore adds to its graph score a second term read off
the same user-item graph,

.. math::
    s(u, i) = \langle \mathbf{h}_u, \mathbf{h}_i \rangle
              + \alpha \sum_{j \in \mathcal{N}(u)} B_{ji},

where :math:`\mathcal{N}(u)` are the user's ``rates`` edges and :math:`\mathbf{B}` the
closed-form EASE weights of the training graph's biadjacency matrix (a two-hop
item -> user -> item filter with the self-loop removed). The term is exact and additive per
history edge, so removing an interaction from the graph removes its contribution and every
explanation stays exact.

Its regularisation :math:`\lambda` and weight :math:`\alpha` are chosen per data set on the
validation split carved for early stopping (:func:`select_item_item`): a data set where the
path does not help gets :math:`\alpha = 0`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from ..dataset import USER_IDX
from ..device import pick_device
from .base import ProgressCallback, check_state_tensors, interaction_matrix

#: Regularisation values tried on validation (a 1-2-5 series around the published range).
DEFAULT_REG_LAMBDAS: tuple[float, ...] = (20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
#: Weights tried on validation, relative to the ratio of the two terms' spreads: half-octave
#: steps from 1/16 to 4 (weight 0, the path off, is always the alternative).
DEFAULT_RELATIVE_WEIGHTS: tuple[float, ...] = tuple(2.0 ** (k / 2) for k in range(-8, 5))


def ease_weights(matrix: sp.spmatrix, reg_lambda: float, device: str | None = "cpu") -> Tensor:
    r"""Closed-form EASE weights :math:`B = I - P\,\mathrm{diag}(P)^{-1}` with
    :math:`P = (X^\top X + \lambda I)^{-1}` (so :math:`B_{jj} = 0`).

    Args:
        matrix (scipy.sparse matrix): Binary ``[users, n]`` interaction matrix.
        reg_lambda (float): L2 regularisation :math:`\lambda > 0`.
        device (str, optional): Where to invert (``"auto"``, ``"cpu"``, ``"cuda"``).
            (default: :obj:`"cpu"`)

    Returns:
        ``[n, n]`` float32 weights on the CPU (row: history item, column: scored item).
    """
    if reg_lambda <= 0:
        raise ValueError(f"reg_lambda must be positive, got {reg_lambda}.")
    x = sp.csr_matrix(matrix, dtype=np.float64)
    gram = torch.from_numpy((x.T @ x).toarray())
    target = pick_device(device)
    if target.type == "mps":  # no float64 on Apple GPUs; the inverse needs it
        target = torch.device("cpu")
    gram = gram.to(target)
    gram.diagonal().add_(float(reg_lambda))
    # X^T X + lambda I is symmetric positive definite: Cholesky is stabler than a plain inverse.
    precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    del gram
    precision.div_(-precision.diagonal().clone())  # B_ij = -P_ij / P_jj (broadcast over columns)
    precision.diagonal().zero_()
    return precision.to("cpu", torch.float32).contiguous()


def head_items(matrix: sp.spmatrix, max_items: int) -> np.ndarray:
    """Sorted indices of the (at most ``max_items``) items with the most interactions; items
    without interactions are never included. Ties go to the lower index."""
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    active = np.flatnonzero(counts > 0)
    if len(active) > max_items:
        order = np.lexsort((active, -counts[active]))  # most interactions first, then index
        active = np.sort(active[order[:max_items]])
    return active.astype(np.int64)


class ItemItemPath:
    r"""The term :math:`\alpha\, \mathbf{x}_u \mathbf{B}` over a set of (head) items.

    Items outside ``items`` (cold items, or the tail beyond ``max_items``) neither contribute
    nor receive a score (their term is 0).

    Args:
        num_items (int): Catalogue size.
        items (Tensor): ``[n]`` sorted item indices the weights cover.
        weights (Tensor): ``[n, n]`` EASE weights over those items.
        scale (float): :math:`\alpha`, in the units of the graph score.
        reg_lambda (float): The :math:`\lambda` the weights were fitted with.
    """

    def __init__(self, num_items: int, items: Tensor, weights: Tensor, scale: float,
                 reg_lambda: float) -> None:
        self.num_items = int(num_items)
        self.items = items.to("cpu", torch.int64).contiguous()
        self.weights = weights.to("cpu", torch.float32).contiguous()
        self.scale = float(scale)
        self.reg_lambda = float(reg_lambda)
        self.position = np.full(self.num_items, -1, dtype=np.int64)
        self.position[self.items.numpy()] = np.arange(len(self.items))

    @classmethod
    def fit(cls, matrix: sp.spmatrix, reg_lambda: float, max_items: int, scale: float = 1.0,
            device: str | None = "cpu") -> ItemItemPath:
        """Fit the weights on a binary ``[users, items]`` matrix over its head items."""
        items = head_items(matrix, max_items)
        weights = ease_weights(sp.csr_matrix(matrix)[:, items], reg_lambda, device)
        return cls(matrix.shape[1], torch.from_numpy(items), weights, scale, reg_lambda)

    def scores(self, history: sp.spmatrix, items: np.ndarray | None = None) -> np.ndarray:
        """``[rows, len(items)]`` term for binary history rows ``[rows, num_items]``
        (all items when ``items`` is ``None``), already multiplied by :attr:`scale`."""
        history = sp.csr_matrix(history)[:, self.items.numpy()]
        item_idx = np.arange(self.num_items) if items is None else np.asarray(items, np.int64)
        pos = self.position[item_idx]
        out = np.zeros((history.shape[0], len(item_idx)), dtype=np.float32)
        known = pos >= 0
        if known.any():
            out[:, known] = history @ self.weights.numpy()[:, pos[known]]
        return out * np.float32(self.scale)

    def pair_weights(self, history_items: Tensor, items: Tensor) -> Tensor:
        r"""``[len(history_items), len(items)]`` of :math:`\alpha B_{ji}` (0 outside the head):
        the contribution of each history edge to each item's score."""
        rows = torch.from_numpy(self.position[history_items.numpy()])
        cols = torch.from_numpy(self.position[items.numpy()])
        out = torch.zeros(rows.numel(), cols.numel())
        r_ok, c_ok = rows >= 0, cols >= 0
        if r_ok.any() and c_ok.any():
            block = self.weights[rows[r_ok]][:, cols[c_ok]] * self.scale
            out[r_ok.nonzero().view(-1, 1), c_ok.nonzero().view(1, -1)] = block
        return out

    def state_tensors(self, prefix: str = "item_item.") -> dict[str, Tensor]:
        return {f"{prefix}items": self.items, f"{prefix}weights": self.weights,
                f"{prefix}scale": torch.tensor([self.scale], dtype=torch.float64),
                f"{prefix}reg_lambda": torch.tensor([self.reg_lambda], dtype=torch.float64)}

    @classmethod
    def from_state_tensors(cls, tensors: dict[str, Tensor], num_items: int,
                           prefix: str = "item_item.") -> ItemItemPath:
        """Inverse of :meth:`state_tensors` (strict about names, shapes and index range)."""
        n = tensors[f"{prefix}items"].shape[0] if f"{prefix}items" in tensors else None
        check_state_tensors("gnn-llm item-item path", tensors, {
            f"{prefix}items": (n,), f"{prefix}weights": (n, n), f"{prefix}scale": (1,),
            f"{prefix}reg_lambda": (1,)})
        items = tensors[f"{prefix}items"].to(torch.int64)
        if len(items) and (int(items.min()) < 0 or int(items.max()) >= num_items
                           or bool((items[1:] <= items[:-1]).any())):
            raise ValueError("gnn-llm item-item path: 'items' must be sorted, distinct item "
                             "indices within the catalogue.")
        return cls(num_items, items, tensors[f"{prefix}weights"],
                   float(tensors[f"{prefix}scale"][0]), float(tensors[f"{prefix}reg_lambda"][0]))


@dataclass
class ItemItemChoice:
    """What :func:`select_item_item` chose and saw.

    Attributes:
        reg_lambda (float): Chosen :math:`\\lambda`.
        relative_weight (float): Chosen weight relative to the spread ratio (0: path off).
        valid_ndcg_graph (float): Validation NDCG@K of the graph score alone.
        valid_ndcg (float): Validation NDCG@K with the chosen path.
        grid (list[dict]): Every (``reg_lambda``, ``relative_weight``, ``valid_ndcg``) tried.
    """

    reg_lambda: float
    relative_weight: float
    valid_ndcg_graph: float
    valid_ndcg: float
    grid: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"reg_lambda": self.reg_lambda, "relative_weight": self.relative_weight,
                "valid_ndcg_graph": self.valid_ndcg_graph, "valid_ndcg": self.valid_ndcg}


def spread_ratio(graph_rows: Tensor, path_rows: Tensor) -> float:
    """``std(graph scores) / std(item-item term)`` over the given rows (0 when the term is
    constant): the unit that makes relative weights comparable across data sets."""
    spread = float(path_rows.double().std())
    return float(graph_rows.double().std()) / spread if spread > 0 else 0.0


def _users_for_selection(valid: pd.DataFrame, max_users: int, seed: int) -> np.ndarray:
    users = np.unique(valid[USER_IDX].to_numpy(np.int64))
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


@torch.no_grad()
def select_item_item(
    graph_scores: Callable[[np.ndarray], Tensor],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    num_users: int,
    num_items: int,
    k: int = 20,
    reg_lambdas: Sequence[float] = DEFAULT_REG_LAMBDAS,
    relative_weights: Sequence[float] = DEFAULT_RELATIVE_WEIGHTS,
    max_items: int = 5000,
    max_users: int = 2000,
    seed: int = 0,
    device: str | None = "cpu",
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ItemItemChoice:
    """Choose the item-item path's :math:`\\lambda` and weight by validation NDCG@K.

    The graph model was trained on ``train`` only; for (at most ``max_users``) validation
    users, every candidate blend ranks all items not in the user's ``train`` history and is
    scored against ``valid`` (binary gains, as in early stopping). The chosen cell of the
    (lambda, weight) grid is the one whose neighbourhood scores best (single cells are
    noisy); the path stays off (weight 0) unless that cell beats the graph score alone.

    Args:
        graph_scores (callable): User indices -> ``[len(users), num_items]`` graph scores.
        train (pandas.DataFrame): Interactions the graph model and the weights see.
        valid (pandas.DataFrame): Held-out interactions.
        num_users (int): Number of users.
        num_items (int): Number of items.
        k (int): Cut-off. (default: :obj:`20`)
        reg_lambdas (sequence of float): :math:`\\lambda` values to try.
            (default: :data:`DEFAULT_REG_LAMBDAS`)
        relative_weights (sequence of float): Weights to try, in units of
            :func:`spread_ratio` (0 is always an option). (default:
            :data:`DEFAULT_RELATIVE_WEIGHTS`)
        max_items (int): Head items the weights cover. (default: :obj:`5000`)
        max_users (int): Validation users sampled for the choice. (default: :obj:`2000`)
        seed (int): Seed of that sample. (default: :obj:`0`)
        device (str, optional): Where to invert the Gram matrix. (default: :obj:`"cpu"`)
        on_progress (callable, optional): Called with ``stage="item-item"`` and ``fraction``.
        should_stop (callable, optional): Polled between fits; ``True`` keeps what was
            tried so far.
    """
    users = _users_for_selection(valid, max_users, seed)
    train_matrix = interaction_matrix(train, num_users, num_items)
    valid_matrix = interaction_matrix(valid, num_users, num_items)
    history = train_matrix[users]
    truth = torch.from_numpy(valid_matrix[users].toarray() > 0)
    k = min(k, num_items)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    ideal = torch.cumsum(discounts, 0)[(truth.sum(1).clamp(1, k) - 1)]
    graph = graph_scores(users).float().cpu()
    seen = torch.from_numpy(history.toarray() > 0)
    graph = graph.masked_fill(seen, float("-inf"))
    finite = graph[~seen]

    def ndcg(scores: Tensor) -> float:
        top = scores.topk(k, dim=1).indices
        gains = truth.gather(1, top).double()
        return float(((gains * discounts).sum(1) / ideal).mean())

    base = ndcg(graph)
    best = ItemItemChoice(float(reg_lambdas[0]) if len(reg_lambdas) else 0.0, 0.0, base, base)
    weights = [float(w) for w in relative_weights if w > 0]
    table = np.full((len(reg_lambdas), len(weights)), -np.inf)
    for row, reg_lambda in enumerate(reg_lambdas):
        if should_stop is not None and should_stop():
            break
        path = ItemItemPath.fit(train_matrix, reg_lambda, max_items, device=device)
        term = torch.from_numpy(path.scores(history))
        ratio = spread_ratio(finite, term[~seen])
        for col, weight in enumerate(weights):
            table[row, col] = ndcg(graph + (weight * ratio) * term) if ratio > 0 else base
            best.grid.append({"reg_lambda": float(reg_lambda), "relative_weight": weight,
                              "valid_ndcg": float(table[row, col])})
        if on_progress is not None:
            on_progress({"stage": "item-item", "fraction": (row + 1) / len(reg_lambdas),
                         "valid_ndcg": float(table.max(initial=base))})
    if not np.isfinite(table).any():
        return best
    # The surface is flat near its top and each cell is noisy: choose the cell whose
    # neighbourhood (one step either way on both axes) scores best, not the single best cell.
    smooth = np.full_like(table, -np.inf)
    for row in range(table.shape[0]):
        for col in range(table.shape[1]):
            window = table[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
            if np.isfinite(table[row, col]):
                smooth[row, col] = window[np.isfinite(window)].mean()
    row, col = np.unravel_index(np.argmax(smooth), smooth.shape)  # first max: smaller weight
    if table[row, col] > base:
        best.reg_lambda, best.relative_weight = float(reg_lambdas[row]), weights[col]
        best.valid_ndcg = float(table[row, col])
    return best


def describe_choice(summary: dict[str, Any]) -> str:
    """An :meth:`ItemItemChoice.summary` in words."""
    if summary["relative_weight"] <= 0:
        return "item-item path off (it did not help on validation)"
    text = (f"item-item path: lambda={summary['reg_lambda']:g}, "
            f"weight={summary['relative_weight']:.3g}")
    if np.isfinite(summary.get("valid_ndcg_graph", np.nan)):
        text += (f" (validation NDCG {summary['valid_ndcg_graph']:.4f} graph only, "
                 f"{summary['valid_ndcg']:.4f} with it)")
    return text


__all__ = ["DEFAULT_REG_LAMBDAS", "DEFAULT_RELATIVE_WEIGHTS", "ItemItemChoice", "ItemItemPath",
           "describe_choice", "ease_weights", "head_items", "select_item_item", "spread_ratio"]
