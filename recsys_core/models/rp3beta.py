"""RP3beta: three-step random walks on the user-item graph, popularity-discounted (Paudel et al.,
ACM TiiS 2016)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..dataset import Dataset
from .base import ProgressCallback
from .neighbours import ItemWeightsRecommender, sparse_top_k


class RP3betaRecommender(ItemWeightsRecommender):
    r"""Item-item transition probabilities of a random walk item -> user -> item, with each
    target item's weight divided by its popularity to the power :math:`\beta`.

    With the binary user-item training matrix :math:`\mathbf{X}`, user degrees
    :math:`d_u` and item degrees :math:`d_i`, the walk's steps are raised to :math:`\alpha`,
    :math:`P_{ui} = (x_{ui} / d_u)^\alpha` and :math:`P_{iu} = (x_{ui} / d_i)^\alpha`, and

    .. math::
        W_{ij} = \Big(\sum_u P_{iu} P_{uj}\Big) \, d_j^{-\beta}, \qquad W_{ii} = 0,

    of which each row :math:`i` keeps its ``neighbours`` largest entries (a sparse top-k
    matrix, computed a block of rows at a time). A user's scores are
    :math:`\mathbf{x}_u \mathbf{W}`: every history item votes for its neighbours. Items
    without training interactions score 0. As in Dacrema et al.'s reference implementation
    (RecSys 2019), rows are not re-normalised.

    Args:
        alpha (float): Exponent of the transition probabilities; 1 is the plain walk.
            (default: :obj:`1.0`)
        beta (float): Popularity discount of the target item; 0 is the plain walk
            (P3alpha). (default: :obj:`0.5`)
        neighbours (int): Largest weights kept per item. (default: :obj:`200`)
    """

    name = "rp3beta"

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, neighbours: int = 200) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}.")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}.")
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}.")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.neighbours = int(neighbours)
        self.reset_parameters()

    def fit_bound(self, dataset: Dataset, on_progress: ProgressCallback | None) -> None:
        x = self.train_matrix.astype(np.float64)
        user_degree = np.asarray(x.sum(axis=1)).ravel()
        item_degree = np.asarray(x.sum(axis=0)).ravel()
        user_to_item = _row_scaled(x, user_degree, self.alpha)  # P_ui, [users, items]
        item_to_user = _row_scaled(x.T.tocsr(), item_degree, self.alpha)  # P_iu, [items, users]
        discount = np.zeros_like(item_degree)
        discount[item_degree > 0] = item_degree[item_degree > 0] ** -self.beta

        def similarity_rows(rows: np.ndarray) -> np.ndarray:
            return (item_to_user[rows] @ user_to_item).toarray() * discount

        self.weights = sparse_top_k(similarity_rows, dataset.num_items, self.neighbours)

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "neighbours": self.neighbours}


def _row_scaled(matrix: sp.csr_matrix, degree: np.ndarray, power: float) -> sp.csr_matrix:
    """Binary ``matrix`` with row ``r``'s entries set to ``(1 / degree[r]) ** power``."""
    out = matrix.tocsr(copy=True)
    out.data[:] = 1.0
    counts = np.diff(out.indptr)
    out.data = np.repeat((1.0 / np.maximum(degree, 1.0)) ** power, counts)
    return out
