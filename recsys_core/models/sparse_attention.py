"""Sparse graph-attention kernels: GAT on CSR sparse-dense products.

:class:`SparseGATConv` computes the maths of PyG's ``GATConv`` between a source and a target
node set with a CSR sparse-dense product for the aggregation (:class:`_AttentionSpMM`) and a
segment softmax over each target's incoming edges (:func:`segment_softmax`), so memory and time
grow with ``E * heads`` rather than ``E * channels``. :class:`SortedEdges` is the sorted (CSR)
form of a relation's edges, built once per forward pass and shared by every layer.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.inits import glorot

from ..rng import masked_dropout


class SortedEdges(NamedTuple):
    """A bipartite edge set in CSR form (by target) plus its transpose (by source).

    Built once per forward pass and shared by every layer's convolution of the relation.
    """

    perm: Tensor  # sorted position -> position in the original edge_index
    row: Tensor  # target of each sorted edge
    col: Tensor  # source of each sorted edge
    rowptr: Tensor  # [num_dst + 1]
    perm_t: Tensor  # sorted position of each edge when ordered by source
    colptr: Tensor  # [num_src + 1]
    num_src: int
    num_dst: int

    @staticmethod
    def build(edge_index: Tensor, num_src: int, num_dst: int) -> SortedEdges:
        src, dst = edge_index[0].long(), edge_index[1].long()
        perm = torch.argsort(dst * max(num_src, 1) + src)
        row, col = dst.index_select(0, perm), src.index_select(0, perm)
        perm_t = torch.argsort(col * max(num_dst, 1) + row)
        rowptr = _ptr(row, num_dst)
        colptr = _ptr(col.index_select(0, perm_t), num_src)
        return SortedEdges(perm, row, col, rowptr, perm_t, colptr, num_src, num_dst)

    def matrix(self, values: Tensor, transpose: bool = False) -> Tensor:
        """Sparse CSR ``[num_dst, num_src]`` (or its transpose) of ``values`` (sorted order)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            if transpose:
                return torch.sparse_csr_tensor(self.colptr, self.row.index_select(0, self.perm_t),
                                               values.index_select(0, self.perm_t),
                                               (self.num_src, self.num_dst),
                                               check_invariants=False)
            return torch.sparse_csr_tensor(self.rowptr, self.col, values,
                                           (self.num_dst, self.num_src), check_invariants=False)


def _ptr(sorted_index: Tensor, size: int) -> Tensor:
    ptr = torch.zeros(size + 1, dtype=torch.long, device=sorted_index.device)
    ptr[1:] = torch.cumsum(torch.bincount(sorted_index, minlength=size), 0)
    return ptr


class _AttentionSpMM(torch.autograd.Function):
    """``out[:, h] = A_h @ x[:, h]`` with ``A_h`` the sparse matrix of attention weights.

    Backward: ``grad_x[:, h] = A_h^T @ grad_out[:, h]`` and, for each edge ``(i, j)``,
    ``grad_alpha[e, h] = <grad_out[i, h], x[j, h]>`` (a sampled dense-dense product), so no
    ``[num_edges, channels]`` tensor is ever materialised.
    """

    @staticmethod
    def forward(ctx, alpha: Tensor, x: Tensor, edges: SortedEdges) -> Tensor:
        ctx.save_for_backward(alpha, x)
        ctx.edges = edges
        heads = [edges.matrix(alpha[:, h]) @ x[:, h].contiguous() for h in range(x.size(1))]
        return torch.stack(heads, dim=1)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        alpha, x = ctx.saved_tensors
        edges: SortedEdges = ctx.edges
        grad_alpha = grad_x = None
        grad_out = grad_out.contiguous()
        if ctx.needs_input_grad[1]:
            grad_x = torch.stack([edges.matrix(alpha[:, h], transpose=True)
                                  @ grad_out[:, h].contiguous() for h in range(x.size(1))], 1)
        if ctx.needs_input_grad[0]:
            pattern = edges.matrix(torch.zeros_like(alpha[:, 0]))
            grad_alpha = torch.stack([
                torch.sparse.sampled_addmm(pattern, grad_out[:, h].contiguous(),
                                           x[:, h].T.contiguous(), beta=0.0).values()
                for h in range(x.size(1))], 1)
        return grad_alpha, grad_x, None


def segment_softmax(logits: Tensor, edges: SortedEdges) -> Tensor:
    """Softmax of ``[E, H]`` logits over each target's incoming edges (sorted order)."""
    with torch.no_grad():  # the shift cancels out of the softmax: no gradient needed
        lengths = edges.rowptr[1:] - edges.rowptr[:-1]
        row_max = torch.segment_reduce(logits.float(), "max", lengths=lengths, axis=0)
        row_max = torch.nan_to_num(row_max, neginf=0.0)
    ex = torch.exp(logits - row_max.index_select(0, edges.row))
    # Segment sums from a float64 prefix sum: one fast cumsum instead of a scatter.
    prefix = torch.cumsum(ex.double(), 0)
    prefix = torch.cat([prefix.new_zeros(1, ex.size(1)), prefix])
    sums = (prefix[edges.rowptr[1:]] - prefix[edges.rowptr[:-1]]).to(ex.dtype)
    return ex / sums.index_select(0, edges.row).clamp(min=1e-30)


class SparseGATConv(nn.Module):
    r"""Graph attention (GAT, Veličković et al. 2018) between a source and a target node set,
    computed with sparse matrix kernels.

    .. math::
        \alpha_{ij}^{h} = \mathrm{softmax}_{j \in \mathcal{N}(i)}\big(\mathrm{LeakyReLU}(
        \mathbf{a}_{s}^{h\top}\mathbf{W}_s^h\mathbf{x}_j + \mathbf{a}_{t}^{h\top}\mathbf{W}_t^h
        \mathbf{x}_i)\big), \qquad
        \mathbf{x}'_i = \big\Vert_{h} \sum_{j} \alpha_{ij}^h \mathbf{W}_s^h \mathbf{x}_j
        + \mathbf{b}

    Numerically the same as :class:`torch_geometric.nn.GATConv` with ``(in, in)`` channels,
    ``add_self_loops=False`` and ``concat=True`` (same parameter names, so weights load into
    either), but the aggregation is a CSR sparse-dense product and the attention gradient a
    sampled dense-dense product, so memory and time grow with ``E * heads`` instead of
    ``E * channels`` (several times faster on CPU).

    Args:
        in_channels (int): Input size of source and target features.
        out_channels (int): Output size per head.
        heads (int): Attention heads (outputs concatenated). (default: :obj:`1`)
        negative_slope (float): LeakyReLU slope. (default: :obj:`0.2`)
        dropout (float): Dropout on attention coefficients. (default: :obj:`0.0`)
    """

    generator: torch.Generator | None = None  # the job's, in training (rng.attach_generator)

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1,
                 negative_slope: float = 0.2, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.negative_slope, self.dropout = negative_slope, dropout
        self.lin_src = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.lin_dst = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
        self.bias = nn.Parameter(torch.empty(heads * out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (self.lin_src.weight, self.lin_dst.weight, self.att_src, self.att_dst):
            glorot(weight)
        nn.init.zeros_(self.bias)

    def attention_vectors(self, weight: Tensor, att: Tensor) -> Tensor:
        r"""``[in, heads]``: column ``h`` is :math:`\mathbf{W}^{h\top}\mathbf{a}^h`, so that
        ``x @ attention_vectors(W, a)`` is each node's attention term
        :math:`\mathbf{a}^{h\top}\mathbf{W}^h\mathbf{x}` (one ``[N, in] x [in, heads]``
        product instead of a ``[N, heads * out]`` projection)."""
        H, C = self.heads, self.out_channels
        return (weight.view(H, C, -1) * att.view(H, C, 1)).sum(1).T

    def forward(
        self,
        x: tuple[Tensor, Tensor],
        edge_index: Tensor,
        return_attention_weights: bool | None = None,
        edges: SortedEdges | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """Args:
            x ((Tensor, Tensor)): Source ``[N_s, in]`` and target ``[N_t, in]`` features.
            edge_index (Tensor): ``[2, E]`` source -> target edges.
            return_attention_weights (bool, optional): Also return
                ``(edge_index, alpha [E, heads])`` in ``edge_index``'s order, as PyG does.
            edges (SortedEdges, optional): Precomputed sorted form of ``edge_index``.
        """
        x_src, x_dst = x
        H, C = self.heads, self.out_channels
        if edges is None:
            edges = SortedEdges.build(edge_index, x_src.size(0), x_dst.size(0))
        h_src = self.lin_src(x_src).view(-1, H, C)
        # The attention terms as one product per node with the [in, heads] vectors W^T a:
        # the same maths as (x W^T) . a, without the targets' [N_t, heads * out] projection
        # (only its dot product with a_dst is ever used).
        a_src = x_src @ self.attention_vectors(self.lin_src.weight, self.att_src)
        a_dst = x_dst @ self.attention_vectors(self.lin_dst.weight, self.att_dst)
        logits = F.leaky_relu(a_src.index_select(0, edges.col) + a_dst.index_select(0, edges.row),
                              self.negative_slope)
        alpha = segment_softmax(logits, edges)
        alpha = masked_dropout(alpha, self.dropout, self.training, self.generator)
        if torch.is_autocast_enabled(h_src.device.type):  # sparse kernels run in float32
            alpha, h_src = alpha.float(), h_src.float()
        out = _AttentionSpMM.apply(alpha, h_src, edges).reshape(-1, H * C) + self.bias
        if return_attention_weights is not None:
            original = torch.empty_like(alpha)
            original[edges.perm] = alpha
            return out, (edge_index, original)
        return out


__all__ = ["SortedEdges", "SparseGATConv", "segment_softmax"]
