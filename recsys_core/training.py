"""One training loop for every embedding recommender (MF, LightGCN, the GNN + LM flagship).

A trainable module follows a small protocol (:class:`EmbeddingModule`): it is told which
user-item interactions it may propagate over (:meth:`~EmbeddingModule.set_interactions`), and
its ``forward(hidden)`` returns final user and item embeddings for the whole graph, optionally
with some of those interactions hidden from message passing (the batch's targets, so a
history-driven model never sees the edge it is asked to predict). Scores are dot products.

:func:`train_model` runs mini-batch optimisation over the interactions with vectorised negative
sampling and a BPR, pointwise BCE or sampled-softmax loss, evaluates full-ranking NDCG@K on a
validation split after every ``eval_every`` epochs, stops early, restores the best weights and
writes atomic safetensors + JSON checkpoints that :attr:`TrainConfig.resume` continues from.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed
from .dataset import ITEM_IDX, USER_IDX, Dataset
from .device import pick_device
from .errors import ModelLoadError, TrainingError
from .models.base import ProgressCallback
from .rng import (
    attach_generator,
    draws_from,
    draws_without_generator,
    reset_parameters,
    torch_generator,
)
from .sampling import (
    FULL_GRAPH_MAX_INTERACTIONS,
    TRAINING_MODES,
    ModeChoice,
    NeighborSampler,
    choose_training_mode,
)
from .tensor_metrics import ndcg_from_hits, top_k

LOSSES = ("bpr", "bce", "softmax")
CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"
CHECKPOINT_FORMAT = 1


@runtime_checkable
class EmbeddingModule(Protocol):
    """What :func:`train_model` needs from a model (an :class:`torch.nn.Module`)."""

    def set_interactions(self, users: Tensor, items: Tensor) -> None:
        """Use these ``[n]`` user / item index pairs as the graph to propagate over."""

    def forward(self, hidden: Tensor | None = None, sampled: Any = None) -> tuple[Tensor, Tensor]:
        """Final ``(user_emb [num_users, d], item_emb [num_items, d])``.

        Args:
            hidden (Tensor, optional): Positions (into the pairs last given to
                :meth:`set_interactions`) whose edges must not carry messages in this pass.
                Modules without message passing ignore it.
            sampled (HeteroData, optional): A mini-batch subgraph from
                :meth:`~recsys_core.sampling.NeighborSampler.subgraph`: return the rows of
                its seed users and items only (modules with a ``sampling_plan()``).
        """


@dataclass
class TrainConfig:
    """Optimisation settings shared by every embedding model.

    Args:
        epochs (int): Maximum passes over the training interactions. (default: :obj:`200`)
        batch_size (int): Positive interactions per step. (default: :obj:`4096`)
        lr (float): Adam learning rate. (default: :obj:`1e-3`)
        weight_decay (float): Adam L2 penalty on all parameters. (default: :obj:`0.0`)
        loss (str): ``"bpr"`` (pairwise), ``"bce"`` (pointwise, CTR-style, sampled negatives
            labelled 0) or ``"softmax"`` (sampled softmax over ``num_negatives`` items shared by
            the batch, the user's other training items masked out). (default: :obj:`"bpr"`)
        num_negatives (int): Negatives per positive (``bpr``/``bce``) or shared by the batch
            (``softmax``; all items when at least the catalogue size). (default: :obj:`1`)
        temperature (float): Softmax temperature (``softmax`` only). (default: :obj:`1.0`)
        hide_targets (bool): Hide each batch's positive edges from message passing, so a model
            whose users are built from their history cannot copy the answer. (default:
            :obj:`False`)
        eval_k (int): Cut-off of the validation NDCG. (default: :obj:`20`)
        patience (int): Evaluations without improvement before stopping. (default: :obj:`10`)
        eval_every (int): Epochs between evaluations. (default: :obj:`1`)
        valid_fraction (float): Share of each user's interactions carved out for validation
            when no validation frame is given. (default: :obj:`0.1`)
        seed (int): Seed of parameters, sampling and dropout. (default: :obj:`0`)
        device (str): ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``. (default: :obj:`"auto"`)
        amp (bool): Mixed precision (bfloat16/float16 autocast) on CUDA. (default: :obj:`True`)
        max_grad_norm (float, optional): Gradient clipping norm; ``None`` disables it.
            (default: :obj:`10.0`)
        time_limit (float, optional): Stop after this many seconds (best weights kept).
            (default: :obj:`None`)
        checkpoint_dir (str, optional): Where to write the best checkpoint. (default:
            :obj:`None`)
        resume (bool): Continue from the checkpoint in ``checkpoint_dir`` when there is one.
            (default: :obj:`False`)
        show_progress (bool, optional): tqdm bar; ``None`` shows it on terminals only.
            (default: :obj:`None`)
        refit (bool): After early stopping on a validation split carved from the training
            interactions, train again from scratch on all of them (validation included) for
            the chosen number of epochs, as the usual protocol does, so no data is lost to
            validation. Skipped when training was stopped, or when ``time_limit`` leaves too
            little room. (default: :obj:`False`)
        training_mode (str): ``"full"`` (every step propagates over the whole graph),
            ``"minibatch"`` (each step over a subgraph sampled around the batch, see
            :mod:`recsys_core.sampling`) or ``"auto"`` (full graph up to
            :data:`~recsys_core.sampling.FULL_GRAPH_MAX_INTERACTIONS` interactions).
            (default: :obj:`"auto"`)
        num_neighbors (int): Neighbours sampled per node and relation in mini-batch mode.
            (default: :obj:`10`)
    """

    epochs: int = 200
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "bpr"
    num_negatives: int = 1
    temperature: float = 1.0
    hide_targets: bool = False
    eval_k: int = 20
    patience: int = 10
    eval_every: int = 1
    valid_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    max_grad_norm: float | None = 10.0
    time_limit: float | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    show_progress: bool | None = None
    refit: bool = False
    training_mode: str = "auto"
    num_neighbors: int = 10

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.training_mode not in TRAINING_MODES:
            raise ValueError(f"training_mode must be one of {TRAINING_MODES}, got "
                             f"{self.training_mode!r}.")
        for name in ("epochs", "batch_size", "num_negatives", "eval_k", "patience", "eval_every",
                     "num_neighbors"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}.")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError("lr and temperature must be positive.")


class TrainOptions(TypedDict, total=False):
    """The fields of :class:`TrainConfig` as keyword arguments, each documented there.

    Every trainable model's constructor takes its own arguments, then
    ``**train_options: Unpack[TrainOptions]`` (see
    :class:`~recsys_core.models.embedding.EmbeddingRecommender`), so the training settings
    are typed and documented once. ``tests/test_training.py`` checks that the keys and types
    match :class:`TrainConfig`'s fields.
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    loss: str
    num_negatives: int
    temperature: float
    hide_targets: bool
    eval_k: int
    patience: int
    eval_every: int
    valid_fraction: float
    seed: int
    device: str
    amp: bool
    max_grad_norm: float | None
    time_limit: float | None
    checkpoint_dir: str | None
    resume: bool
    show_progress: bool | None
    refit: bool
    training_mode: str
    num_neighbors: int


@dataclass
class TrainResult:
    """What :func:`train_model` reports.

    Attributes:
        history (list[dict]): Per epoch ``epoch``, ``loss``, ``valid_ndcg`` (``None`` when not
            evaluated), ``seconds`` (cumulative wall time) and ``cpu_seconds`` (cumulative
            CPU time of the process, every thread: unlike the wall time, hardly moved by
            other jobs on the cores).
        best_epoch (int): Epoch whose weights were restored (0 = the initial weights).
        best_valid_ndcg (float): Validation NDCG@K of those weights.
        stop_reason (str): ``"epochs"``, ``"patience"``, ``"time_limit"`` or ``"stopped"``.
        seconds (float): Wall time of this call.
        device (str): Device the last epoch ran on.
        batch_size (int): Batch size the last epoch used (halved after CUDA out-of-memory).
        refit_epochs (int): Epochs of the refit on all interactions (0: no refit; see
            :attr:`TrainConfig.refit`).
        selected (dict): Settings a model chose on the validation split after training
            (e.g. the flagship's item-item path, see
            :meth:`recsys_core.models.embedding.EmbeddingRecommender.select_on_validation`);
            empty when none.
        training_mode (str): ``"full"`` or ``"minibatch"``, as chosen (see
            :func:`~recsys_core.sampling.choose_training_mode`).
        mode_reason (str): Why that mode.
        num_neighbors (int): Neighbours sampled per node and relation (0: full graph).
        world_size (int): Processes that trained (data-parallel ranks).
        valid_users (int): Validation users ranked in each validation pass (mini-batch mode
            ranks a fixed sample of at most :data:`MINIBATCH_VALID_USERS`).
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_ndcg: float = float("-inf")
    stop_reason: str = "epochs"
    seconds: float = 0.0
    device: str = "cpu"
    batch_size: int = 0
    refit_epochs: int = 0
    selected: dict[str, Any] = field(default_factory=dict)
    training_mode: str = "full"
    mode_reason: str = ""
    num_neighbors: int = 0
    world_size: int = 1
    valid_users: int = 0


# ---------------------------------------------------------------------------------- helpers
def unique_pairs(frame: pd.DataFrame) -> tuple[Tensor, Tensor]:
    """Deduplicated ``(users, items)`` index tensors of a frame, in first-seen order."""
    users = frame[USER_IDX].to_numpy(np.int64)
    items = frame[ITEM_IDX].to_numpy(np.int64)
    key = users * (int(items.max(initial=0)) + 1) + items
    _, first = np.unique(key, return_index=True)
    first.sort()
    return torch.from_numpy(users[first].copy()), torch.from_numpy(items[first].copy())


def split_validation(
    interactions: pd.DataFrame,
    fraction: float = 0.1,
    seed: int = 0,
    min_interactions: int = 3,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve a per-user random validation split out of ``interactions``.

    Every user with at least ``min_interactions`` interactions gives ``round(fraction * n)``
    of them (at least one) to validation; the others keep all of theirs for training.

    Args:
        interactions (pandas.DataFrame): Rows of ``dataset.interactions``.
        fraction (float): Share held out per user. (default: :obj:`0.1`)
        seed (int): Seed of the per-user permutation. (default: :obj:`0`)
        min_interactions (int): Users with fewer interactions are never held out from.
            (default: :obj:`3`)

    Returns:
        ``(train, valid)`` frames (row order of ``interactions`` kept).
    """
    users = interactions[USER_IDX].to_numpy(np.int64)
    n = len(users)
    if n == 0 or fraction <= 0:
        return interactions, interactions.iloc[:0]
    rng = np.random.default_rng(seed)
    # A random key per row; ranking rows by key within each user is a per-user permutation.
    order = np.lexsort((rng.random(n), users))
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)[np.arange(n)]
    per_user = np.maximum(1, np.rint(fraction * counts)).astype(np.int64)
    per_user[counts < min_interactions] = 0
    held = rank < per_user[users]
    return interactions[~held], interactions[held]


class PairIndex:
    """Membership test for (user, item) pairs via a sorted hashed key (``user * n + item``).

    Args:
        users (Tensor): ``[n]`` user indices.
        items (Tensor): ``[n]`` item indices.
        num_items (int): Catalogue size (the key's radix).
    """

    def __init__(self, users: Tensor, items: Tensor, num_items: int) -> None:
        self.num_items = int(num_items)
        self.keys = torch.unique(users.long() * self.num_items + items.long())  # sorted

    def to(self, device: torch.device) -> PairIndex:
        self.keys = self.keys.to(device)
        return self

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """Boolean tensor (shape of ``items``): is ``(users, items)`` a known pair?"""
        key = users.long() * self.num_items + items.long()
        if self.keys.numel() == 0:
            return torch.zeros_like(key, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, key).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == key


def sample_negatives(
    users: Tensor,
    num: int,
    pool: Tensor,
    seen: PairIndex,
    generator: torch.Generator,
    max_rounds: int = 10,
) -> Tensor:
    """Items from ``pool`` the users have not interacted with, ``[len(users), num]``.

    Draws uniformly with :func:`torch.randint` and redraws the seen ones (a few vectorised
    rounds; the rare survivors of heavy users stay, which is harmless noise).
    """
    size = (users.numel(), num)
    draw = pool[torch.randint(pool.numel(), size, generator=generator, device=pool.device)]
    draw = draw.view(-1)
    rows = users.repeat_interleave(num)
    todo = torch.arange(draw.numel(), device=draw.device)
    for _ in range(max_rounds):
        todo = todo[seen.contains(rows[todo], draw[todo])]
        if todo.numel() == 0:
            break
        draw[todo] = pool[torch.randint(pool.numel(), (todo.numel(),), generator=generator,
                                        device=pool.device)]
    return draw.view(size)


class CSRHistory:
    """Each user's training items as CSR tensors (for masking a user's seen items)."""

    def __init__(self, users: Tensor, items: Tensor, num_users: int) -> None:
        order = torch.argsort(users * (int(items.max()) + 1 if items.numel() else 1) + items)
        self.items = items[order]
        counts = torch.bincount(users, minlength=num_users)
        self.indptr = torch.zeros(num_users + 1, dtype=torch.long, device=users.device)
        self.indptr[1:] = torch.cumsum(counts, 0)

    def to(self, device: torch.device) -> CSRHistory:
        self.items, self.indptr = self.items.to(device), self.indptr.to(device)
        return self

    def rows(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """``(row, item)`` pairs of the given users' items; ``row`` indexes ``users``."""
        start, end = self.indptr[users], self.indptr[users + 1]
        counts = end - start
        row = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts)
        offset = torch.arange(row.numel(), device=users.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts)
        return row, self.items[start[row] + offset]


# ---------------------------------------------------------------------------------- losses
def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Mean :math:`-\\log\\sigma(s_{ui} - s_{uj})` over ``pos [B, 1]`` vs ``neg [B, n]``."""
    return -F.logsigmoid(pos - neg).mean()


def batch_l2(user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor,
             negatives: Tensor | None, weight: float) -> Tensor:
    """:math:`\\lambda (\\|p_u\\|^2 + \\|q_i\\|^2 + \\|q_j\\|^2)` averaged over the batch: the L2
    penalty on the embedding rows a batch touches (its users, positives and ``negatives
    [B, n]``, the negatives averaged per positive), with ``weight`` :math:`\\lambda`."""
    reg = user_table.index_select(0, users).pow(2).sum()
    reg = reg + item_table.index_select(0, items).pow(2).sum()
    if negatives is not None:
        neg = item_table.index_select(0, negatives.reshape(-1))
        reg = reg + neg.pow(2).sum() / negatives.size(1)
    return weight * reg / users.numel()


def bce_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Pointwise log loss: positives labelled 1, negatives 0, averaged per positive."""
    return F.softplus(-pos).mean() + F.softplus(neg).sum(1).mean() / max(neg.size(1), 1)


def masked_softmax_loss(
    user_emb: Tensor,
    item_emb: Tensor,
    users: Tensor,
    items: Tensor,
    candidates: Tensor,
    history: CSRHistory,
    temperature: float,
    user_ids: Tensor | None = None,
    item_ids: Tensor | None = None,
    block_rows: int = 256,
) -> Tensor:
    """Sampled softmax of each positive against ``candidates`` the user has not seen.

    For a positive :math:`(u, i)` the loss is :math:`-s_{ui}/\\tau + \\log(e^{s_{ui}/\\tau} +
    \\sum_{j \\in C \\setminus N_u} e^{s_{uj}/\\tau})`:
    the user's other training items are not treated as negatives, matching evaluation,
    which ranks only unseen items. The log-sum-exp over candidates is computed once per
    distinct user of the batch.

    ``users``, ``items`` and ``candidates`` index the rows of ``user_emb`` / ``item_emb``;
    when those are a mini-batch's tables, ``user_ids`` / ``item_ids`` give each row's global
    id (to look the history up). (default: rows are global ids)

    The loss is computed ``block_rows`` users at a time (:class:`_BlockwiseMaskedSoftmaxLoss`),
    its gradients in the same pass, in full-graph and mini-batch training alike: the
    ``[users, candidates]`` logits and their softmax are never in memory at once, a block
    stays in cache (a 256 x 2048 block is 2 MiB, where the whole matrix costs a page fault per
    4 kB), and it takes three products instead of the four of a whole-matrix log-sum-exp with
    autograd. A full-graph epoch of the 100k-interaction, 10k-item benchmark set takes 1.9 s
    on one thread instead of 2.4 s with the whole matrix. (default: :obj:`256`)
    """
    batch_users, row_of = torch.unique(users, return_inverse=True)
    global_users = batch_users if user_ids is None else user_ids.index_select(0, batch_users)
    global_candidates = candidates if item_ids is None else item_ids.index_select(0, candidates)
    rows, cols = _seen_columns(global_users, global_candidates, history)
    pos = (user_emb.index_select(0, users) * item_emb.index_select(0, items)).sum(-1)
    pos = pos / temperature
    return _BlockwiseMaskedSoftmaxLoss.apply(
        user_emb.index_select(0, batch_users) / temperature,
        item_emb.index_select(0, candidates), pos, row_of, rows, cols, max(1, int(block_rows)))


def _seen_columns(global_users: Tensor, global_candidates: Tensor,
                  history: CSRHistory) -> tuple[Tensor, Tensor]:
    """``(row, column)`` of each (user, candidate) pair the user has already seen, rows sorted
    (the column found by a sorted lookup: batch-sized memory)."""
    rows, seen = history.rows(global_users)
    order = torch.argsort(global_candidates)
    ordered = global_candidates.index_select(0, order)
    at = torch.searchsorted(ordered, seen).clamp_(max=max(ordered.numel() - 1, 0))
    keep = ordered[at] == seen if ordered.numel() else torch.zeros_like(seen, dtype=torch.bool)
    return rows[keep], order[at][keep]


class _BlockwiseMaskedSoftmaxLoss(torch.autograd.Function):
    r"""The sampled-softmax loss :math:`\frac{1}{P}\sum_p \big(\mathrm{logaddexp}(
    \ell_{r(p)}, s_p) - s_p\big)` with :math:`\ell_r = \log\sum_c e^{a_r \cdot b_c}` over the
    columns ``c`` not masked in row ``r``, a block of rows at a time, its gradients computed
    in the same pass.

    A block's logits give its log-sum-exps, and with them the loss's derivative in each
    :math:`\ell_r`, :math:`g_r = \frac{1}{P}\sum_{p: r(p) = r} \sigma(\ell_r - s_p)`, so
    the block's softmax times :math:`g_r` yields both gradients at once: three products per
    block (logits, ``grad_a``, ``grad_b``) where a log-sum-exp with its own backward needs four
    (the backward recomputes the logits), and only ``[rows, d]`` and ``[columns, d]``
    gradients are kept. A row with every column masked has :math:`\ell_r = -\infty`: its
    positives cost 0 and it gets no gradient.

    Args (forward):
        a (Tensor): ``[U, d]`` rows (users, already divided by the temperature).
        b (Tensor): ``[C, d]`` columns (candidates).
        pos (Tensor): ``[P]`` positive scores (divided by the temperature).
        row_of (Tensor): ``[P]`` each positive's row.
        mask_rows, mask_cols (Tensor): Masked entries, rows sorted.
        block (int): Rows per block.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, pos: Tensor, row_of: Tensor, mask_rows: Tensor,
                mask_cols: Tensor, block: int) -> Tensor:
        n, count = a.size(0), pos.numel()
        edges = torch.arange(0, n + block, block, device=a.device).clamp_(max=n)
        bounds = torch.searchsorted(mask_rows, edges).tolist()  # mask entries of each block
        order = torch.argsort(row_of, stable=True)  # positives grouped by row
        rows_sorted, pos_sorted = row_of.index_select(0, order), pos.detach().index_select(0, order)
        pos_bounds = torch.searchsorted(rows_sorted, edges).tolist()
        grad_a, grad_b = torch.empty_like(a), torch.zeros_like(b)
        lse = a.new_empty(n)
        for k, start in enumerate(range(0, n, block)):
            logits = _masked_block(a, b, mask_rows, mask_cols, start, block, bounds[k:k + 2])
            # One exp serves the log-sum-exp and the softmax: exp(l - max) / its row sum.
            row_max = logits.amax(1)
            row_max.masked_fill_(torch.isinf(row_max), 0.0)  # exp(-inf) = 0
            prob = logits.sub_(row_max[:, None]).exp_()
            sums = prob.sum(1)
            block_lse = row_max + sums.log()  # -inf for a row with every column masked
            lse[start:start + block] = block_lse
            lo, hi = pos_bounds[k], pos_bounds[k + 1]
            local = rows_sorted[lo:hi] - start
            weight = torch.zeros_like(block_lse).index_add_(
                0, local, torch.sigmoid(block_lse.index_select(0, local) - pos_sorted[lo:hi]))
            prob.mul_((weight / (count * sums.clamp(min=torch.finfo(sums.dtype).tiny)))[:, None])
            torch.mm(prob, b, out=grad_a[start:start + block])
            grad_b.addmm_(prob.T, a[start:start + block])
        lse_p = lse.index_select(0, row_of)
        # d/ds_p of logaddexp(l, s_p) - s_p is -sigmoid(l - s_p).
        ctx.save_for_backward(grad_a, grad_b, -torch.sigmoid(lse_p - pos.detach()) / count)
        return (torch.logaddexp(lse_p, pos.detach()) - pos.detach()).mean()

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad_a, grad_b, grad_pos = ctx.saved_tensors
        return grad_a * grad, grad_b * grad, grad_pos * grad, None, None, None, None


def _masked_block(a: Tensor, b: Tensor, mask_rows: Tensor, mask_cols: Tensor, start: int,
                  block: int, bounds: list[int]) -> Tensor:
    """Logits of rows ``start:start + block`` with their masked columns at ``-inf``."""
    logits = a[start:start + block] @ b.T
    lo, hi = bounds
    if hi > lo:
        logits[mask_rows[lo:hi] - start, mask_cols[lo:hi]] = float("-inf")
    return logits


# ---------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def ndcg_at_k(
    user_emb: Tensor,
    item_emb: Tensor,
    eval_users: Tensor,
    targets: PairIndex,
    target_counts: Tensor,
    history: CSRHistory,
    k: int = 20,
    chunk: int = 256,
) -> float:
    """Mean binary-gain NDCG@K of full-catalogue rankings, seen (history) items excluded.

    Args:
        user_emb (Tensor): ``[num_users, d]``.
        item_emb (Tensor): ``[num_items, d]``.
        eval_users (Tensor): Users to evaluate (each with at least one target).
        targets (PairIndex): The held-out (user, item) pairs.
        target_counts (Tensor): ``[num_users]`` held-out items per user.
        history (CSRHistory): Items to exclude per user.
        k (int): Cut-off. (default: :obj:`20`)
        chunk (int): Users scored per block (smaller blocks of scores stay in cache: a pass
            over 10k items is about 12% faster than with blocks of 1,024). (default:
            :obj:`256`)
    """
    total = 0.0
    for start in range(0, eval_users.numel(), chunk):
        users = eval_users[start:start + chunk]
        scores = user_emb[users].float() @ item_emb.float().T
        rows, seen = history.rows(users)
        scores[rows, seen] = float("-inf")
        top = top_k(scores, k)
        hits = targets.contains(users.view(-1, 1).expand_as(top), top)
        total += float(ndcg_from_hits(hits, target_counts[users]).sum())
    return total / max(eval_users.numel(), 1)


# ---------------------------------------------------------------------------------- checkpoints
def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(directory: str | Path, module: nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator, meta: dict[str, Any],
                    model_generator: torch.Generator | None = None,
                    sampler_generator: torch.Generator | None = None) -> None:
    """Write weights, optimiser moments and the job's generator states (safetensors) +
    ``meta`` (JSON).

    Both files are written to temporary names and moved into place. The safetensors header
    carries ``meta`` too, so the weights file alone is the commit point: a crash at any moment
    leaves either the previous or the new checkpoint, complete (``checkpoint.json`` is a
    readable copy).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value):
                tensors[f"optim.{i}.{key}"] = value.detach().cpu().contiguous()
            elif key == "step":  # SparseAdam counts its steps in an int
                tensors[f"optim.{i}.{key}"] = torch.tensor(float(value))
    tensors["rng.sampler"] = generator.get_state().cpu()
    if model_generator is not None:
        tensors["rng.model"] = model_generator.get_state().cpu()
    if sampler_generator is not None:  # mini-batch mode's neighbour draws
        tensors["rng.neighbors"] = sampler_generator.get_state().cpu()
    epoch = str(meta["epoch"])
    text = json.dumps({"format": CHECKPOINT_FORMAT, **meta}, indent=1)
    _atomic_write(directory / CHECKPOINT_WEIGHTS,
                  lambda tmp: save_file(tensors, tmp, metadata={"epoch": epoch, "meta": text}))
    _atomic_write(directory / CHECKPOINT_META,
                  lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """``(tensors, meta)`` of a checkpoint directory, ``None`` when it holds none.

    Raises:
        ModelLoadError: The files are unreadable or belong to different epochs.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    directory = Path(directory)
    weights, meta_path = directory / CHECKPOINT_WEIGHTS, directory / CHECKPOINT_META
    if not meta_path.exists() and not weights.exists():
        return None
    try:
        with safe_open(str(weights), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(weights))
        # The metadata inside the weights file is authoritative (see save_checkpoint);
        # checkpoint.json is only read for checkpoints written before it was embedded.
        meta = json.loads(header["meta"] if "meta" in header
                          else meta_path.read_text(encoding="utf-8"))
        epoch = header.get("epoch")
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(f"Checkpoint in '{directory}' cannot be read ({exc}). Delete the "
                             "folder to train from scratch.") from exc
    if meta.get("format") != CHECKPOINT_FORMAT or epoch != str(meta.get("epoch")):
        raise ModelLoadError(f"Checkpoint in '{directory}' is incomplete or from another "
                             "version (weights and metadata disagree). Delete the folder to train "
                             "from scratch.")
    return tensors, meta


def _load_checkpoint_everywhere(directory: str | Path
                                ) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """:func:`load_checkpoint` on rank 0, the same tensors and metadata on every rank of a
    torchrun job (other nodes need not see the folder); a bad checkpoint raises the same
    :class:`~recsys_core.errors.ModelLoadError` on every rank."""
    if distributed.current() is None:
        return load_checkpoint(directory)
    answer: tuple[str, Any] = ("ok", None)
    if distributed.is_main():
        try:
            answer = ("ok", load_checkpoint(directory))
        except ModelLoadError as exc:
            answer = ("error", str(exc))
    status, value = distributed.broadcast_object(answer)
    if status == "error":
        raise ModelLoadError(value)
    return value


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor],
                       meta: dict[str, Any], device: torch.device) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        state = {key.split(".", 2)[2]: value.to(device) for key, value in tensors.items()
                 if key.startswith(f"optim.{i}.")}
        if state:
            if "step" in state:
                state["step"] = state["step"].cpu()
            optimizer.state[p] = state
    lrs = meta.get("lrs") or [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr


# ---------------------------------------------------------------------------------- the loop
#: Mini-batch mode ranks at most this many validation users in each validation pass (a fixed
#: sample drawn once with the seed, the same users every epoch). Ranking every user against
#: the whole catalogue costs users x items, which grows faster than the interactions: at
#: ``bench_scale.py``'s 5M size (98k validation users, 30k items) a pass took 18.5 s of
#: ranking plus 2 s for the no-grad forward pass, against 1.2 s at 1M. The standard error of a
#: mean NDCG over 20,000 users is about 0.002, and epochs are compared on the same users.
#: Full-graph mode (small data) ranks every validation user.
MINIBATCH_VALID_USERS = 20_000


class _Data:
    """Training / validation tensors on one device."""

    def __init__(self, dataset: Dataset, train: pd.DataFrame, valid: pd.DataFrame,
                 device: torch.device) -> None:
        num_users, num_items = dataset.num_users, dataset.num_items
        self.users, self.items = unique_pairs(train)
        self.seen = PairIndex(self.users, self.items, num_items)
        self.history = CSRHistory(self.users, self.items, num_users)
        # Negatives come from items with training interactions: an item nobody could interact
        # with in training (a cold item) must not be taught to score low.
        self.pool = torch.unique(self.items)
        v_users, v_items = (unique_pairs(valid) if len(valid)
                            else (torch.zeros(0, dtype=torch.long),) * 2)
        self.valid = PairIndex(v_users, v_items, num_items)
        self.valid_counts = torch.bincount(v_users, minlength=num_users)
        self.valid_users = torch.unique(v_users)
        self.to(device)

    def to(self, device: torch.device) -> _Data:
        for name in ("users", "items", "pool", "valid_counts", "valid_users"):
            setattr(self, name, getattr(self, name).to(device))
        self.seen.to(device)
        self.history.to(device)
        self.valid.to(device)
        return self


def amp_settings(config: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """Whether a step runs under :func:`torch.autocast`, and in which precision.

    Mixed precision runs on CUDA only (``config.amp``): bfloat16 where the GPU supports it,
    else float16 (with a :class:`torch.amp.GradScaler`). On the CPU and MPS it is off.
    """
    use = bool(config.amp) and device.type == "cuda"
    dtype = torch.bfloat16 if use and torch.cuda.is_bf16_supported() else torch.float16
    return use, dtype


def to_device(batch: Any, device: torch.device) -> Any:
    """A sampled mini-batch (or tensor) on ``device``: pinned and copied without blocking on
    CUDA, so the copy overlaps the step still running."""
    if device.type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


def training_mode(module: nn.Module, data: _Data, config: TrainConfig) -> ModeChoice:
    """The mode :func:`train_model` trains ``module`` in (see
    :func:`~recsys_core.sampling.choose_training_mode`).

    Raises:
        TrainingError: Mini-batch mode was asked of a module that cannot sample, full-graph
            mode of a graph above the hard limit, or a mode whose memory would outgrow the
            machine (:func:`check_training_memory`).
    """
    can_sample = callable(getattr(module, "sampling_plan", None))
    if not can_sample:
        if config.training_mode == "minibatch":
            raise TrainingError(f"{type(module).__name__} has no mini-batch mode; use "
                                "training_mode=full or auto.")
        return ModeChoice("full", "the model trains on the full graph only",
                          int(data.users.numel()))
    has_graph = bool(module.sampling_plan().hops)
    try:
        mode = choose_training_mode(config.training_mode, int(data.users.numel()), has_graph,
                                    config.num_neighbors)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    if has_graph:
        check_training_memory(mode.mode, mode.interactions, data.users.device)
    return mode


# ---------------------------------------------------------------------------------- memory
#: Peak resident bytes per training interaction of the flagship (defaults, float32 on the CPU)
#: by mode, for :func:`check_training_memory`, on top of :data:`TRAINING_BASE_BYTES`. Full
#: graph: 2.0 kB measured between 80k and 250k interactions (``benchmarks/bench_gpu.py
#: --modes full``), 3.7 kB at 0.8 M in issue 13's run; the larger, rounded up. Mini-batch: the
#: whole ``train --epochs 1`` of ``benchmarks/bench_scale.py`` (training, selection on
#: validation, refit, final fit) grew by 0.7 kB per interaction from 1 M to 2 M rows and by
#: 0.4 kB from 2 M to 5 M and from 5 M to 20 M (peaks 1.98, 2.45, 3.33 and 7.92 GB at 0.59,
#: 1.25, 3.29 and 13.9 M training interactions); 1 kB leaves room for the allocator and a
#: larger graph's index (the 20 M estimate, 15.9 GB, is twice the measured peak).
#: ``tests/test_distributed_faults.py`` checks the estimate against every training peak in
#: ``benchmarks/results/scale.json``.
TRAINING_BYTES_PER_INTERACTION = {"full": 4_000, "minibatch": 1_000}
#: Resident bytes of a training process before its per-interaction data: Python, torch and
#: PyG (0.46 GB measured) and the closed-form parts the flagship chooses and fits over its
#: dense head of at most 5,000 items (graph filter basis, EASE weights): the 100k set of
#: ``bench_scale.py`` (10k items, 67k training interactions, full graph) peaked at 1.89 GB.
TRAINING_BASE_BYTES = 2_000_000_000


def memory_budget() -> tuple[float, int]:
    """``(bytes, processes)``: the memory this process may use for training, and how many
    processes of a torchrun job share this machine's.

    ``RECSCOPE_MEMORY_GB`` sets the budget (e.g. a container's or a shared server's share);
    otherwise it is what this process holds plus what the operating system reports available,
    split between the job's local ranks (each holds the whole graph).
    """
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)) \
        if distributed.current() is not None else 1
    given = os.environ.get("RECSCOPE_MEMORY_GB")
    if given:
        try:
            return float(given) * 1e9, local
        except ValueError:
            raise TrainingError(f"RECSCOPE_MEMORY_GB must be a number of gigabytes, got "
                                f"{given!r}.") from None
    import psutil

    held = psutil.Process().memory_info().rss
    return held + psutil.virtual_memory().available / local, local


def _gb(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e10 else f"{size / 1e9:.2f} GB"


def check_training_memory(mode: str, interactions: int,
                          device: torch.device | None = None) -> None:
    """Refuse, before the first step, a training whose memory would outgrow the machine.

    On CUDA the steps run in the GPU's memory, whose exhaustion :func:`train_model` handles
    (a smaller batch, then the CPU; under torchrun the job stops with a message), so the host
    is checked for what it holds in any mode: the mini-batch figure.

    Args:
        mode (str): ``"full"`` or ``"minibatch"``.
        interactions (int): Training interactions (message-passing edges).
        device (torch.device, optional): Where the steps run. (default: the CPU)

    Raises:
        TrainingError: The estimate (:data:`TRAINING_BYTES_PER_INTERACTION`) exceeds
            :func:`memory_budget`; the message gives both figures, the largest data set
            that fits in this mode and what to do instead.
    """
    budget, local = memory_budget()
    budget = distributed.broadcast_float(budget)  # rank 0's figure: every rank decides alike
    per = TRAINING_BYTES_PER_INTERACTION
    held = "minibatch" if device is not None and device.type == "cuda" else mode
    need = TRAINING_BASE_BYTES + per[held] * interactions
    if need <= budget:
        return
    limit = max(0, int((budget - TRAINING_BASE_BYTES) // per[held]))
    shared = (f" ({local} processes of this job share this machine, each holding the whole "
              "graph)" if local > 1 else "")
    head = (f"{'Full-graph' if mode == 'full' else 'Mini-batch'} training of {interactions:,} "
            f"interactions needs about {_gb(need)} of {'host ' if held != mode else ''}memory, "
            f"more than the {_gb(budget)} this process can use{shared}: this mode fits up to "
            f"about {limit:,} interactions here.")
    if held == "full":
        small = TRAINING_BASE_BYTES + per["minibatch"] * interactions
        fits = "fits" if small <= budget else "would not fit either"
        todo = (f" Use training_mode=minibatch (about {_gb(small)}, {fits}; or auto, "
                f"which trains on mini-batches above {FULL_GRAPH_MAX_INTERACTIONS:,} "
                "interactions)")
        if small <= budget:
            raise TrainingError(head + todo + ".")
        head += todo + "."
    raise TrainingError(
        head + " Train with the command line (python -m recsys_core train; in the app, the "
        "server also holds every session's data) on a machine with more memory, or spread "
        "the job over several machines with one process each (torchrun --nnodes N "
        "--nproc-per-node 1; see README, Training at scale); fewer processes per machine "
        "leave each more memory. RECSCOPE_MEMORY_GB sets the budget when the estimate is too "
        "cautious.")


def train_model(
    module: nn.Module,
    dataset: Dataset,
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    config: TrainConfig,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train an :class:`EmbeddingModule` with early stopping on validation NDCG@K.

    The module is told to propagate over ``train`` (after carving a per-user validation split
    from it when ``valid`` is ``None``), optimised with Adam, evaluated every
    ``config.eval_every`` epochs and left holding its best weights (on the CPU when training
    fell back there after CUDA ran out of memory).

    Each step runs on the full graph or, in mini-batch mode, on the subgraph sampled around the
    batch's users, positives and negatives (:class:`~recsys_core.sampling.NeighborSampler`);
    ``config.training_mode`` chooses, ``"auto"`` by the graph's size, and the result reports it.
    Inside a process group (``torchrun``, see :mod:`recsys_core.distributed`) the module runs
    under :class:`~torch.nn.parallel.DistributedDataParallel`, each rank on its shard of the
    positives with ``batch_size / world_size`` of them per step (the same global batch as one
    process); rank 0 evaluates and writes checkpoints, and every decision is shared.

    Args:
        module (torch.nn.Module): The model (see :class:`EmbeddingModule`).
        dataset (Dataset): Id maps and sizes.
        train (pandas.DataFrame): Training interactions (rows of ``dataset.interactions``).
        valid (pandas.DataFrame, optional): Validation interactions; carved from ``train``
            with :func:`split_validation` when ``None``.
        config (TrainConfig): Settings.
        on_progress (callable, optional): Called after each epoch with ``stage``, ``epoch``,
            ``epochs``, ``loss``, ``valid_ndcg``, ``fraction`` and ``training_mode``, and
            within an epoch (at most about once a second) with ``batch``, ``batches``,
            ``batches_per_second``, ``epoch_seconds_left``, ``running_loss`` and
            ``fraction``.
        should_stop (callable, optional): Polled every step; returning ``True`` ends training
            with the best weights so far.

    Returns:
        TrainResult

    Raises:
        TrainingError: The loss became NaN or infinite, there is nothing to train on, or the
            chosen mode cannot train this model or graph.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    if valid is None:
        train, valid = split_validation(train, config.valid_fraction, config.seed)
    if len(train) == 0:
        raise TrainingError("There are no training interactions to learn from.")
    ctx = distributed.current()
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    device = pick_device(config.device)
    if ctx is not None and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    data = _Data(dataset, train, valid, device)
    module.set_interactions(data.users.cpu(), data.items.cpu())
    mode = training_mode(module, data, config)
    module.to(device)
    # The job's own generators (never torch's global one, which other sessions share): one
    # draws the initial weights and then the model's dropout, one shuffles and samples.
    model_generator = torch_generator(config.seed, device)
    if hasattr(module, "reset_parameters"):
        reset_parameters(module, model_generator)
    attach_generator(module, model_generator)
    optimizer = make_optimizer(module, config, mode.mode, device, world)
    # Ranks draw different negatives and neighbours (rank 0 as a single process would).
    generator = torch_generator(config.seed + 1_000_003 * rank, device)
    sampler = None
    if mode.mode == "minibatch":
        sampler = NeighborSampler(module.sampling_plan(), config.num_neighbors,
                                  torch_generator(config.seed + 7_919 + 1_000_003 * rank))
    if mode.mode == "minibatch" and data.valid_users.numel() > MINIBATCH_VALID_USERS:
        pick = torch.randperm(data.valid_users.numel(),
                              generator=torch_generator(config.seed + 15_485_863))
        data.valid_users = data.valid_users[
            pick[:MINIBATCH_VALID_USERS].sort().values.to(data.valid_users.device)]
    result = TrainResult(device=str(device), batch_size=config.batch_size,
                         training_mode=mode.mode, mode_reason=mode.reason,
                         num_neighbors=mode.num_neighbors, world_size=world,
                         valid_users=int(data.valid_users.numel()))
    batch_size = config.batch_size
    has_valid = data.valid_users.numel() > 0
    start_epoch, waited = 1, 0
    best_state: dict[str, Tensor] | None = None

    if config.resume and config.checkpoint_dir:
        loaded = _load_checkpoint_everywhere(config.checkpoint_dir)
        if loaded is not None:
            tensors, meta = loaded
            state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelLoadError(f"Checkpoint in '{config.checkpoint_dir}' does not fit this "
                                     f"model/data ({exc}).") from exc
            _restore_optimizer(optimizer, tensors, meta, device)
            if rank == 0 and tensors["rng.sampler"].numel() == generator.get_state().numel():
                generator.set_state(tensors["rng.sampler"])
            # "rng.torch": the global CPU state older checkpoints saved (dropout drew from it).
            model_state = tensors.get("rng.model", tensors.get("rng.torch"))
            if model_state is not None and \
                    model_state.numel() == model_generator.get_state().numel():
                model_generator.set_state(model_state)
            neighbours = tensors.get("rng.neighbors")
            if rank == 0 and sampler is not None and neighbours is not None:
                sampler.generator.set_state(neighbours)
            result.history = list(meta.get("history", []))
            result.best_epoch = int(meta["epoch"])
            result.best_valid_ndcg = float(meta.get("best_valid_ndcg", float("-inf")))
            start_epoch = result.best_epoch + 1
            batch_size = int(meta.get("batch_size", batch_size))

    net: nn.Module = module
    if ctx is not None:
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # Buffers (the graph, the text embeddings) are identical on every rank by
        # construction: no need to broadcast them before each step.
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})
        net = DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True, **no_sync)

    def snapshot() -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def evaluate() -> float:  # rank 0 ranks, every rank gets its figure
        value = _evaluate(module, data, config.eval_k) if rank == 0 else 0.0
        return distributed.broadcast_float(value)

    best_state = snapshot()
    if not has_valid:  # nothing to select on: the last epoch is the result
        result.best_valid_ndcg = float("nan")
    elif start_epoch == 1:
        result.best_valid_ndcg = evaluate()

    from tqdm.auto import tqdm

    show = (not config.show_progress) if config.show_progress is not None else None
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=f"Training {type(module).__name__}",
               unit="epoch", disable=show if rank == 0 else True, leave=False,
               initial=start_epoch - 1, total=config.epochs)
    elapsed_before = result.history[-1]["seconds"] if result.history else 0.0
    cpu_before = result.history[-1].get("cpu_seconds", 0.0) if result.history else 0.0
    # The time limit also ends an epoch part-way (checked between steps), so a slow epoch on a
    # large data set cannot overrun it by a whole pass.
    deadline = None if config.time_limit is None else started + config.time_limit

    def time_up() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    oom_count = 0
    try:
        for epoch in bar:
            reporter = _EpochProgress(on_progress if rank == 0 else None, epoch, config.epochs,
                                      mode.mode, bar)
            while True:
                try:
                    positions = (distributed.shard(data.users.numel(), epoch, config.seed, ctx)
                                 .to(device) if ctx is not None else None)
                    loss, stopped = _train_epoch(
                        net, optimizer, data, config, max(1, math.ceil(batch_size / world)),
                        generator, model_generator, device, should_stop, deadline,
                        sampler=sampler, positions=positions, progress=reporter)
                    break
                except torch.cuda.OutOfMemoryError:
                    if ctx is not None:  # ranks cannot fall back one by one
                        raise
                    oom_count += 1
                    torch.cuda.empty_cache()
                    if oom_count == 1 and batch_size > 256:
                        batch_size //= 2
                    else:
                        device = torch.device("cpu")
                        module.to(device)
                        data.to(device)
                        _move_optimizer(optimizer, device)
                        generator = torch_generator(config.seed + epoch)
                        model_generator = torch_generator(config.seed + epoch + 1)
                        attach_generator(module, model_generator)
                    result.device, result.batch_size = str(device), batch_size
            if loss is None:  # stopped before this epoch's first step: nothing to record
                result.stop_reason = "time_limit" if time_up() else "stopped"
                break
            if not math.isfinite(loss):
                module.load_state_dict(best_state)
                where = (f" The last good checkpoint (epoch {result.best_epoch}) is in "
                         f"'{config.checkpoint_dir}'." if config.checkpoint_dir else "")
                raise TrainingError(
                    f"Training diverged: the loss became {loss} at epoch {epoch}. Lower the "
                    f"learning rate (now {config.lr:g}) or raise weight_decay; the weights of "
                    f"epoch {result.best_epoch} were restored.{where}")
            record: dict[str, Any] = {"epoch": epoch, "loss": loss, "valid_ndcg": None}
            evaluate_now = has_valid and (epoch % config.eval_every == 0
                                          or epoch == config.epochs or stopped)
            improved = False
            if evaluate_now:
                ndcg = evaluate()
                record["valid_ndcg"] = ndcg
                if ndcg > result.best_valid_ndcg:
                    improved, waited = True, 0
                    result.best_epoch, result.best_valid_ndcg = epoch, ndcg
                    best_state = snapshot()
                else:
                    waited += 1
            elif not has_valid:
                improved, result.best_epoch = True, epoch
                best_state = snapshot()
            record["seconds"] = elapsed_before + time.perf_counter() - started
            record["cpu_seconds"] = cpu_before + time.process_time() - cpu_started
            result.history.append(record)
            if improved and config.checkpoint_dir and rank == 0:
                save_checkpoint(config.checkpoint_dir, module, optimizer, generator, {
                    "epoch": epoch, "best_valid_ndcg": result.best_valid_ndcg,
                    "history": result.history, "batch_size": batch_size,
                    "lrs": [g["lr"] for g in optimizer.param_groups], "config": asdict(config)},
                    model_generator, sampler.generator if sampler is not None else None)
            bar.set_postfix(loss=f"{loss:.4f}", ndcg=f"{result.best_valid_ndcg:.4f}")
            if on_progress is not None and rank == 0:
                on_progress({"stage": "train", "epoch": epoch, "epochs": config.epochs,
                             "loss": loss, "valid_ndcg": record["valid_ndcg"],
                             "fraction": epoch / config.epochs, "training_mode": mode.mode})
            if stopped:
                result.stop_reason = "time_limit" if time_up() else "stopped"
                break
            if has_valid and waited >= config.patience:
                result.stop_reason = "patience"
                break
            if distributed.any_rank(time_up()):
                result.stop_reason = "time_limit"
                break
    finally:
        bar.close()
        attach_generator(module, None)  # a finished model holds no job's generator
        for table in getattr(optimizer, "tables", ()):  # scoring reads whole tables again
            table.sparse = False
    module.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return result


class _EpochProgress:
    """Reports progress inside an epoch: batches done of the total, batches per second and
    the epoch's time left, at most every ``interval`` seconds (a long epoch never looks hung).
    """

    def __init__(self, on_progress: ProgressCallback | None, epoch: int, epochs: int,
                 mode: str, bar: Any = None, interval: float = 1.0) -> None:
        self.on_progress, self.epoch, self.epochs, self.mode = on_progress, epoch, epochs, mode
        self.bar, self.interval = bar, interval
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int, total: int, running_loss: float) -> None:
        now = time.perf_counter()
        if done >= total or now - self.last < self.interval:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        left = (total - done) / rate if rate > 0 else float("nan")
        if self.bar is not None:
            self.bar.set_postfix(batch=f"{done}/{total}", rate=f"{rate:.1f}/s",
                                 loss=f"{running_loss:.4f}")
        if self.on_progress is not None:
            self.on_progress({"stage": "train", "epoch": self.epoch, "epochs": self.epochs,
                              "batch": done, "batches": total, "batches_per_second": rate,
                              "epoch_seconds_left": left, "running_loss": running_loss,
                              "fraction": (self.epoch - 1 + done / total) / self.epochs,
                              "training_mode": self.mode})


def _evaluate(module: nn.Module, data: _Data, k: int) -> float:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            user_emb, item_emb = module()
        return ndcg_at_k(user_emb, item_emb, data.valid_users, data.valid, data.valid_counts,
                         data.history, k)
    finally:
        module.train(was_training)


class LazyTableAdam:
    """Adam for the dense parameters and PyTorch's :class:`torch.optim.SparseAdam` (lazy Adam:
    a row's moments and value change only in the steps whose batch reads it) for embedding
    tables with sparse gradients.

    A mini-batch step reads a few thousand rows of a per-user table, but dense Adam updates
    every row: 100k users x 128 dimensions cost about 0.1 s per step on one CPU thread, so an
    epoch's optimiser time grew with users x steps, the square of the data (see
    :func:`make_optimizer`). It exposes what the training loop and checkpoints use of an
    optimiser: ``param_groups``, ``state`` (one mapping: both optimisers share it),
    ``zero_grad`` and ``step``.

    Args:
        dense (list): Parameters with dense gradients.
        tables (list): :class:`torch.nn.Embedding` modules switched to sparse gradients.
        lr (float): Learning rate of both.
    """

    def __init__(self, dense: list[nn.Parameter], tables: list[nn.Embedding],
                 lr: float) -> None:
        self.tables = list(tables)
        self.dense = torch.optim.Adam(dense, lr=lr, foreach=True)
        self.sparse = torch.optim.SparseAdam([t.weight for t in self.tables], lr=lr)
        self.sparse.state = self.state = self.dense.state
        self.optimizers = (self.dense, self.sparse)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for table in self.tables:  # a restored checkpoint holds the step as a tensor
            state = self.state.get(table.weight)
            if state and torch.is_tensor(state.get("step")):
                state["step"] = int(state["step"])  # SparseAdam counts in an int
        for optimizer in self.optimizers:
            optimizer.step()


def make_optimizer(module: nn.Module, config: TrainConfig, mode: str, device: torch.device,
                   world: int) -> torch.optim.Optimizer | LazyTableAdam:
    """Adam over the module's trainable parameters; in mini-batch training on the CPU (one
    process, no weight decay), the embedding tables the module names in
    ``sparse_tables()`` switch to sparse gradients under :class:`LazyTableAdam`, so a step
    updates the rows it read and not the whole table.

    Measured on ``benchmarks/bench_scale.py``'s data (one thread): dense Adam's step over a
    ``[n, 128]`` table took 19 ms at 20k rows, 99 ms at 100k and 188 ms at 200k, in every
    one of an epoch's steps. Full-graph training reads every row in every step, so it keeps
    plain Adam (small data sets, ml-100k and the demo, train as before); so do several
    processes and GPUs, where the dense update is cheap or the collective needs dense
    gradients.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    tables = []
    if (mode == "minibatch" and device.type == "cpu" and world == 1
            and config.weight_decay == 0 and hasattr(module, "sparse_tables")):
        tables = [t for t in module.sparse_tables() if t.weight.requires_grad]
    if not tables:
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,
                                foreach=True)
    for table in tables:
        table.sparse = True
    lazy = {id(t.weight) for t in tables}
    return LazyTableAdam([p for p in params if id(p) not in lazy], tables, config.lr)


def clip_gradients(parameters: Any, max_norm: float) -> Tensor:
    """:func:`torch.nn.utils.clip_grad_norm_` (2-norm over every gradient), also over the
    sparse gradients of :class:`LazyTableAdam`'s tables, which it does not take: each is
    coalesced (repeated rows summed) and its values count in the norm and are scaled."""
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            norms.append(torch.linalg.vector_norm(p.grad.values()))
        else:
            norms.append(torch.linalg.vector_norm(p.grad))
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        p.grad.mul_(scale)
    return total


def _move_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(device)


def _train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: _Data,
    config: TrainConfig,
    batch_size: int,
    generator: torch.Generator,
    model_generator: torch.Generator,
    device: torch.device,
    should_stop: Callable[[], bool] | None,
    deadline: float | None = None,
    sampler: NeighborSampler | None = None,
    positions: Tensor | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[float | None, bool]:
    """One pass over the positives; returns (mean loss, whether it stopped early).

    ``generator`` shuffles and samples negatives; the forward pass draws its dropout from
    ``model_generator`` (layers from other libraries included, see
    :func:`~recsys_core.rng.draws_from`). With a ``sampler`` each step runs on the subgraph
    sampled around the batch's users, positives and negatives; ``positions`` (a data-parallel
    rank's shard, already shuffled) replace the shuffled pass over every positive. It stops
    early when ``should_stop`` fires or, after at least one step, once
    ``time.perf_counter()`` passes ``deadline``; the loss is ``None`` when no step ran.
    ``progress(done, total, running_loss)`` is called after every step.
    """
    module = net.module if hasattr(net, "module") and isinstance(net.module, nn.Module) else net
    module.train()
    if sampler is not None:
        sampler.training = True
    ctx = distributed.current()
    if positions is None:
        perm = torch.randperm(data.users.numel(), generator=generator, device=device)
    else:
        perm = positions
    n = perm.numel()
    use_amp, amp_dtype = amp_settings(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    regularization = getattr(module, "regularization", None)
    # Layers from other libraries that drop at random draw from the job's generator too.
    routed = draws_without_generator(module)
    total, steps = 0.0, 0
    num_batches = max(1, math.ceil(n / batch_size))
    check_stop = should_stop is not None or deadline is not None
    for start in range(0, n, batch_size):
        want_stop = (should_stop is not None and should_stop()) or (
            deadline is not None and steps and time.perf_counter() > deadline)
        if (distributed.any_rank(want_stop) if ctx is not None and check_stop else want_stop):
            # A pass stopped before its first step has no loss: report None, not NaN.
            return (total / steps if steps else None), True
        batch = perm[start:start + batch_size]
        users, items = data.users[batch], data.items[batch]
        if config.loss == "softmax":
            if config.num_negatives >= data.pool.numel():
                candidates = data.pool
            else:
                pick = torch.randperm(data.pool.numel(), generator=generator,
                                      device=device)[:config.num_negatives]
                candidates = data.pool[pick]
            neg = None
        else:
            neg = sample_negatives(users, config.num_negatives, data.pool, data.seen, generator)
            candidates = None
        user_ids = item_ids = None
        u, i, c, j = users, items, candidates, neg
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp), \
                (draws_from(model_generator) if routed else contextlib.nullcontext()):
            if sampler is None:
                user_emb, item_emb = net(batch if config.hide_targets else None)
            else:
                user_ids = torch.unique(users)
                item_ids = torch.unique(torch.cat([items, neg.reshape(-1) if neg is not None
                                                   else candidates]))
                sub = sampler.subgraph({"user": user_ids.cpu(), "item": item_ids.cpu()},
                                       hidden=batch.cpu() if config.hide_targets else None)
                user_emb, item_emb = net(sampled=to_device(sub, device))
                u = torch.searchsorted(user_ids, users)
                i = torch.searchsorted(item_ids, items)
                c = None if candidates is None else torch.searchsorted(item_ids, candidates)
                j = None if neg is None else torch.searchsorted(item_ids, neg)
        # The loss runs in float32: low-precision logits would blur a softmax over the catalogue.
        user_emb, item_emb = user_emb.float(), item_emb.float()
        if config.loss == "softmax":
            loss = masked_softmax_loss(user_emb, item_emb, u, i, c, data.history,
                                       config.temperature, user_ids, item_ids)
        else:
            ue = user_emb.index_select(0, u)
            pos_score = (ue * item_emb.index_select(0, i)).sum(-1, keepdim=True)
            neg_emb = item_emb.index_select(0, j.reshape(-1)).view(*j.shape, -1)
            neg_score = (ue.unsqueeze(1) * neg_emb).sum(-1)
            loss = (bpr_loss if config.loss == "bpr" else bce_loss)(pos_score, neg_score)
        if regularization is not None:
            loss = loss + regularization(users, items, neg)
        value = float(loss.detach())
        if not math.isfinite(value) and ctx is None:
            return value, False  # ranks keep stepping together; the epoch's mean shows it
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.max_grad_norm is not None:
            scaler.unscale_(optimizer)
            clip_gradients(module.parameters(), config.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        total += value
        steps += 1
        if progress is not None:
            progress(steps, num_batches, total / steps)
    return distributed.mean_over_ranks(total, steps), False


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a dict, ignoring unknown keys (older saved runs)."""
    known = {f for f in TrainConfig.__dataclass_fields__}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


def clone_config(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config`` with ``changes`` applied."""
    out = copy.copy(config)
    for key, value in changes.items():
        setattr(out, key, value)
    out.__post_init__()
    return out
