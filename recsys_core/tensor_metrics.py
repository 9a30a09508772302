"""Ranking metrics on score tensors: the one NDCG@K and top-K that training (early stopping)
and validation-time selection (item-item path, graph filter) share.

:mod:`recsys_core.metrics` holds the DataFrame metrics used for reporting; these work on
``[users, items]`` tensors inside fitting loops, where building frames would cost more than
the scoring itself.
"""

from __future__ import annotations

import torch
from torch import Tensor


def top_k(scores: Tensor, k: int) -> Tensor:
    """``[rows, min(k, items)]`` indices of each row's highest scores, best first (exclude an
    item by setting its score to ``-inf``)."""
    return scores.topk(min(int(k), scores.size(1)), dim=1).indices


def ndcg_from_hits(hits: Tensor, target_counts: Tensor) -> Tensor:
    """Per-row binary-gain NDCG of ranked lists.

    Args:
        hits (Tensor): ``[rows, k]``, nonzero where the item at that rank is a target.
        target_counts (Tensor): ``[rows]`` number of targets of each row (the ideal DCG runs
            over ``min(count, k)`` positions; rows without targets score 0).

    Returns:
        ``[rows]`` float64 NDCG values.
    """
    k = hits.size(1)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64,
                                              device=hits.device))
    ideal_cum = torch.cumsum(discounts, 0)
    counts = target_counts.to(hits.device).long()
    ideal = ideal_cum[(counts.clamp(max=k) - 1).clamp(min=0)]
    dcg = (hits.double() * discounts).sum(1)
    return torch.where(counts > 0, dcg / ideal, torch.zeros_like(dcg))


def ndcg_at_k(scores: Tensor, truth: Tensor, k: int = 20,
              target_counts: Tensor | None = None) -> float:
    """Mean binary-gain NDCG@K over the rows of ``scores``.

    Args:
        scores (Tensor): ``[rows, items]`` scores, ``-inf`` for excluded (seen) items.
        truth (Tensor): ``[rows, items]`` boolean targets.
        k (int): Cut-off. (default: :obj:`20`)
        target_counts (Tensor, optional): ``truth.sum(1)``, when the caller judges many
            score matrices against the same targets. (default: :obj:`None`)
    """
    top = top_k(scores, k)
    hits = truth.gather(1, top)
    counts = truth.sum(1) if target_counts is None else target_counts
    return float(ndcg_from_hits(hits, counts).mean())


def auc_rows(scores: Tensor, positives: Tensor, max_elements: int = 4_000_000
             ) -> tuple[Tensor, Tensor]:
    r"""Per-row ROC AUC of full score vectors (the Mann-Whitney statistic of
    :func:`recsys_core.metrics.auc`, computed on a block of rows instead of a frame).

    The negatives of a row are its items with a finite score that are not positives; a
    positive with a non-finite score (excluded, e.g. seen in training) counts as scored below
    every negative. Ties count one half:
    :math:`\mathrm{AUC}_u = \frac{1}{|P_u|\,|N_u|}\sum_{p,n}([s_p > s_n] + \frac12[s_p = s_n])`.
    Each scored positive is compared with its row (no sort: test items are few per user),
    ``max_elements`` comparisons at a time.

    Args:
        scores (Tensor): ``[rows, items]`` scores (``-inf`` or ``nan`` for excluded items).
        positives (Tensor): ``[rows, items]`` boolean test items.
        max_elements (int): Most row entries compared at once. (default: :obj:`4000000`)

    Returns:
        ``([rows]`` float64 AUC, ``[rows]`` bool: the row has a positive and a negative, so its
        AUC is defined``)``.
    """
    finite = torch.isfinite(scores)
    negative = finite & ~positives
    rows, cols = (positives & finite).nonzero(as_tuple=True)
    won = torch.zeros(scores.size(0), dtype=torch.float64, device=scores.device)
    step = max(1, int(max_elements) // max(scores.size(1), 1))
    for start in range(0, rows.numel(), step):
        r, c = rows[start:start + step], cols[start:start + step]
        row_scores, row_negative = scores[r], negative[r]
        score = scores[r, c].unsqueeze(1)
        below = ((row_scores < score) & row_negative).sum(1).double()
        equal = ((row_scores == score) & row_negative).sum(1).double()
        won.index_add_(0, r, below + 0.5 * equal)
    num_pos = positives.sum(1).double()
    num_neg = negative.sum(1).double()
    defined = (num_pos > 0) & (num_neg > 0)
    auc = torch.where(defined, won / (num_pos * num_neg).clamp(min=1.0),
                      torch.full_like(won, float("nan")))
    return auc, defined
