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

An item outside the weights (no interactions yet, or beyond ``max_items``) can get a column
through its text: the similarity-weighted mean of the columns of its most similar covered
items (:meth:`ItemItemPath.text_neighbours`), times a factor also chosen on validation. Items
that never had an interaction cannot be validation hits, so where a catalogue holds many of
them validation tends to switch this bridge off; it pays where the tail beyond ``max_items``
(or items seen only in validation) can be hits.

Large catalogues: the dense weights stop at ``max_items`` (``20 * n**2`` bytes to fit). Every
other item with interactions can get a *sparse* column instead (:meth:`ItemItemPath.with_tail`,
:func:`sparse_ease_columns`): the EASE column restricted to the item's ``neighbours`` most
co-occurring items, i.e. the ridge regression of the item's users on those items' users with
the same :math:`\lambda`, solved a block of items at a time. Memory is bounded by one block
and the stored ``[tail, neighbours]`` indices and weights, so catalogues of 100k+ items are
covered; the term stays linear in the history, so explanations stay exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from ..dataset import USER_IDX
from ..device import pick_device
from ..tensor_metrics import ndcg_at_k
from .base import ProgressCallback, check_state_tensors, interaction_matrix

#: Regularisation values tried on validation (a 1-2-5 series around the published range).
DEFAULT_REG_LAMBDAS: tuple[float, ...] = (20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
#: Head items whose columns make up the column of an item outside the head (from its text).
DEFAULT_BRIDGE_K = 20
#: Neighbours of each sparse (tail) column beyond the dense head (see :meth:`ItemItemPath.with_tail`).
DEFAULT_TAIL_NEIGHBOURS = 64
#: Tail items solved per block by :func:`sparse_ease_columns` (fewer on large catalogues).
TAIL_BLOCK_ITEMS = 256
#: Most distinct neighbours in one block's dense Gram matrix (float64: 128 MiB); a block
#: whose items have more is split.
MAX_GRAM_ITEMS = 4096
#: Head size on which :func:`select_item_item` screens its lambda grid when the head is larger
#: (each lambda is one Cholesky factorisation, cubic in the head: at 5,000 items about 7 s on
#: one core, at 2,500 about 1 s); the chosen lambda is then fitted on the full head.
DEFAULT_SCREEN_ITEMS = 2500
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


def covered_items(matrix: sp.spmatrix, max_items: int) -> np.ndarray:
    """The items an item-item path covers: sorted indices of the (at most ``max_items``) items
    with the most interactions; items without interactions are never included. Ties go to the
    lower index."""
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    active = np.flatnonzero(counts > 0)
    if len(active) > max_items:
        order = np.lexsort((active, -counts[active]))  # most interactions first, then index
        active = np.sort(active[order[:max_items]])
    return active.astype(np.int64)


def sparse_ease_columns(
    matrix: sp.spmatrix,
    columns: np.ndarray,
    reg_lambda: float,
    neighbours: int = DEFAULT_TAIL_NEIGHBOURS,
    block_items: int = TAIL_BLOCK_ITEMS,
    on_progress: ProgressCallback | None = None,
) -> tuple[Tensor, Tensor]:
    r"""EASE columns restricted to each item's most co-occurring items, blockwise.

    The EASE column of item :math:`i` is the ridge regression of its users on every other
    item's users, :math:`\mathbf{b}_i = (\mathbf{X}_{-i}^\top \mathbf{X}_{-i} + \lambda
    \mathbf{I})^{-1} \mathbf{X}_{-i}^\top \mathbf{x}_i`. Here the regressors are the
    ``neighbours`` items :math:`\mathcal{N}(i)` that share the most users with :math:`i`
    (positive co-occurrence only; ties to the lower index), so each column is a
    ``k x k`` solve. With every co-occurring item as a neighbour it is the EASE column itself.
    Items are processed ``block_items`` at a time: one ``[block, items]`` co-occurrence block
    (at most 64 MiB) and the Gram matrix of the block's neighbours (at most
    :data:`MAX_GRAM_ITEMS` squared) are held, never ``items x items``.

    Args:
        matrix (scipy.sparse matrix): Binary ``[users, items]`` interactions.
        columns (numpy.ndarray): ``[m]`` item indices to fit columns for.
        reg_lambda (float): :math:`\lambda > 0`.
        neighbours (int): Regressors per column. (default: :data:`DEFAULT_TAIL_NEIGHBOURS`)
        block_items (int): Columns solved per block. (default: :data:`TAIL_BLOCK_ITEMS`)
        on_progress (callable, optional): Called with ``stage="item-item tail"`` and
            ``fraction`` after each block.

    Returns:
        ``(neighbours [m, k], weights [m, k])``: item indices and float32 weights :math:`B_{ji}`
        (row ``r`` is column ``columns[r]``); rows with fewer co-occurring items are padded with
        the item itself at weight 0.
    """
    from .neighbours import BLOCK_BYTES, top_k_per_row

    if reg_lambda <= 0:
        raise ValueError(f"reg_lambda must be positive, got {reg_lambda}.")
    x = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    x.data[:] = 1.0
    by_item = x.T.tocsr()  # [items, users]
    columns = np.asarray(columns, dtype=np.int64)
    k = max(1, min(int(neighbours), x.shape[1] - 1))
    out_neighbours = np.repeat(columns[:, None], k, axis=1)
    out_weights = np.zeros((len(columns), k), dtype=np.float32)
    # One [block, items] float64 co-occurrence block of at most BLOCK_BYTES.
    block_items = max(1, min(int(block_items), BLOCK_BYTES // (8 * max(x.shape[1], 1))))

    def solve(start: int, cols: np.ndarray) -> None:
        co = (by_item[cols] @ x).toarray()  # [b, items] users shared with each item
        co[np.arange(len(cols)), cols] = 0.0
        rows, nbr = top_k_per_row(co, k)
        if not len(rows):
            return
        union, local = np.unique(nbr, return_inverse=True)
        if len(union) > MAX_GRAM_ITEMS and len(cols) > 1:  # keep the Gram block bounded
            half = len(cols) // 2
            solve(start, cols[:half])
            solve(start + half, cols[half:])
            return
        sub = by_item[union]
        gram = torch.from_numpy((sub @ sub.T).toarray())  # [u, u] among the neighbours
        counts = np.bincount(rows, minlength=len(cols))
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        index = np.zeros((len(cols), k), dtype=np.int64)
        present = np.zeros((len(cols), k), dtype=bool)
        index[rows, slot], present[rows, slot] = local, True
        idx = torch.from_numpy(index)
        mask = torch.from_numpy(present).double()
        a = gram[idx.unsqueeze(2), idx.unsqueeze(1)] * mask.unsqueeze(2) * mask.unsqueeze(1)
        a.diagonal(dim1=1, dim2=2).add_(float(reg_lambda))  # padded slots: lambda * I
        rhs = np.zeros((len(cols), k))
        rhs[rows, slot] = co[rows, nbr]
        solution = torch.cholesky_solve(torch.from_numpy(rhs).unsqueeze(2),
                                        torch.linalg.cholesky(a)).squeeze(2) * mask
        out_neighbours[start + rows, slot] = nbr
        out_weights[start:start + len(cols)] = solution.numpy().astype(np.float32)

    for start in range(0, len(columns), block_items):
        solve(start, columns[start:start + block_items])
        if on_progress is not None:
            on_progress({"stage": "item-item tail",
                         "fraction": min(start + block_items, len(columns)) / len(columns)})
    return torch.from_numpy(out_neighbours), torch.from_numpy(out_weights)


class ItemItemPath:
    r"""The term :math:`\alpha\, \mathbf{x}_u \mathbf{B}` over a set of (head) items.

    Items outside ``items`` (cold items without interactions, or the tail beyond
    ``max_items``) get their column from their text when ``text`` is given: the
    similarity-weighted mean of the columns of their ``bridge_k`` most similar head items
    (cosine of the text embeddings), times :attr:`bridge_scale`, so "users whose history
    points at items like this one" can carry over to an item nobody has interacted with yet.
    Without text (or with ``bridge_scale`` 0) they score 0.

    Args:
        num_items (int): Catalogue size.
        items (Tensor): ``[n]`` sorted item indices the weights cover.
        weights (Tensor): ``[n, n]`` EASE weights over those items.
        scale (float): :math:`\alpha`, in the units of the graph score.
        reg_lambda (float): The :math:`\lambda` the weights were fitted with.
        bridge_items (Tensor, optional): ``[m]`` items outside ``items`` with a text column.
        bridge_neighbours (Tensor, optional): ``[m, k]`` their neighbours (rows of
            ``weights``).
        bridge_weights (Tensor, optional): ``[m, k]`` neighbour weights (each row sums to 1).
        bridge_scale (float): Factor on the bridged columns (chosen on validation: how much a
            text-bridged item's term counts next to a covered item's). (default: :obj:`1.0`)
        tail_items (Tensor, optional): ``[t]`` sorted items outside ``items`` with a sparse
            column (see :meth:`with_tail`). (default: none)
        tail_neighbours (Tensor, optional): ``[t, k]`` the history items (item indices) each
            sparse column reads. (default: none)
        tail_weights (Tensor, optional): ``[t, k]`` their weights :math:`B_{ji}` (multiplied by
            :attr:`scale` like the dense ones). (default: none)
    """

    def __init__(self, num_items: int, items: Tensor, weights: Tensor, scale: float,
                 reg_lambda: float, bridge_items: Tensor | None = None,
                 bridge_neighbours: Tensor | None = None,
                 bridge_weights: Tensor | None = None, bridge_scale: float = 1.0,
                 tail_items: Tensor | None = None, tail_neighbours: Tensor | None = None,
                 tail_weights: Tensor | None = None) -> None:
        self.num_items = int(num_items)
        self.items = items.to("cpu", torch.int64).contiguous()
        self.weights = weights.to("cpu", torch.float32).contiguous()
        self.scale = float(scale)
        self.reg_lambda = float(reg_lambda)
        self.bridge_items = (torch.zeros(0, dtype=torch.int64) if bridge_items is None
                             else bridge_items.to("cpu", torch.int64).contiguous())
        m = len(self.bridge_items)
        self.bridge_neighbours = (torch.zeros(m, 0, dtype=torch.int64)
                                  if bridge_neighbours is None
                                  else bridge_neighbours.to("cpu", torch.int64).contiguous())
        self.bridge_weights = (torch.zeros(m, 0) if bridge_weights is None
                               else bridge_weights.to("cpu", torch.float32).contiguous())
        self.position = np.full(self.num_items, -1, dtype=np.int64)
        self.position[self.items.numpy()] = np.arange(len(self.items))
        self.bridge_position = np.full(self.num_items, -1, dtype=np.int64)
        self.bridge_position[self.bridge_items.numpy()] = np.arange(m)
        self.bridge_scale = float(bridge_scale)
        self.tail_items = (torch.zeros(0, dtype=torch.int64) if tail_items is None
                           else tail_items.to("cpu", torch.int64).contiguous())
        t = len(self.tail_items)
        self.tail_neighbours = (torch.zeros(t, 0, dtype=torch.int64) if tail_neighbours is None
                                else tail_neighbours.to("cpu", torch.int64).contiguous())
        self.tail_weights = (torch.zeros(t, 0) if tail_weights is None
                             else tail_weights.to("cpu", torch.float32).contiguous())
        self.tail_position = np.full(self.num_items, -1, dtype=np.int64)
        self.tail_position[self.tail_items.numpy()] = np.arange(t)
        # [num_items, t] CSR: row j (history item), column r (tail item r): B_j,tail[r].
        k = self.tail_neighbours.size(1) if t else 0
        self._tail_matrix = sp.csr_matrix(
            (self.tail_weights.numpy().ravel(),
             (self.tail_neighbours.numpy().ravel(), np.repeat(np.arange(t), k))),
            shape=(self.num_items, t))

    @classmethod
    def fit(cls, matrix: sp.spmatrix, reg_lambda: float, max_items: int, scale: float = 1.0,
            device: str | None = "cpu", text: Tensor | None = None,
            bridge_k: int = DEFAULT_BRIDGE_K, bridge_scale: float = 1.0,
            tail_neighbours: int = 0) -> ItemItemPath:
        """Fit the weights on a binary ``[users, items]`` matrix over its head items; with
        ``tail_neighbours > 0`` every other item with interactions gets a sparse column
        (:meth:`with_tail`); with ``text`` (``[items, t]`` embeddings) the items left over
        are bridged to their head neighbours."""
        items = covered_items(matrix, max_items)
        weights = ease_weights(sp.csr_matrix(matrix)[:, items], reg_lambda, device)
        path = cls(matrix.shape[1], torch.from_numpy(items), weights, scale, reg_lambda)
        if tail_neighbours > 0:
            path = path.with_tail(matrix, reg_lambda, neighbours=tail_neighbours)
        if text is not None and bridge_k > 0 and len(items):
            others = torch.from_numpy(np.setdiff1d(np.arange(matrix.shape[1]),
                                                   path.covered_items()))
            neighbours, weights = path.text_neighbours(text[others], text, bridge_k)
            path = cls(matrix.shape[1], path.items, path.weights, scale, reg_lambda,
                       others, neighbours, weights, bridge_scale, path.tail_items,
                       path.tail_neighbours, path.tail_weights)
        return path

    def covered_items(self) -> np.ndarray:
        """Sorted items with a column of their own (dense head and sparse tail)."""
        return np.union1d(self.items.numpy(), self.tail_items.numpy())

    def with_tail(self, matrix: sp.spmatrix, reg_lambda: float | None = None,
                  factor: float = 1.0, neighbours: int = DEFAULT_TAIL_NEIGHBOURS,
                  on_progress: ProgressCallback | None = None) -> ItemItemPath:
        r"""This path plus a sparse column for every item with interactions outside the head.

        Each such column is :func:`sparse_ease_columns`' restricted EASE column (the same
        :math:`\lambda` as the head), times ``factor`` (the head's weights are stored with
        their factor already applied when the path is built from blended weights), so tail
        items score on the same scale as head items. Those items leave the text bridge.

        Args:
            matrix (scipy.sparse matrix): Binary ``[users, items]`` training interactions.
            reg_lambda (float, optional): :math:`\lambda`. (default: :attr:`reg_lambda`)
            factor (float): Multiplies the tail weights. (default: :obj:`1.0`)
            neighbours (int): Regressors per tail column.
                (default: :data:`DEFAULT_TAIL_NEIGHBOURS`)
            on_progress (callable, optional): Progress per block.
        """
        reg_lambda = self.reg_lambda if reg_lambda is None else float(reg_lambda)
        counts = np.diff(sp.csc_matrix(matrix).indptr)
        tail = np.setdiff1d(np.flatnonzero(counts > 0), self.items.numpy()).astype(np.int64)
        if not len(tail) or neighbours <= 0:
            return self
        nbr, weights = sparse_ease_columns(matrix, tail, reg_lambda, neighbours,
                                           on_progress=on_progress)
        keep = ~np.isin(self.bridge_items.numpy(), tail)
        rows = torch.from_numpy(np.flatnonzero(keep))
        return type(self)(self.num_items, self.items, self.weights, self.scale,
                          self.reg_lambda, self.bridge_items[rows],
                          self.bridge_neighbours[rows], self.bridge_weights[rows],
                          self.bridge_scale, torch.from_numpy(tail), nbr,
                          weights * float(factor))

    def text_neighbours(self, text: Tensor, catalogue_text: Tensor,
                        k: int = DEFAULT_BRIDGE_K) -> tuple[Tensor, Tensor]:
        """``(neighbours [n, k], weights [n, k])``: for each row of ``text``, its ``k`` most
        similar head items (positions in :attr:`weights`, by cosine against
        ``catalogue_text[items]``) with their similarities, clipped at 0 and normalised
        to sum 1 (uniform when none is positive)."""
        head = F.normalize(catalogue_text[self.items].float(), dim=1)
        query = F.normalize(text.float(), dim=1)
        k = min(int(k), head.size(0))
        parts = [(query[start:start + 4096] @ head.T).topk(k, dim=1)  # bounded memory
                 for start in range(0, query.size(0), 4096)]
        values = torch.cat([p.values for p in parts]) if parts else torch.zeros(0, k)
        neighbours = (torch.cat([p.indices for p in parts]) if parts
                      else torch.zeros(0, k, dtype=torch.int64))
        values = values.clamp(min=0.0)
        total = values.sum(1, keepdim=True)
        weights = torch.where(total > 0, values / total.clamp(min=1e-12),
                              torch.full_like(values, 1.0 / max(k, 1)))
        return neighbours, weights

    def _head_scores(self, history: sp.spmatrix, columns: np.ndarray) -> np.ndarray:
        history = sp.csr_matrix(history)[:, self.items.numpy()]
        weights = self.weights.numpy()
        if not (len(columns) == weights.shape[1]
                and np.array_equal(columns, np.arange(len(columns)))):
            weights = weights[:, columns]  # else every column in order: no copy
        return np.asarray(history @ weights, dtype=np.float32)

    def _tail_scores(self, history: sp.spmatrix, rows: np.ndarray) -> np.ndarray:
        """``[history rows, len(rows)]`` sparse-column terms of tail positions ``rows``."""
        matrix = self._tail_matrix
        if not (len(rows) == matrix.shape[1] and np.array_equal(rows, np.arange(len(rows)))):
            matrix = matrix[:, rows]
        return np.asarray((sp.csr_matrix(history) @ matrix).toarray(), dtype=np.float32)

    def bridged_scores(self, history: sp.spmatrix, neighbours: Tensor,
                       weights: Tensor) -> np.ndarray:
        """``[rows, n]`` term of items given by head ``neighbours`` and ``weights`` (see
        :meth:`text_neighbours`), already multiplied by :attr:`scale` and
        :attr:`bridge_scale`."""
        if neighbours.numel() == 0 or self.bridge_scale == 0:
            return np.zeros((history.shape[0], neighbours.size(0)), dtype=np.float32)
        count, k = neighbours.shape
        needed, inverse = np.unique(neighbours.numpy(), return_inverse=True)
        # The mix as a sparse [count, needed] matrix (k weights per row): memory is the
        # [rows, needed] head block and the output, not a [rows, count, k] gather.
        mix = sp.csr_matrix((weights.numpy().astype(np.float32).ravel(),
                             (np.repeat(np.arange(count), k), inverse.ravel())),
                            shape=(count, len(needed)))
        block = self._head_scores(history, needed)
        return np.ascontiguousarray((mix @ block.T).T, dtype=np.float32) * np.float32(
            self.scale * self.bridge_scale)

    def scores(self, history: sp.spmatrix, items: np.ndarray | None = None) -> np.ndarray:
        """``[rows, len(items)]`` term for binary history rows ``[rows, num_items]``
        (all items when ``items`` is ``None``), already multiplied by :attr:`scale`."""
        item_idx = np.arange(self.num_items) if items is None else np.asarray(items, np.int64)
        pos, bridged = self.position[item_idx], self.bridge_position[item_idx]
        out = np.zeros((history.shape[0], len(item_idx)), dtype=np.float32)
        known = pos >= 0
        if known.any():
            out[:, known] = self._head_scores(history, pos[known]) * np.float32(self.scale)
        tail = self.tail_position[item_idx]
        sparse_col = tail >= 0
        if sparse_col.any():
            out[:, sparse_col] = self._tail_scores(history, tail[sparse_col]) * np.float32(
                self.scale)
        via_text = bridged >= 0
        if via_text.any() and self.bridge_scale != 0:
            rows = torch.from_numpy(bridged[via_text])
            out[:, via_text] = self.bridged_scores(history, self.bridge_neighbours[rows],
                                                   self.bridge_weights[rows])
        return out

    def pair_weights(self, history_items: Tensor, items: Tensor) -> Tensor:
        r"""``[len(history_items), len(items)]`` of :math:`\alpha B_{ji}` (the sparse column of
        a tail item, a text-bridged item's column for other items outside the head; 0 where
        there is none): the contribution of each history edge to each item's score."""
        rows = torch.from_numpy(self.position[history_items.numpy()])
        out = torch.zeros(rows.numel(), items.numel())
        tail = self.tail_position[items.numpy()]
        t_ok = np.flatnonzero(tail >= 0)
        if len(t_ok):  # sparse columns read any history item
            block = self._tail_matrix[history_items.numpy()][:, tail[t_ok]].toarray()
            out[:, torch.from_numpy(t_ok)] = torch.from_numpy(block.astype(np.float32)) * \
                self.scale
        r_ok = rows >= 0
        if not r_ok.any():
            return out
        weights = self.weights[rows[r_ok]]  # [history in head, n_head]
        cols = torch.from_numpy(self.position[items.numpy()])
        c_ok = cols >= 0
        if c_ok.any():
            out[r_ok.nonzero().view(-1, 1), c_ok.nonzero().view(1, -1)] = (
                weights[:, cols[c_ok]] * self.scale)
        bridged = torch.from_numpy(self.bridge_position[items.numpy()])
        b_ok = bridged >= 0
        if b_ok.any() and self.bridge_scale != 0:
            neighbours = self.bridge_neighbours[bridged[b_ok]]  # [b, k]
            mix = (weights[:, neighbours] * self.bridge_weights[bridged[b_ok]]).sum(-1)
            out[r_ok.nonzero().view(-1, 1), b_ok.nonzero().view(1, -1)] = (
                mix * self.scale * self.bridge_scale)
        return out

    def state_tensors(self, prefix: str = "item_item.") -> dict[str, Tensor]:
        return {f"{prefix}items": self.items, f"{prefix}weights": self.weights,
                f"{prefix}scale": torch.tensor([self.scale], dtype=torch.float64),
                f"{prefix}reg_lambda": torch.tensor([self.reg_lambda], dtype=torch.float64),
                f"{prefix}bridge_items": self.bridge_items,
                f"{prefix}bridge_neighbours": self.bridge_neighbours,
                f"{prefix}bridge_weights": self.bridge_weights,
                f"{prefix}bridge_scale": torch.tensor([self.bridge_scale], dtype=torch.float64),
                **({f"{prefix}tail_items": self.tail_items,
                    f"{prefix}tail_neighbours": self.tail_neighbours,
                    f"{prefix}tail_weights": self.tail_weights}
                   if len(self.tail_items) else {})}

    @classmethod
    def from_state_tensors(cls, tensors: dict[str, Tensor], num_items: int,
                           prefix: str = "item_item.") -> ItemItemPath:
        """Inverse of :meth:`state_tensors` (strict about names, shapes and index ranges).

        The sparse tail's three tensors are optional (runs saved before it existed, or a
        path without a tail), but all or none must be present."""
        n = tensors[f"{prefix}items"].shape[0] if f"{prefix}items" in tensors else None
        m, k = (tuple(tensors[f"{prefix}bridge_neighbours"].shape)
                if f"{prefix}bridge_neighbours" in tensors else (None, None))
        tail_keys = [f"{prefix}tail_items", f"{prefix}tail_neighbours", f"{prefix}tail_weights"]
        has_tail = any(key in tensors for key in tail_keys)
        t, tk = (tuple(tensors[f"{prefix}tail_neighbours"].shape)
                 if f"{prefix}tail_neighbours" in tensors else (None, None))
        check_state_tensors("gnn-llm item-item path", tensors, {
            f"{prefix}items": (n,), f"{prefix}weights": (n, n), f"{prefix}scale": (1,),
            f"{prefix}reg_lambda": (1,), f"{prefix}bridge_items": (m,),
            f"{prefix}bridge_neighbours": (m, k), f"{prefix}bridge_weights": (m, k),
            f"{prefix}bridge_scale": (1,),
            **({tail_keys[0]: (t,), tail_keys[1]: (t, tk), tail_keys[2]: (t, tk)}
               if has_tail else {})})
        items = tensors[f"{prefix}items"].to(torch.int64)
        bridge = tensors[f"{prefix}bridge_items"].to(torch.int64)
        neighbours = tensors[f"{prefix}bridge_neighbours"].to(torch.int64)
        tail = tensors[tail_keys[0]].to(torch.int64) if has_tail else None
        tail_neighbours = tensors[tail_keys[1]].to(torch.int64) if has_tail else None
        checks = [("items", items, num_items), ("bridge_items", bridge, num_items),
                  ("bridge_neighbours", neighbours.view(-1), len(items))]
        if has_tail:
            checks += [("tail_items", tail, num_items),
                       ("tail_neighbours", tail_neighbours.view(-1), num_items)]
        for name, index, size in checks:
            if len(index) and (int(index.min()) < 0 or int(index.max()) >= size):
                raise ValueError(f"gnn-llm item-item path: '{name}' holds indices outside "
                                 f"[0, {size}).")
        for name, index in (("items", items), ("tail_items", tail)):
            if index is not None and len(index) and bool((index[1:] <= index[:-1]).any()):
                raise ValueError(f"gnn-llm item-item path: '{name}' must be sorted and "
                                 "distinct.")
        if bool(torch.isin(bridge, items).any()):
            raise ValueError("gnn-llm item-item path: an item is both in the head and bridged.")
        if has_tail and bool((torch.isin(tail, items) | torch.isin(tail, bridge)).any()):
            raise ValueError("gnn-llm item-item path: a tail item is also in the head or "
                             "bridged.")
        return cls(num_items, items, tensors[f"{prefix}weights"],
                   float(tensors[f"{prefix}scale"][0]), float(tensors[f"{prefix}reg_lambda"][0]),
                   bridge, neighbours, tensors[f"{prefix}bridge_weights"],
                   float(tensors[f"{prefix}bridge_scale"][0]), tail, tail_neighbours,
                   tensors[tail_keys[2]] if has_tail else None)


@dataclass
class ItemItemChoice:
    """What :func:`select_item_item` chose and saw.

    Attributes:
        reg_lambda (float): Chosen :math:`\\lambda`.
        relative_weight (float): Chosen weight relative to the spread ratio (0: path off).
        valid_ndcg_graph (float): Validation NDCG@K of the graph score alone.
        valid_ndcg (float): Validation NDCG@K with the chosen path.
        bridge_scale (float): Chosen factor on text-bridged columns (see
            :class:`ItemItemPath`).
        grid (list[dict]): Every (``reg_lambda``, ``relative_weight``, ``head_items``,
            ``valid_ndcg``) tried on the full head (covered items only), then every
            ``bridge_scale``.
        screen_grid (list[dict]): The same cells of the lambda grid screened on a smaller
            head (``head_items``), where the head was too large to fit every lambda on it
            (empty otherwise; see :func:`select_item_item`).
    """

    reg_lambda: float
    relative_weight: float
    valid_ndcg_graph: float
    valid_ndcg: float
    bridge_scale: float = 1.0
    grid: list[dict[str, float]] = field(default_factory=list)
    screen_grid: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"reg_lambda": self.reg_lambda, "relative_weight": self.relative_weight,
                "valid_ndcg_graph": self.valid_ndcg_graph, "valid_ndcg": self.valid_ndcg,
                "bridge_scale": self.bridge_scale}


#: Factors tried on validation for text-bridged columns (ties keep the larger one).
BRIDGE_SCALES: tuple[float, ...] = (1.0, 0.5, 0.25, 0.0)


def spread_ratio(graph_rows: Tensor, path_rows: Tensor) -> float:
    """``std(graph scores) / std(item-item term)`` over the given rows (0 when the term is
    constant): the unit that makes relative weights comparable across data sets."""
    spread = float(path_rows.double().std())
    return float(graph_rows.double().std()) / spread if spread > 0 else 0.0


#: Rows of a ``[users, items]`` matrix converted to float64 at a time by :func:`masked_std`.
STD_BLOCK_ROWS = 64


def masked_std(values: Tensor, excluded: Tensor) -> float:
    """Sample standard deviation of ``values[~excluded]`` (float64 accumulation), as
    ``values[~excluded].double().std()`` but without gathering the kept entries into a new
    tensor: rows go through a block at a time, and the sums are taken around a shift (the
    first kept block's mean), so they do not cancel. ``-inf`` or ``nan`` at excluded
    positions are ignored; 0 when fewer than two entries are kept.

    Args:
        values (Tensor): ``[rows, cols]`` values.
        excluded (Tensor): ``[rows, cols]`` boolean, ``True`` where a value is left out.
    """
    count, shift, total, squares = 0, None, 0.0, 0.0
    for start in range(0, values.size(0), STD_BLOCK_ROWS):
        keep = ~excluded[start:start + STD_BLOCK_ROWS]
        kept = int(keep.sum())
        if not kept:
            continue
        block = values[start:start + STD_BLOCK_ROWS].double()
        if shift is None:
            shift = float(block[keep].mean())
        block = block.sub_(shift).masked_fill_(~keep, 0.0)
        count += kept
        total += float(block.sum())
        squares += float(torch.dot(block.view(-1), block.view(-1)))
    if count < 2:
        return 0.0
    return max((squares - total * total / count) / (count - 1), 0.0) ** 0.5


def _users_for_selection(valid: pd.DataFrame, max_users: int, seed: int) -> np.ndarray:
    users = np.unique(valid[USER_IDX].to_numpy(np.int64))
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


#: A path switches on only when it lifts validation NDCG@K by at least this share over the
#: score without it (the same rule for the graph filter, the item-item path and the text
#: bridge): a smaller gain is within the noise of one validation split.
DEFAULT_MARGIN = 0.01


class ValidationRanking:
    """Validation users' histories, targets and base scores, for choosing additive terms by
    NDCG@K (:mod:`recsys_core.tensor_metrics`).

    Args:
        graph_scores (callable): User indices -> ``[len(users), num_items]`` base scores.
        train (pandas.DataFrame): Interactions the base model and the terms see.
        valid (pandas.DataFrame): Held-out interactions.
        num_users (int): Number of users.
        num_items (int): Number of items.
        k (int): Cut-off. (default: :obj:`20`)
        max_users (int): Validation users sampled. (default: :obj:`2000`)
        seed (int): Seed of that sample. (default: :obj:`0`)
    """

    def __init__(self, graph_scores: Callable[[np.ndarray], Tensor], train: pd.DataFrame,
                 valid: pd.DataFrame, num_users: int, num_items: int, k: int = 20,
                 max_users: int = 2000, seed: int = 0) -> None:
        self.users = _users_for_selection(valid, max_users, seed)
        self.train_matrix = interaction_matrix(train, num_users, num_items)
        self.history = self.train_matrix[self.users]
        self.truth = torch.from_numpy(
            interaction_matrix(valid, num_users, num_items)[self.users].toarray() > 0)
        self.k = min(k, num_items)
        self.seen = torch.from_numpy(self.history.toarray() > 0)
        # Computed once: every candidate blend is judged against the same targets and mask.
        self.truth_counts = self.truth.sum(1)
        self.set_base(graph_scores(self.users))

    def set_base(self, scores: Tensor) -> None:
        """Make ``scores`` (``[len(users), num_items]``, seen items not yet masked) the base
        every term is judged against."""
        self.base = scores.float().cpu().masked_fill(self.seen, float("-inf"))
        self.base_ndcg = self.ndcg(self.base)
        self._base_std = masked_std(self.base, self.seen)

    def ndcg(self, scores: Tensor) -> float:
        return ndcg_at_k(scores, self.truth, self.k, self.truth_counts)

    def spread_ratio(self, term: Tensor, base: Tensor | None = None) -> float:
        """:func:`spread_ratio` of ``base`` (default: the base scores) to ``term`` over the
        unseen items."""
        base_std = self._base_std if base is None else masked_std(base, self.seen)
        spread = masked_std(term, self.seen)
        return base_std / spread if spread > 0 else 0.0

    def candidates(self, columns: np.ndarray) -> Tensor | None:
        """``[users, len(columns) + k]`` item indices: ``columns`` (sorted items; the only
        ones an additive term changes) then each user's ``k`` best other items by the base
        score (seen items last). Every blend ``base + term`` with ``term`` 0 outside
        ``columns`` has its top ``k`` among them. ``None`` when that would not be fewer
        than every item."""
        columns = np.asarray(columns, dtype=np.int64)
        num_items = self.base.size(1)
        if len(columns) + self.k >= num_items:
            return None
        others = torch.from_numpy(np.setdiff1d(np.arange(num_items), columns))
        best = others[self.base[:, others].topk(self.k, dim=1).indices]
        head = torch.from_numpy(columns).expand(self.base.size(0), -1)
        return torch.cat([head, best], dim=1)

    def add(self, term: Tensor) -> None:
        """Make ``base + term`` the new base (a chosen term becomes part of the model)."""
        self.set_base(self.base + term.masked_fill(self.seen, 0.0))


@dataclass
class BlendChoice:
    """The row (a setting of the term) and weight :func:`choose_blend` chose.

    Attributes:
        row (int): Index of the chosen setting (-1: the term stays off).
        relative_weight (float): Chosen weight relative to the spread ratio (0: off).
        valid_ndcg_base (float): Validation NDCG@K without the term.
        valid_ndcg (float): With the chosen term (equal to the base when off).
        table (numpy.ndarray): ``[rows, weights]`` validation NDCG@K of every cell.
    """

    row: int
    relative_weight: float
    valid_ndcg_base: float
    valid_ndcg: float
    table: np.ndarray


def choose_blend(ranking: ValidationRanking, terms: Callable[[int], Tensor], num_rows: int,
                 relative_weights: Sequence[float], margin: float | None = DEFAULT_MARGIN,
                 should_stop: Callable[[], bool] | None = None,
                 on_row: Callable[[int, float], None] | None = None,
                 columns: np.ndarray | None = None) -> BlendChoice:
    """Choose a term's setting (row) and weight on validation.

    Each row's term (``terms(row)``, ``[users, items]`` for ``ranking.users``) is added to the
    base scores at every weight (in units of the two terms' :func:`spread_ratio`). The surface
    is flat near its top and each cell is noisy, so the chosen cell is the one whose
    neighbourhood (one step either way on both axes) scores best; the term stays off unless
    that cell beats the base by ``margin`` (relative; ``None``: a setting the user fixed,
    kept whatever validation says).

    Where every term is 0 outside ``columns`` (the head items a path covers), an item outside
    them keeps its base score in every blend, so only each user's ``k`` best such items by the
    base score can reach a blend's top ``k``: blends are ranked over ``columns`` plus those
    (:meth:`ValidationRanking.candidates`), the same top ``k`` (up to ties) at a fraction of
    the cost on a large catalogue. The spread ratio still runs over every unseen item.

    Args:
        ranking (ValidationRanking): Validation users, targets and the base scores.
        terms (callable): Row -> ``[users, items]`` term of that setting.
        num_rows (int): Settings to try.
        relative_weights (sequence of float): Weights in units of the spread ratio (those
            above 0).
        margin (float, optional): Relative gain over the base needed to switch the term on.
            (default: :data:`DEFAULT_MARGIN`)
        should_stop (callable, optional): Polled before each row.
        on_row (callable, optional): Called with ``(row, best NDCG so far)`` after each row.
        columns (numpy.ndarray, optional): Sorted items outside which every term is 0.
            (default: :obj:`None`: terms may cover any item)
    """
    weights = [float(w) for w in relative_weights if w > 0]
    base = ranking.base_ndcg
    table = np.full((num_rows, len(weights)), -np.inf)
    index = None if columns is None else ranking.candidates(columns)
    if index is None:
        base_scores, truth = ranking.base, ranking.truth
    else:
        base_scores, truth = ranking.base.gather(1, index), ranking.truth.gather(1, index)
    blended = torch.empty_like(base_scores)  # one buffer for every cell of the grid
    for row in range(num_rows):
        if should_stop is not None and should_stop():
            break
        term = terms(row)
        ratio = ranking.spread_ratio(term)
        if index is not None:
            term = term.gather(1, index)
        for col, weight in enumerate(weights):
            if ratio > 0:
                torch.add(base_scores, term, alpha=weight * ratio, out=blended)
                table[row, col] = ndcg_at_k(blended, truth, ranking.k, ranking.truth_counts)
            else:
                table[row, col] = base
        if on_row is not None:
            on_row(row, float(table.max(initial=base)))
    off = BlendChoice(-1, 0.0, base, base, table)
    if not np.isfinite(table).any():
        return off
    smooth = np.full_like(table, -np.inf)
    for row in range(table.shape[0]):
        for col in range(table.shape[1]):
            window = table[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2]
            if np.isfinite(table[row, col]):
                smooth[row, col] = window[np.isfinite(window)].mean()
    row, col = np.unravel_index(np.argmax(smooth), smooth.shape)  # first max: smaller weight
    if margin is not None and not table[row, col] > base * (1.0 + margin):
        return off
    return BlendChoice(int(row), weights[col], base, float(table[row, col]), table)


@torch.no_grad()
def select_item_item(
    graph_scores: Callable[[np.ndarray], Tensor] | ValidationRanking,
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
    text: Tensor | None = None,
    bridge_k: int = DEFAULT_BRIDGE_K,
    margin: float | None = DEFAULT_MARGIN,
    screen_items: int | None = DEFAULT_SCREEN_ITEMS,
) -> ItemItemChoice:
    """Choose the item-item path's :math:`\\lambda` and weight by validation NDCG@K.

    The graph model was trained on ``train`` only; for (at most ``max_users``) validation
    users, every candidate blend ranks all items not in the user's ``train`` history and is
    scored against ``valid`` (binary gains, as in early stopping); see :func:`choose_blend`
    for the rule (neighbourhood of the best cell, on only past a ``margin``). On a head of
    more than ``screen_items`` items the lambda is screened on a smaller head first (see
    ``screen_items``). Then the factor on text-bridged columns (items without interactions in ``train``) is chosen from
    :data:`BRIDGE_SCALES`; a factor above 0 needs the same margin over the bridge off.

    Args:
        graph_scores (callable or ValidationRanking): User indices -> ``[len(users),
            num_items]`` graph scores, or a :class:`ValidationRanking` whose base already
            holds them (then ``train`` and ``valid`` must be the ones it was built from).
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
        text (Tensor, optional): ``[num_items, t]`` item text embeddings for the text
            bridge of items outside the weights (see :class:`ItemItemPath`).
        bridge_k (int): Neighbours of that bridge. (default: :obj:`20`)
        margin (float, optional): Relative validation gain a path (and the bridge) must show
            to switch on; ``None`` keeps a single given setting whatever validation says.
            (default: :data:`DEFAULT_MARGIN`)
        screen_items (int, optional): Where the head holds more items than this, the
            :math:`\\lambda` grid is screened on the ``screen_items`` most interacted items
            (the neighbourhood rule of :func:`choose_blend`, no margin), and only the chosen
            :math:`\\lambda` is fitted on the full head, where its weight and the margin are
            judged. ``None`` or 0: the whole grid on the full head.
            (default: :data:`DEFAULT_SCREEN_ITEMS`)
    """
    ranking = (graph_scores if isinstance(graph_scores, ValidationRanking) else
               ValidationRanking(graph_scores, train, valid, num_users, num_items, k,
                                 max_users, seed))
    train_matrix = ranking.train_matrix
    lambdas = [float(value) for value in reg_lambdas]
    head_items = covered_items(train_matrix, max_items)
    head = len(head_items)
    # Screening: each lambda costs a Cholesky factorisation cubic in the head, so on a large
    # head the grid runs on the smaller one and only the chosen lambda on the full head.
    screen = (int(screen_items) if screen_items and head > screen_items and len(lambdas) > 1
              else 0)
    steps = len(lambdas) + (1 if screen else 0)
    weights = [float(w) for w in relative_weights if w > 0]

    def path_term(reg_lambda: float, head_items: int) -> Tensor:
        # The grid scores covered items only (no bridge); the bridge is calibrated after.
        path = ItemItemPath.fit(train_matrix, reg_lambda, head_items, device=device)
        return torch.from_numpy(path.scores(ranking.history))

    def report(row: int, best_ndcg: float, done: int = 0) -> None:
        if on_progress is not None:
            on_progress({"stage": "item-item", "fraction": (done + row + 1) / steps,
                         "valid_ndcg": best_ndcg})

    def cells(blend: BlendChoice, rows: Sequence[float], head_items: int) -> list[dict]:
        return [{"reg_lambda": rows[r], "relative_weight": w, "head_items": head_items,
                 "valid_ndcg": float(blend.table[r, c])}
                for r in range(blend.table.shape[0]) for c, w in enumerate(weights)
                if np.isfinite(blend.table[r, c])]

    screen_grid: list[dict[str, float]] = []
    if screen:
        screened = choose_blend(ranking, lambda row: path_term(lambdas[row], screen),
                                len(lambdas), relative_weights, None, should_stop, report,
                                covered_items(train_matrix, screen))
        screen_grid = cells(screened, lambdas, screen)
        if not np.isfinite(screened.table).any():  # stopped before any lambda was tried
            base = ranking.base_ndcg
            return ItemItemChoice(lambdas[0], 0.0, base, base, screen_grid=screen_grid)
        lambdas = [lambdas[max(screened.row, 0)]]
        blend = choose_blend(ranking, lambda row: path_term(lambdas[0], max_items), 1,
                             relative_weights, margin, should_stop,
                             lambda row, ndcg: report(row, ndcg, steps - 1), head_items)
    else:
        blend = choose_blend(ranking, lambda row: path_term(lambdas[row], max_items),
                             len(lambdas), relative_weights, margin, should_stop, report,
                             head_items)
    best = ItemItemChoice(lambdas[max(blend.row, 0)] if lambdas else 0.0,
                          blend.relative_weight, blend.valid_ndcg_base, blend.valid_ndcg)
    best.grid = cells(blend, lambdas, min(head, max_items))
    best.screen_grid = screen_grid
    if blend.row < 0:
        return best
    if text is None or bridge_k <= 0 or len(covered_items(train_matrix, max_items)) == num_items:
        return best
    # One path at a time is kept (each holds n**2 weights): refit the chosen one.
    path = ItemItemPath.fit(train_matrix, best.reg_lambda, max_items, device=device, text=text,
                            bridge_k=bridge_k, bridge_scale=0.0)
    if len(path.bridge_items):
        # How much text-bridged items (no interactions in ``train``) count: they can be
        # validation hits, or take the places of warm hits.
        covered = torch.from_numpy(path.scores(ranking.history))
        path.bridge_scale = 1.0
        bridged = torch.from_numpy(path.scores(ranking.history)) - covered
        factor = best.relative_weight * ranking.spread_ratio(covered)
        values = {}
        for scale in BRIDGE_SCALES:
            values[scale] = ranking.ndcg(ranking.base + factor * (covered + scale * bridged))
            best.grid.append({"reg_lambda": best.reg_lambda,
                              "relative_weight": best.relative_weight,
                              "bridge_scale": scale, "valid_ndcg": values[scale]})
        best.bridge_scale, best.valid_ndcg = 0.0, values[0.0]
        on = max((s for s in BRIDGE_SCALES if s > 0), key=lambda s: values[s], default=None)
        if on is not None and values[on] > values[0.0] * (1.0 + (margin or 0.0)):
            best.bridge_scale, best.valid_ndcg = on, values[on]
    return best


def describe_choice(summary: dict[str, Any]) -> str:
    """An :meth:`ItemItemChoice.summary` in words."""
    if summary["relative_weight"] <= 0:
        return "item-item path off (it did not help on validation)"
    text = (f"item-item path: lambda={summary['reg_lambda']:g}, "
            f"weight={summary['relative_weight']:.3g}")
    if "bridge_scale" in summary:
        text += f", text bridge x{summary['bridge_scale']:g}"
    if np.isfinite(summary.get("valid_ndcg_graph", np.nan)):
        text += (f" (validation NDCG {summary['valid_ndcg_graph']:.4f} graph only, "
                 f"{summary['valid_ndcg']:.4f} with it)")
    return text


__all__ = [
    "BRIDGE_SCALES",
    "BlendChoice",
    "DEFAULT_MARGIN",
    "ValidationRanking",
    "choose_blend",
    "DEFAULT_BRIDGE_K",
    "DEFAULT_REG_LAMBDAS",
    "DEFAULT_RELATIVE_WEIGHTS",
    "DEFAULT_SCREEN_ITEMS",
    "ItemItemChoice",
    "DEFAULT_TAIL_NEIGHBOURS",
    "ItemItemPath",
    "covered_items",
    "sparse_ease_columns",
    "describe_choice",
    "ease_weights",
    "select_item_item",
    "spread_ratio",
    "masked_std",
]
