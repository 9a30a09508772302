"""Sparse top-k item-item matrices shared by the neighbourhood models (RP3beta, ItemKNN), and
their common base class :class:`ItemWeightsRecommender`.

An item-item similarity is computed a block of rows at a time (dense ``[block, num_items]``,
never ``num_items x num_items`` nor users x items), each row keeps its ``k`` largest positive
entries, and the rows are assembled into a CSR matrix. Users are scored as
:math:`\\mathbf{x}_u \\mathbf{W}` with the sparse weights, in blocks of users.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from .base import OnePassRecommender, check_state_tensors

#: Bytes of the dense float64 similarity block computed at a time (rows x num_items x 8).
BLOCK_BYTES = 64 * 2**20


def top_k_per_row(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(rows, cols)`` of each row's ``k`` largest positive entries.

    Ties at the ``k``-th value keep the lower column index, so the choice is deterministic and
    independent of how rows are blocked. Zero and negative entries are never kept.

    Args:
        block (numpy.ndarray): ``[b, n]`` dense rows.
        k (int): Entries kept per row.

    Returns:
        ``(rows, cols)`` int64 arrays, sorted by row then column.
    """
    b, n = block.shape
    if k <= 0 or b == 0 or n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    positive = block > 0
    if k >= n:
        keep = positive
    else:
        kth = -np.partition(-block, k - 1, axis=1)[:, k - 1:k]  # k-th largest per row
        above = block > kth
        ties = block == kth
        room = k - above.sum(axis=1, keepdims=True)
        keep = (above | (ties & (np.cumsum(ties, axis=1) <= room))) & positive
    rows, cols = np.nonzero(keep)
    return rows.astype(np.int64), cols.astype(np.int64)


def sparse_top_k(
    similarity_rows: Callable[[np.ndarray], np.ndarray],
    num_items: int,
    k: int,
    block_bytes: int = BLOCK_BYTES,
) -> sp.csr_matrix:
    """Assemble a ``[num_items, num_items]`` CSR matrix of each row's top-``k`` entries.

    Args:
        similarity_rows (callable): Maps item indices ``rows`` to their dense similarity rows
            ``[len(rows), num_items]`` (the diagonal is cleared here).
        num_items (int): Catalogue size.
        k (int): Neighbours kept per row.
        block_bytes (int): Memory of one dense block. (default: 64 MiB)
    """
    per_block = max(1, block_bytes // (8 * max(num_items, 1)))
    all_rows, all_cols, all_values = [], [], []
    for start in range(0, num_items, per_block):
        rows = np.arange(start, min(start + per_block, num_items))
        block = np.asarray(similarity_rows(rows), dtype=np.float64)
        block[np.arange(len(rows)), rows] = 0.0
        r, c = top_k_per_row(block, k)
        all_rows.append(r + start)
        all_cols.append(c)
        all_values.append(block[r, c])
    rows = np.concatenate(all_rows) if all_rows else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(all_cols) if all_cols else np.zeros(0, dtype=np.int64)
    values = np.concatenate(all_values) if all_values else np.zeros(0)
    matrix = sp.csr_matrix((values.astype(np.float32), (rows, cols)),
                           shape=(num_items, num_items))
    matrix.sort_indices()
    return matrix


def score_with_item_weights(history: sp.csr_matrix, weights: sp.csr_matrix,
                            items: np.ndarray | None = None) -> np.ndarray:
    """Dense ``[users, items]`` scores :math:`\\mathbf{X}_{users} \\mathbf{W}_{:, items}`."""
    if items is not None:
        weights = weights[:, np.asarray(items, dtype=np.int64)]
    return np.asarray((history @ weights).toarray(), dtype=np.float32)


def weights_to_tensors(weights: sp.csr_matrix) -> dict[str, torch.Tensor]:
    """CSR weights as three tensors: ``weights_indptr``, ``weights_indices``, ``weights_data``."""
    return {"weights_indptr": torch.from_numpy(weights.indptr.astype(np.int64)),
            "weights_indices": torch.from_numpy(weights.indices.astype(np.int64)),
            "weights_data": torch.from_numpy(weights.data.astype(np.float32))}


def tensors_to_weights(model_name: str, tensors: dict[str, torch.Tensor],
                       num_items: int | None) -> sp.csr_matrix:
    """Inverse of :func:`weights_to_tensors`, strict about names, shapes and index ranges.

    Raises:
        ValueError: Missing or unexpected tensors, mismatched sizes, or indices out of range.
    """
    nnz = tensors["weights_indices"].shape[0] if "weights_indices" in tensors else None
    rows = None if num_items is None else num_items + 1
    check_state_tensors(model_name, tensors, {"weights_indptr": (rows,),
                                              "weights_indices": (nnz,),
                                              "weights_data": (nnz,)})
    indptr = tensors["weights_indptr"].to("cpu", torch.int64).numpy()
    indices = tensors["weights_indices"].to("cpu", torch.int64).numpy()
    data = tensors["weights_data"].detach().to("cpu", torch.float32).numpy()
    n = len(indptr) - 1
    if (n < 0 or indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0)
            or (len(indices) and (indices.min() < 0 or indices.max() >= n))):
        raise ValueError(f"{model_name}: the saved item-item weights are not a valid "
                         f"{n} x {n} sparse matrix.")
    return sp.csr_matrix((data.copy(), indices.copy(), indptr.copy()), shape=(n, n))


class ItemWeightsRecommender(OnePassRecommender):
    r"""A model that scores users as :math:`\mathbf{x}_u \mathbf{W}` with sparse item-item
    weights :attr:`weights` ``[num_items, num_items]`` (rows: history items, columns: target
    items). Scoring, saving and loading the weights are shared here; subclasses compute
    :attr:`weights` in :meth:`fit_bound`.
    """

    def reset_parameters(self) -> None:
        """Forget the fitted weights."""
        self.weights: sp.csr_matrix | None = None

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted.")
        history = self.train_matrix[np.asarray(users, dtype=np.int64)]
        return score_with_item_weights(history, self.weights, items)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.weights is None else weights_to_tensors(self.weights)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        num_items = self.dataset.num_items if self.dataset is not None else None
        self.weights = tensors_to_weights(self.name, tensors, num_items)
