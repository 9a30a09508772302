r"""The flagship's graph-filter layer: closed-form low-pass filtering of the user-item graph.

LightGCN-style propagation with symmetric degree normalisation, run to its limit, is a
low-pass filter on the item-item graph (Shen et al., "How Powerful is Graph Convolution for
Recommendation?", CIKM 2021, GF-CF). With the normalised biadjacency matrix
:math:`\tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}`, the filter is

.. math::
    \mathbf{W} = \tilde{\mathbf{R}}^\top \tilde{\mathbf{R}}
        + \alpha\, \mathbf{D}_I^{-1/2} \mathbf{V}_k \mathbf{V}_k^\top \mathbf{D}_I^{1/2},

a linear filter (two normalised hops item -> user -> item) plus an ideal low-pass filter over
the ``k`` leading right singular vectors :math:`\mathbf{V}_k` of :math:`\tilde{\mathbf{R}}`.

The linear filter's response is the item-item graph's own spectrum: each eigenvalue
:math:`\lambda` of :math:`\mathbf{P} = \hat{\mathbf{R}}^\top \hat{\mathbf{R}}` passes with gain
:math:`\lambda`, so the few strongest (popularity) directions dominate every user's term.
With a smoothing :math:`\mu > 0` the linear part is replaced by the smooth low-pass response
:math:`h(\lambda) = \lambda / (\lambda + \mu')` (:math:`\mu'` is :math:`\mu` times the mean
diagonal of :math:`\mathbf{P}`, so it is free of the data set's scale), rescaled to pass the
strongest direction with gain 1:

.. math::
    \mathbf{W}_{\mathrm{lin}} = \frac{\lambda_{\max} + \mu'}{\lambda_{\max}}
        (\mathbf{P} + \mu' \mathbf{I})^{-1} \mathbf{P},

over a gentler degree normalisation
:math:`\hat{\mathbf{R}} = \mathbf{D}_U^{-1/4} \mathbf{R} \mathbf{D}_I^{-1/4}`
(:data:`SMOOTHING_EXPONENT`). It flattens the spectrum, so rarer co-occurrence patterns
are heard beside the popular ones. This is the response of a ridge (linear-autoencoder)
regression of each item on the others over the normalised graph, the family EASE belongs
to (without EASE's zero-diagonal constraint): the graph filter and the separate item-item
path are close relatives, and the flagship reports both. :math:`\mu` is chosen on
validation and replaces the plain GF-CF linear filter (:math:`\mu = 0`) only past the
selection margin, like every other part: the plain filter keeps each history edge's share of
a score more concentrated, which explanations read more easily.

Attribute nodes (genre, category, tag ...) join the same graph: with the item-attribute
incidence :math:`\mathbf{A}` and a weight :math:`\gamma`, the filter runs over the stacked
biadjacency :math:`[\mathbf{R};\, \gamma \mathbf{A}^\top]` (attribute nodes beside the users,
degrees counted over both), so two hops item -> attribute -> item add to item -> user -> item.
:math:`\gamma` is chosen on validation like the rest, and kept only past the same margin.
A user's term is :math:`\mathbf{r}_u \mathbf{W}`: a sum over the user's ``rates`` edges, so
each history edge's contribution is exact and explanations stay exact. Unlike a learned
rank-``d`` embedding, the linear part is full-rank, and it costs one sparse product and one
truncated SVD instead of training.

The flagship adds this term to its learned graph-attention score with a weight chosen on
validation (:func:`recsys_core.models.item_item.select_path`), as part of the graph network
itself; the separate item-item path (EASE) comes on top only where validation shows a margin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh, svds
from torch import Tensor

from .base import ProgressCallback
from .item_item import (
    DEFAULT_MARGIN,
    DEFAULT_SCREEN_ITEMS,
    ValidationRanking,
    choose_blend,
    covered_items,
)

#: Ideal low-pass settings tried on validation, as (singular vectors k, weight alpha); k = 0
#: is the linear filter alone. Larger k passes more of the graph's signal (and its noise).
DEFAULT_FILTER_SETTINGS: tuple[tuple[int, float], ...] = (
    (0, 0.0), (32, 0.5), (32, 1.0), (64, 0.5), (64, 1.0), (64, 2.0), (128, 1.0), (128, 2.0))
#: Weights tried for the filter, relative to the spread ratio of the learned graph score
#: and the filter's term: half-octave steps from 1/16 to 16 (the filter may carry most of
#: the score where the learned embeddings are weak; 0, the filter off, is always an option).
DEFAULT_FILTER_WEIGHTS: tuple[float, ...] = tuple(2.0 ** (k / 2) for k in range(-8, 9))
#: Ideal low-pass settings tried over the smoothed linear part: its flatter spectrum needs a
#: lighter low-pass band than the plain filter's.
DEFAULT_SMOOTHED_SETTINGS: tuple[tuple[int, float], ...] = (
    (0, 0.0), (32, 0.1), (32, 0.25), (64, 0.1), (64, 0.25), (128, 0.1))
#: Smoothings :math:`\mu` of the linear part tried on validation (0: the plain GF-CF linear
#: filter), in units of the mean diagonal of the item-item matrix.
DEFAULT_SMOOTHINGS: tuple[float, ...] = (0.0, 4.0, 8.0, 16.0, 32.0)
#: Degree exponent of the smoothed linear part's normalisation (both sides).
SMOOTHING_EXPONENT = 0.25
#: Weights :math:`\gamma` of the attribute nodes tried on validation (0: the plain filter). An
#: attribute row counts ``gamma`` per item it joins, so 1 weighs it like a user of those items.
DEFAULT_ATTRIBUTE_WEIGHTS: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)


class GraphFilterBasis:
    r"""The pieces of the filter over a set of (head) items, computed once: the linear part
    :math:`\tilde{\mathbf{R}}^\top \tilde{\mathbf{R}}` and the leading right singular
    vectors of :math:`\tilde{\mathbf{R}}`, so every ``(k, alpha)`` setting is cheap.

    Args:
        matrix (scipy.sparse matrix): Binary ``[users, n]`` interaction matrix over the items
            the filter covers.
        max_dim (int): Most singular vectors any setting uses. (default: :obj:`128`)
        seed (int): Seed of the truncated SVD's start vector (results are deterministic).
            (default: :obj:`0`)
        item_attributes (scipy.sparse matrix, optional): Binary ``[n, a]`` item-attribute
            incidence over the same items. (default: :obj:`None`)
        attribute_weight (float): Weight :math:`\gamma` of the attribute rows; 0 leaves them
            out. (default: :obj:`0.0`)
        smoothing (float): Smoothing :math:`\mu` of the linear part (see the module
            docstring); 0 keeps the plain linear filter. (default: :obj:`0.0`)
    """

    def __init__(self, matrix: sp.spmatrix, max_dim: int = 128, seed: int = 0,
                 item_attributes: sp.spmatrix | None = None,
                 attribute_weight: float = 0.0, smoothing: float = 0.0,
                 linear: np.ndarray | None = None) -> None:
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}.")
        x, user_degree, item_degree = _stacked(matrix, item_attributes, attribute_weight)
        normalised = sp.diags(user_degree ** -0.5) @ x @ sp.diags(item_degree ** -0.5)
        if linear is not None:  # computed by the caller for this graph and smoothing
            if linear.shape != (x.shape[1], x.shape[1]):
                raise ValueError(f"linear has shape {linear.shape} for {x.shape[1]} items.")
            self.linear = np.ascontiguousarray(linear, dtype=np.float32)
        elif smoothing > 0:
            self.linear = SmoothingGram(smoothing_normalised(x, user_degree, item_degree)
                                        ).linear(smoothing)
        else:
            # C order: the products with history rows then read it without a copy.
            self.linear = np.ascontiguousarray((normalised.T @ normalised).toarray(),
                                               dtype=np.float32)
        k = min(int(max_dim), min(x.shape) - 2)
        if k > 0 and normalised.nnz:
            v0 = np.random.default_rng(seed).standard_normal(min(x.shape))
            _, values, vt = svds(normalised, k=k, v0=v0, random_state=seed)
            vt = vt[np.argsort(-values)]  # strongest first, so setting k takes the first k
        else:
            vt = np.zeros((0, x.shape[1]))
        self.left = (vt.T * (item_degree ** -0.5)[:, None]).astype(np.float32)  # D^-1/2 V
        self.right = (vt * np.sqrt(item_degree)[None, :]).astype(np.float32)  # V^T D^1/2

    def term(self, history: sp.spmatrix, dim: int, weight: float) -> np.ndarray:
        r"""``[rows, n]``: :math:`\mathbf{r}_u \mathbf{W}` for binary history rows over the
        covered items."""
        history = sp.csr_matrix(history, dtype=np.float32)
        out = np.asarray(history @ self.linear, dtype=np.float32)
        dim = min(int(dim), self.left.shape[1])
        if weight > 0 and dim > 0:
            out += np.float32(weight) * ((history @ self.left[:, :dim]) @ self.right[:dim])
        return out

    def weights(self, dim: int, weight: float) -> Tensor:
        r"""``[n, n]`` float32 filter :math:`\mathbf{W}` (row: history item, column: scored
        item)."""
        out = self.linear.copy()
        dim = min(int(dim), self.left.shape[1])
        if weight > 0 and dim > 0:
            out += np.float32(weight) * (self.left[:, :dim] @ self.right[:dim])
        return torch.from_numpy(out)


def _stacked(matrix: sp.spmatrix, item_attributes: sp.spmatrix | None,
             attribute_weight: float) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The filter's biadjacency (users, then ``attribute_weight`` times the attribute rows
    when there are any) with its row and column degrees."""
    x = sp.csr_matrix(matrix, dtype=np.float64)
    if attribute_weight > 0 and item_attributes is not None and item_attributes.shape[1]:
        if item_attributes.shape[0] != x.shape[1]:
            raise ValueError(f"item_attributes has {item_attributes.shape[0]} rows for "
                             f"{x.shape[1]} items.")
        attributes = sp.csr_matrix(item_attributes, dtype=np.float64).T
        x = sp.vstack([x, float(attribute_weight) * attributes]).tocsr()
    # Isolated nodes keep degree 1 (their rows/columns are zero anyway); weighted
    # attribute rows keep their own (possibly fractional) degree.
    user_degree = np.asarray(x.sum(axis=1)).ravel()
    user_degree[user_degree <= 0] = 1.0
    item_degree = np.asarray(x.sum(axis=0)).ravel()
    item_degree[item_degree <= 0] = 1.0
    return x, user_degree, item_degree


def smoothing_normalised(x: sp.spmatrix, user_degree: np.ndarray,
                         item_degree: np.ndarray) -> sp.spmatrix:
    r""":math:`\hat{\mathbf{R}} = \mathbf{D}_U^{-1/4} \mathbf{R} \mathbf{D}_I^{-1/4}`, the
    gentler normalisation of the smoothed linear part (:data:`SMOOTHING_EXPONENT`)."""
    return (sp.diags(user_degree ** -SMOOTHING_EXPONENT) @ x
            @ sp.diags(item_degree ** -SMOOTHING_EXPONENT))


class SmoothingGram:
    r"""The item-item matrix :math:`\mathbf{P} = \hat{\mathbf{R}}^\top \hat{\mathbf{R}}` of
    a degree-normalised biadjacency with its largest eigenvalue, computed once, so the
    smoothed linear part at every smoothing :math:`\mu` (:meth:`linear`) costs one Cholesky
    factorisation and no second product or eigenvalue search.

    Args:
        normalised (scipy.sparse matrix): Degree-normalised ``[rows, n]`` biadjacency
            :math:`\hat{\mathbf{R}}`.
    """

    def __init__(self, normalised: sp.spmatrix) -> None:
        # float32 suffices: the shift bounds the condition number by (top + mu') / mu'.
        self.gram = torch.from_numpy(np.asarray((normalised.T @ normalised).todense(),
                                                dtype=np.float32))
        n = self.gram.shape[0]
        self.mean_diagonal = float(self.gram.diagonal().mean()) if n else 0.0
        # Largest eigenvalue from a fixed start vector (deterministic), for the gain-1 rescale.
        if n > 2:
            self.top = float(eigsh(self.gram.numpy().astype(np.float64), k=1, which="LA",
                                   v0=np.ones(n), return_eigenvectors=False)[0])
        else:
            self.top = float(torch.linalg.eigvalsh(self.gram)[-1]) if n else 0.0

    def linear(self, smoothing: float) -> np.ndarray:
        r"""``[n, n]`` float32 (C order) smoothed linear filter
        :math:`\frac{\lambda_{\max} + \mu'}{\lambda_{\max}}
        (\mathbf{P} + \mu'\mathbf{I})^{-1} \mathbf{P}` with
        :math:`\mu' = \mu \cdot \mathrm{mean}(\mathrm{diag}\,\mathbf{P})`.

        Args:
            smoothing (float): :math:`\mu > 0`.
        """
        n = self.gram.shape[0]
        shift = float(smoothing) * self.mean_diagonal
        if n == 0 or shift <= 0:
            return np.zeros((n, n), dtype=np.float32)
        shifted = self.gram.clone()
        shifted.diagonal().add_(shift)
        # (P + mu I)^-1 P = I - mu (P + mu I)^-1; the shifted matrix is positive definite, so
        # a Cholesky inverse is stable (as in EASE).
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(shifted))
        del shifted
        out = inverse.mul_(-shift)
        out.diagonal().add_(1.0)
        out.mul_((self.top + shift) / max(self.top, 1e-12))
        if not out.is_contiguous() and out.mT.is_contiguous():
            # The symmetric inverse comes in column-major order: its transpose is the same
            # matrix in the C order the products with history rows read without a copy.
            out = out.mT
        return np.ascontiguousarray(out.numpy())


def smoothed_linear(normalised: sp.spmatrix, smoothing: float) -> np.ndarray:
    r"""``[n, n]`` float32 smoothed linear filter
    :math:`\frac{\lambda_{\max} + \mu'}{\lambda_{\max}} (\mathbf{P} + \mu'\mathbf{I})^{-1}
    \mathbf{P}` with :math:`\mathbf{P} = \hat{\mathbf{R}}^\top \hat{\mathbf{R}}` and
    :math:`\mu' = \mu \cdot \mathrm{mean}(\mathrm{diag}\,\mathbf{P})` (see
    :class:`SmoothingGram` for several smoothings of one graph).

    Args:
        normalised (scipy.sparse matrix): Degree-normalised ``[rows, n]`` biadjacency
            :math:`\hat{\mathbf{R}}`.
        smoothing (float): :math:`\mu > 0`.
    """
    return SmoothingGram(normalised).linear(smoothing)


def graph_filter_weights(matrix: sp.spmatrix, ideal_dim: int = 64, ideal_weight: float = 1.0,
                         seed: int = 0) -> Tensor:
    r"""GF-CF weights :math:`\mathbf{W}` (see the module docstring) over every column of
    ``matrix``.

    Args:
        matrix (scipy.sparse matrix): Binary ``[users, n]`` interaction matrix.
        ideal_dim (int): Singular vectors :math:`k` of the ideal low-pass filter; 0 leaves it
            out. (default: :obj:`64`)
        ideal_weight (float): Its weight :math:`\alpha`. (default: :obj:`1.0`)
        seed (int): Seed of the truncated SVD. (default: :obj:`0`)
    """
    return GraphFilterBasis(matrix, ideal_dim, seed).weights(ideal_dim, ideal_weight)


@dataclass
class GraphFilterChoice:
    r"""What :func:`select_graph_filter` chose and saw.

    Attributes:
        ideal_dim (int): Chosen singular vectors of the ideal low-pass part.
        ideal_weight (float): Chosen weight of that part.
        relative_weight (float): Chosen weight relative to the spread ratio (0: filter off).
        valid_ndcg_base (float): Validation NDCG@K of the learned graph score alone.
        valid_ndcg (float): With the chosen filter.
        grid (list[dict]): Every (``attribute_weight``, ``ideal_dim``, ``ideal_weight``,
            ``relative_weight``, ``valid_ndcg``) tried.
        attribute_weight (float): Chosen weight :math:`\gamma` of the attribute nodes (0: the
            plain filter).
        valid_ndcg_plain (float): Validation NDCG@K of the best filter without attribute
            nodes (what the attribute nodes had to beat by the margin).
        smoothing (float): Chosen smoothing :math:`\mu` of the linear part.
    """

    ideal_dim: int
    ideal_weight: float
    relative_weight: float
    valid_ndcg_base: float
    valid_ndcg: float
    grid: list[dict[str, float]] = field(default_factory=list)
    attribute_weight: float = 0.0
    valid_ndcg_plain: float = float("nan")
    #: Chosen smoothing :math:`\mu` of the linear part (0: the plain linear filter).
    smoothing: float = 0.0
    #: The chosen setting's ``[users, items]`` term for the ranking's validation users (unit
    #: weight; ``None`` when off): what the choice was judged on, kept so callers can add it
    #: to the ranking without a second SVD.
    term: Tensor | None = field(default=None, repr=False)
    #: Where the head was screened (see :func:`select_graph_filter`'s ``screen_items``):
    #: every cell tried on the smaller head, whose ``head_items`` it names; ``grid`` then
    #: holds the chosen setting's weights on the full head, and ``valid_ndcg_plain`` is the
    #: screening head's.
    screen_grid: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"ideal_dim": self.ideal_dim, "ideal_weight": self.ideal_weight,
                "relative_weight": self.relative_weight,
                "attribute_weight": self.attribute_weight, "smoothing": self.smoothing,
                "valid_ndcg_base": self.valid_ndcg_base,
                "valid_ndcg_plain": self.valid_ndcg_plain, "valid_ndcg": self.valid_ndcg}


@torch.no_grad()
def select_graph_filter(
    ranking: ValidationRanking,
    settings: Sequence[tuple[int, float]] | None = None,
    relative_weights: Sequence[float] = DEFAULT_FILTER_WEIGHTS,
    max_items: int = 5000,
    margin: float | None = DEFAULT_MARGIN,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    item_attributes: sp.spmatrix | None = None,
    attribute_weights: Sequence[float] = DEFAULT_ATTRIBUTE_WEIGHTS,
    smoothings: Sequence[float] = DEFAULT_SMOOTHINGS,
    screen_items: int | None = DEFAULT_SCREEN_ITEMS,
) -> GraphFilterChoice:
    r"""Choose the filter's smoothing ``mu``, ``(k, alpha)``, attribute weight and overall
    weight on validation (see :func:`~recsys_core.models.item_item.choose_blend`: the best
    neighbourhood of the grid, on only past a relative ``margin`` over the learned score
    alone).

    The smoothing is chosen first, on the linear part alone (one Cholesky solve each over one
    shared item-item matrix, no SVD), and replaces the plain linear filter only when it beats
    it by the ``margin``; ``(k, alpha)`` are then chosen at that smoothing.

    Attribute nodes are side information that must pay: each ``gamma > 0`` is tried at the
    plain filter's chosen ``(k, alpha)`` (every setting where the plain filter stayed off) and
    replaces the best filter so far only when it beats it by the same relative ``margin`` on
    validation.

    Args:
        ranking (ValidationRanking): Validation users and the learned graph scores.
        settings (sequence of (int, float), optional): ``(k, alpha)`` settings to try;
            ``None``: :data:`DEFAULT_FILTER_SETTINGS` over the plain linear part,
            :data:`DEFAULT_SMOOTHED_SETTINGS` over a smoothed one. (default: :obj:`None`)
        relative_weights (sequence of float): Weights in units of the spread ratio.
            (default: :data:`DEFAULT_FILTER_WEIGHTS`)
        max_items (int): Head items the filter covers. (default: :obj:`5000`)
        margin (float, optional): Relative validation gain needed to switch the filter (and
            then its attribute nodes) on (``None``: keep a setting the user fixed).
            (default: :data:`~recsys_core.models.item_item.DEFAULT_MARGIN`)
        seed (int): Seed of the truncated SVD. (default: :obj:`0`)
        on_progress (callable, optional): Called with ``stage="graph-filter"``.
        should_stop (callable, optional): Polled between settings.
        item_attributes (scipy.sparse matrix, optional): Binary ``[items, a]`` item-attribute
            incidence over every item; ``None`` or no columns: the plain filter only.
            (default: :obj:`None`)
        attribute_weights (sequence of float): Attribute weights :math:`\gamma` to try.
            (default: :data:`DEFAULT_ATTRIBUTE_WEIGHTS`)
        smoothings (sequence of float): Smoothings :math:`\mu` of the linear part to try
            (0: the plain linear filter). (default: :data:`DEFAULT_SMOOTHINGS`)
        screen_items (int, optional): Where the head holds more items than this and there
            is something to choose (``margin`` given), every setting is chosen as above on
            the ``screen_items`` most interacted items (each smoothing and attribute weight
            costs a factorisation cubic in the head), and only the chosen one is built on the
            full head, where its weight and the margin over the learned score are judged
            again; a filter off on the screening head stays off. ``None`` or 0: everything
            on the full head. (default:
            :data:`~recsys_core.models.item_item.DEFAULT_SCREEN_ITEMS`)
    """
    items = covered_items(ranking.train_matrix, max_items)
    if screen_items and len(items) > screen_items and margin is not None:
        return _screened_filter(ranking, items, screen_items, settings, relative_weights,
                                margin, seed, on_progress, should_stop, item_attributes,
                                attribute_weights, smoothings)
    history = ranking.history[:, items]
    head_attributes = _head_attributes(item_attributes, items)
    gammas = [float(g) for g in attribute_weights] if head_attributes is not None else [0.0]
    if head_attributes is None or not head_attributes.shape[1]:
        gammas = [0.0]
    gammas = sorted(set(gammas))
    weights = [float(w) for w in relative_weights if w > 0]
    smoothings = sorted({float(m) for m in smoothings}) or [0.0]
    steps = len(gammas) + (len(smoothings) > 1)
    grid: list[dict[str, float]] = []
    head_matrix = ranking.train_matrix[:, items]

    smoothing = smoothings[0]
    swept: SmoothingGram | None = None  # the head's smoothing Gram, shared by every mu
    if len(smoothings) > 1:
        def linear_term(row: int) -> Tensor:
            nonlocal swept
            if smoothings[row] <= 0:
                return _placed(ranking, items,
                               GraphFilterBasis(head_matrix, 0, seed).term(history, 0, 0.0))
            if swept is None:
                swept = SmoothingGram(smoothing_normalised(*_stacked(head_matrix, None, 0.0)))
            linear_part = swept.linear(smoothings[row])
            return _placed(ranking, items,
                           np.asarray(sp.csr_matrix(history, dtype=np.float32) @ linear_part,
                                     dtype=np.float32))

        def linear_report(row: int, best_ndcg: float) -> None:
            if on_progress is not None:
                on_progress({"stage": "graph-filter",
                             "fraction": (row + 1) / len(smoothings) / steps,
                             "valid_ndcg": best_ndcg})

        # Only which smoothing is best is wanted here: the filter's margin is judged below.
        linear = choose_blend(ranking, linear_term, len(smoothings), relative_weights, None,
                              should_stop, linear_report, items)
        smoothing = smoothings[max(linear.row, 0)]
        # Like every other part, smoothing must pay: it replaces the plain linear filter only
        # past the margin (the plain one keeps each history edge's share more concentrated).
        if smoothing > 0 and smoothings[0] == 0.0 and margin is not None:
            plain_best = float(np.max(linear.table[0], initial=-np.inf))
            if not linear.valid_ndcg > plain_best * (1.0 + margin):
                smoothing = 0.0
        grid += [{"smoothing": m, "attribute_weight": 0.0, "ideal_dim": 0,
                  "ideal_weight": 0.0, "relative_weight": w,
                  "valid_ndcg": float(linear.table[r, c])}
                 for r, m in enumerate(smoothings) for c, w in enumerate(weights)
                 if np.isfinite(linear.table[r, c])]
    if settings is None:
        settings = DEFAULT_SMOOTHED_SETTINGS if smoothing > 0 else DEFAULT_FILTER_SETTINGS
    done = steps - len(gammas)

    # Each candidate is (blend over its settings, gamma, those settings, its term function).
    best: tuple[Any, float, Sequence[tuple[int, float]], Any] | None = None
    plain_ndcg = float("nan")
    for index, gamma in enumerate(gammas):
        if should_stop is not None and should_stop():
            break
        # Attribute weights are tried at the plain filter's chosen (k, alpha) (all settings
        # where it stayed off): one SVD and one weight sweep per gamma, not a whole grid.
        tried = (settings if gamma == 0 or best is None or best[0].row < 0
                 else [best[2][best[0].row]])
        max_dim = max(k for k, _ in tried) if tried else 0
        # The plain filter at a swept smoothing reuses the sweep's Gram (one factorisation).
        reuse = gamma == 0 and smoothing > 0 and swept is not None
        basis = GraphFilterBasis(head_matrix, max_dim, seed, head_attributes, gamma,
                                 smoothing, swept.linear(smoothing) if reuse else None)

        def term(row: int, basis: GraphFilterBasis = basis,
                 tried: Sequence[tuple[int, float]] = tried) -> Tensor:
            return _placed(ranking, items, basis.term(history, *tried[row]))

        def report(row: int, best_ndcg: float, index: int = index,
                   rows: int = len(tried)) -> None:
            if on_progress is not None:
                on_progress({"stage": "graph-filter",
                             "fraction": (done + index + (row + 1) / rows) / steps,
                             "valid_ndcg": best_ndcg})

        blend = choose_blend(ranking, term, len(tried), relative_weights, margin,
                             should_stop, report, items)
        grid += [{"smoothing": smoothing, "attribute_weight": gamma, "ideal_dim": int(tried[r][0]),
                  "ideal_weight": float(tried[r][1]), "relative_weight": w,
                  "valid_ndcg": float(blend.table[r, c])}
                 for r in range(blend.table.shape[0]) for c, w in enumerate(weights)
                 if np.isfinite(blend.table[r, c])]
        if gamma == 0:
            plain_ndcg = blend.valid_ndcg
            best = (blend, gamma, tried, term)
            continue
        # Attribute nodes must beat the best filter so far (plain, or the learned score alone
        # where the plain filter stayed off) by the margin, as the filter itself had to.
        if blend.row < 0:
            continue
        if best is None:  # no plain filter tried (a fixed gamma): passing the margin suffices
            best = (blend, gamma, tried, term)
            continue
        bar = best[0].valid_ndcg
        if blend.valid_ndcg > (bar * (1.0 + margin) if margin is not None else bar):
            best = (blend, gamma, tried, term)
    if best is None:  # stopped before anything was tried
        base = ranking.base_ndcg
        return GraphFilterChoice(0, 0.0, 0.0, base, base, grid, 0.0, float("nan"))
    blend, gamma, tried, term = best
    dim, alpha = tried[max(blend.row, 0)] if tried else (0, 0.0)
    on = blend.row >= 0
    choice = GraphFilterChoice(int(dim), float(alpha), blend.relative_weight,
                               blend.valid_ndcg_base, blend.valid_ndcg, grid,
                               gamma if on else 0.0, plain_ndcg, smoothing if on else 0.0)
    if blend.row >= 0:
        choice.term = term(blend.row)
    return choice


def _head_attributes(item_attributes: sp.spmatrix | None, items: np.ndarray
                     ) -> sp.csr_matrix | None:
    """The item-attribute incidence of the head ``items``, without attributes none of them
    has (``None`` without attributes)."""
    if item_attributes is None or not item_attributes.shape[1]:
        return None
    head = sp.csr_matrix(item_attributes)[items]
    return head[:, np.flatnonzero(head.getnnz(axis=0))]


def _placed(ranking: ValidationRanking, items: np.ndarray, values: np.ndarray) -> Tensor:
    """``[users, all items]`` term from the head columns' ``values`` (0 elsewhere)."""
    out = torch.zeros(len(ranking.users), ranking.train_matrix.shape[1])
    out[:, torch.from_numpy(items)] = torch.from_numpy(values)
    return out


def _screened_filter(ranking: ValidationRanking, items: np.ndarray, screen_items: int,
                     settings: Sequence[tuple[int, float]] | None,
                     relative_weights: Sequence[float], margin: float, seed: int,
                     on_progress: ProgressCallback | None,
                     should_stop: Callable[[], bool] | None,
                     item_attributes: sp.spmatrix | None, attribute_weights: Sequence[float],
                     smoothings: Sequence[float]) -> GraphFilterChoice:
    """:func:`select_graph_filter` on the ``screen_items`` head, then the chosen setting on
    the full head ``items`` (its weight and the margin judged there)."""
    def screen_progress(event: dict[str, Any]) -> None:
        if on_progress is not None:
            on_progress({**event, "fraction": 0.8 * event["fraction"]})

    screened = select_graph_filter(ranking, settings, relative_weights, screen_items, margin,
                                   seed, screen_progress, should_stop, item_attributes,
                                   attribute_weights, smoothings, screen_items=None)
    screened.screen_grid, screened.grid = screened.grid, []
    screened.term = None
    if screened.relative_weight <= 0 or (should_stop is not None and should_stop()):
        return screened
    head_attributes = (_head_attributes(item_attributes, items)
                       if screened.attribute_weight > 0 else None)
    basis = GraphFilterBasis(ranking.train_matrix[:, items], screened.ideal_dim, seed,
                             head_attributes, screened.attribute_weight, screened.smoothing)
    history = ranking.history[:, items]

    def term(row: int) -> Tensor:
        return _placed(ranking, items,
                       basis.term(history, screened.ideal_dim, screened.ideal_weight))

    def report(row: int, best_ndcg: float) -> None:
        if on_progress is not None:
            on_progress({"stage": "graph-filter", "fraction": 1.0, "valid_ndcg": best_ndcg})

    blend = choose_blend(ranking, term, 1, relative_weights, margin, should_stop, report,
                         items)
    weights = [float(w) for w in relative_weights if w > 0]
    screened.grid = [{"smoothing": screened.smoothing,
                      "attribute_weight": screened.attribute_weight,
                      "ideal_dim": screened.ideal_dim, "ideal_weight": screened.ideal_weight,
                      "relative_weight": w, "head_items": len(items),
                      "valid_ndcg": float(blend.table[0, c])}
                     for c, w in enumerate(weights) if np.isfinite(blend.table[0, c])]
    screened.valid_ndcg_base, screened.valid_ndcg = blend.valid_ndcg_base, blend.valid_ndcg
    screened.relative_weight = blend.relative_weight
    if blend.row < 0:  # the full head did not clear the margin: off
        screened.ideal_dim, screened.ideal_weight = 0, 0.0
        screened.attribute_weight, screened.smoothing = 0.0, 0.0
        return screened
    screened.term = term(0)
    return screened


def item_attribute_matrix(data: Any, num_items: int) -> sp.csr_matrix:
    """Binary ``[items, a]`` incidence of every attribute node type of a flagship graph
    (``(item, has_*, attribute)`` relations of :func:`recsys_core.graph.build_hetero_graph`),
    the node types side by side."""
    blocks = []
    for node_type in sorted(getattr(data, "attr_columns", {}) or {}):
        for edge_type in data.edge_types:
            if edge_type[0] == "item" and edge_type[2] == node_type:
                src, dst = data[edge_type].edge_index.numpy()
                blocks.append(sp.csr_matrix(
                    (np.ones(len(src), dtype=np.float32), (src, dst)),
                    shape=(num_items, data[node_type].num_nodes)))
    if not blocks:
        return sp.csr_matrix((num_items, 0), dtype=np.float32)
    out = sp.hstack(blocks).tocsr()
    out.data[:] = 1.0  # duplicate edges count once
    return out


def describe_filter_choice(summary: dict[str, Any]) -> str:
    """A :meth:`GraphFilterChoice.summary` in words."""
    if summary["relative_weight"] <= 0:
        return "graph filter off (it did not help on validation)"
    attributes = summary.get("attribute_weight", 0.0) or 0.0
    via = f", through attribute nodes with gamma={attributes:g}" if attributes > 0 else ""
    smoothing = summary.get("smoothing", 0.0) or 0.0
    smoothed = f"smoothing mu={smoothing:g}, " if smoothing > 0 else ""
    return (f"graph filter: {smoothed}k={summary['ideal_dim']}, "
            f"alpha={summary['ideal_weight']:g}, "
            f"weight={summary['relative_weight']:.3g}{via} (validation NDCG "
            f"{summary['valid_ndcg_base']:.4f} without it, "
            f"{summary['valid_ndcg']:.4f} with it)")


def describe_relations(relations: dict[str, Any]) -> str:
    """The side-information groups relation selection kept and switched off
    (``train_result.selected["relations"]``), in words."""
    text = "side information kept: " + (", ".join(relations["kept"]) or "none")
    if relations["dropped"]:
        text += " (switched off, no validation gain: " + ", ".join(relations["dropped"]) + ")"
    return text


def describe_selection(selected: dict[str, Any]) -> str:
    """The flagship's validation choices (``train_result.selected``) in words: the
    side-information groups kept, the popularity prior, the graph filter, then the item-item
    path; empty when nothing was chosen."""
    from .item_item import describe_choice
    from .popularity_prior import describe_prior_choice

    parts = [describe_relations(selected["relations"])] if selected.get("relations") else []
    if selected.get("popularity_prior"):
        parts.append(describe_prior_choice(selected["popularity_prior"]))
    if selected.get("graph_filter"):
        parts.append(describe_filter_choice(selected["graph_filter"]))
    if selected.get("item_item"):
        parts.append(describe_choice(selected["item_item"]))
    return "; ".join(parts)
