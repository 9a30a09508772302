"""ItemKNN: item-based collaborative filtering with shrunk cosine similarity (Sarwar et al., WWW
2001; the shrinkage of Koren, KDD 2008)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..dataset import Dataset
from .base import ProgressCallback
from .neighbours import ItemWeightsRecommender, sparse_top_k


class ItemKNNRecommender(ItemWeightsRecommender):
    r"""Each candidate item is scored by its most similar items among the user's history.

    With the binary user-item training matrix :math:`\mathbf{X}` and its item columns
    :math:`\mathbf{x}_i`, the similarity is the cosine shrunk towards 0 for items with few
    co-interactions,

    .. math::
        s_{ij} = \frac{\mathbf{x}_i^\top \mathbf{x}_j}
                      {\|\mathbf{x}_i\| \, \|\mathbf{x}_j\| + h}, \qquad s_{jj} = 0,

    and each target item :math:`j` keeps its ``neighbours`` most similar items
    :math:`\mathcal{N}_k(j)` (a sparse top-k matrix, computed a block of items at a time).
    A user's score is :math:`\hat{r}_{uj} = \sum_{i \in \mathcal{N}_k(j)} x_{ui} s_{ij}`, i.e.
    :math:`\mathbf{x}_u \mathbf{W}` with :math:`W_{ij} = s_{ij}` for
    :math:`i \in \mathcal{N}_k(j)`. Items without training interactions score 0.

    Args:
        neighbours (int): Most similar items kept per target item. (default: :obj:`100`)
        shrink (float): Shrinkage :math:`h` added to the cosine's denominator.
            (default: :obj:`10.0`)
    """

    name = "itemknn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        super().__init__()
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, got {neighbours}.")
        if shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}.")
        self.neighbours = int(neighbours)
        self.shrink = float(shrink)
        self.reset_parameters()

    def fit_bound(self, dataset: Dataset, on_progress: ProgressCallback | None) -> None:
        x = self.train_matrix.astype(np.float64)
        items_by_user = x.T.tocsr()  # [items, users]
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())

        def similarity_rows(rows: np.ndarray) -> np.ndarray:
            overlap = (items_by_user[rows] @ x).toarray()  # [b, items] co-interaction counts
            denominator = np.outer(norms[rows], norms) + self.shrink
            return np.divide(overlap, denominator, out=np.zeros_like(overlap),
                             where=overlap > 0)

        # Rows of the top-k matrix are target items; transposed, column j holds N_k(j).
        neighbours_of_target = sparse_top_k(similarity_rows, dataset.num_items, self.neighbours)
        self.weights = neighbours_of_target.T.tocsr()
        self.weights.sort_indices()

    def config(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "shrink": self.shrink}
