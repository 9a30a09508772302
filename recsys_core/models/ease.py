"""EASE: a closed-form linear item-item autoencoder (Steck, WWW 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..dataset import ITEM_IDX, Dataset
from ..errors import TrainingError
from .base import OnePassRecommender, ProgressCallback, check_state_tensors
from .item_item import ease_weights

#: Bytes of memory per squared item count while fitting: the float64 Gram matrix and its
#: inverse (8 + 8 bytes) plus the float32 weights that are kept (4 bytes).
FIT_BYTES_PER_ITEM_PAIR = 20


class EASERecommender(OnePassRecommender):
    r"""Embarrassingly Shallow Autoencoder, fitted in closed form.

    With the binary user-item training matrix :math:`\mathbf{X}`, the item-item weights are

    .. math::
        \mathbf{P} = (\mathbf{X}^\top \mathbf{X} + \lambda \mathbf{I})^{-1}, \qquad
        B_{ij} = -P_{ij} / P_{jj}, \quad B_{jj} = 0,

    and a user's scores are :math:`\mathbf{x}_u \mathbf{B}`. Only items with at least one
    training interaction take part (the others, cold items, score 0), so the dense
    :math:`n \times n` matrix is over interacted items.

    Memory bound: fitting holds about ``20 * n**2`` bytes (n = items with interactions): about
    0.5 GB at 5,000 items, 2 GB at 10,000 and 8 GB at 20,000; the fitted model keeps
    ``4 * n**2`` bytes. Above ``max_items`` the fit is refused with a :class:`TrainingError`
    instead of exhausting memory (the dense Gram matrix is never built); use ``"lightgcn"``,
    ``"mf"`` or the sparse ``"itemknn"`` / ``"rp3beta"`` (blockwise top-k weights) for larger
    catalogues.

    Args:
        reg_lambda (float): L2 regularisation :math:`\lambda` on the weights; larger values
            favour popular items less sharply. (default: :obj:`500.0`)
        max_items (int): Largest number of interacted items to fit. (default: :obj:`20000`)
        device (str, optional): Where to invert the Gram matrix (``"auto"``, ``"cpu"``,
            ``"cuda"``); scoring always runs on CPU. (default: :obj:`"cpu"`)
    """

    name = "ease"

    def __init__(self, reg_lambda: float = 500.0, max_items: int = 20_000,
                 device: str | None = "cpu") -> None:
        super().__init__()
        if reg_lambda <= 0:
            raise ValueError(f"reg_lambda must be positive, got {reg_lambda}.")
        self.reg_lambda = float(reg_lambda)
        self.max_items = int(max_items)
        self.device = device
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Forget the fitted weights."""
        self.active_items: torch.Tensor | None = None  # [n] item indices with interactions
        self.weights: torch.Tensor | None = None  # [n, n] float32 item-item weights
        self._active_pos: np.ndarray | None = None  # item index -> row in weights, -1 if cold
        self._history = None  # sparse [num_users, n] training rows over active items

    def check_fit(self, dataset: Dataset, train: pd.DataFrame) -> None:
        self._check_items(int(train[ITEM_IDX].nunique()))

    def _check_items(self, n: int) -> None:
        """Refuse ``n`` interacted items past :attr:`max_items` (the dense matrix's bound)."""
        if n > self.max_items:
            gigabytes = FIT_BYTES_PER_ITEM_PAIR * n * n / 1e9
            raise TrainingError(
                f"EASE keeps a dense item-item matrix: this data has {n:,} items with "
                f"interactions, above max_items={self.max_items:,} (fitting would need about "
                f"{gigabytes:.0f} GB of memory). Use the 'lightgcn' or 'mf' model, or a sparse "
                f"item-item model ('itemknn', 'rp3beta'; the flagship's item-item path covers "
                f"items past its dense head with sparse columns), for large catalogues, or raise "
                f"max_items if this machine has the memory.")

    def fit_bound(self, dataset: Dataset, on_progress: ProgressCallback | None) -> None:
        counts = np.asarray(self.train_matrix.sum(axis=0)).ravel()
        active = np.flatnonzero(counts > 0).astype(np.int64)
        self._check_items(len(active))
        if on_progress is not None:
            on_progress({"stage": "gram", "fraction": 0.1})
        self.weights = ease_weights(self.train_matrix[:, active], self.reg_lambda, self.device)
        self.active_items = torch.from_numpy(active)
        self._prepare()

    def _prepare(self) -> None:
        active = self.active_items.numpy()
        self._active_pos = np.full(self.dataset.num_items, -1, dtype=np.int64)
        self._active_pos[active] = np.arange(len(active))
        self._history = self.train_matrix[:, active].tocsr()

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("EASERecommender is not fitted.")
        users = np.asarray(users, dtype=np.int64)
        history = self._history[users]
        weights = self.weights.numpy()
        item_idx = (np.arange(self.dataset.num_items) if items is None
                    else np.asarray(items, dtype=np.int64))
        pos = self._active_pos[item_idx]
        out = np.zeros((len(users), len(item_idx)), dtype=np.float32)
        known = pos >= 0
        if known.all() and np.array_equal(pos, np.arange(len(pos))):
            out[:] = history @ weights  # every item active and in order: no column gather
        elif known.any():
            out[:, known] = history @ weights[:, pos[known]]
        return out

    def config(self) -> dict[str, Any]:
        return {"reg_lambda": self.reg_lambda, "max_items": self.max_items, "device": self.device}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.weights is None:
            return {}
        return {"active_items": self.active_items, "weights": self.weights}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        n = tensors["active_items"].shape[0] if "active_items" in tensors else None
        check_state_tensors(self.name, tensors, {"active_items": (n,), "weights": (n, n)})
        active = tensors["active_items"].to("cpu", torch.int64).contiguous()
        if self.dataset is not None and len(active) and (
                int(active.min()) < 0 or int(active.max()) >= self.dataset.num_items):
            raise ValueError("ease: 'active_items' holds indices outside the item range.")
        self.active_items = active
        self.weights = tensors["weights"].detach().to("cpu", torch.float32).contiguous()
        if self.dataset is not None:
            self._prepare()
