"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..dataset import Dataset
from .base import OnePassRecommender, ProgressCallback, check_state_tensors


class PopularityRecommender(OnePassRecommender):
    r"""Non-personalised popularity ranking.

    The score of item :math:`i` is the number of distinct training users who interacted with
    it, :math:`s_i = \sum_u x_{ui}`, the same for every user. Items without training
    interactions (cold items) score 0. It is the floor every personalised model must beat.
    """

    name = "pop"

    def __init__(self) -> None:
        super().__init__()
        self.item_counts: torch.Tensor | None = None

    def reset_parameters(self) -> None:
        """Forget the fitted counts."""
        self.item_counts = None

    def fit_bound(self, dataset: Dataset, on_progress: ProgressCallback | None) -> None:
        counts = np.asarray(self.train_matrix.sum(axis=0), dtype=np.float64).ravel()
        self.item_counts = torch.from_numpy(counts)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.item_counts is None:
            raise RuntimeError("PopularityRecommender is not fitted.")
        counts = self.item_counts.numpy()
        row = counts if items is None else counts[np.asarray(items, dtype=np.int64)]
        return np.broadcast_to(row, (len(users), len(row))).copy()

    def config(self) -> dict[str, Any]:
        return {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.item_counts is None:
            return {}
        return {"item_counts": self.item_counts}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        num_items = self.dataset.num_items if self.dataset is not None else None
        check_state_tensors(self.name, tensors, {"item_counts": (num_items,)})
        self.item_counts = tensors["item_counts"].detach().to("cpu", torch.float64).contiguous()
