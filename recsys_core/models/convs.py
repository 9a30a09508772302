"""The flagship's per-relation convolutions and the factory that builds them by name."""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv, GINConv, MessagePassing, SAGEConv
from torch_geometric.utils import degree

from .sparse_attention import SparseGATConv

CONVS = ("gat", "gatv2", "gcn", "sage", "gin")
ATTENTION_CONVS = ("gat", "gatv2")


class BipartiteGCNConv(MessagePassing):
    r"""GCN propagation between two node sets:
    :math:`\mathbf{x}'_i = \sum_{j \in \mathcal{N}(i)} (d_i d_j)^{-1/2} \mathbf{W}\mathbf{x}_j
    + \mathbf{b}`.

    Args:
        in_channels (int): Input size.
        out_channels (int): Output size.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(aggr="add")
        self.lin = nn.Linear(in_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin.reset_parameters()

    def forward(self, x: tuple[Tensor, Tensor], edge_index: Tensor) -> Tensor:
        x_src, x_dst = x
        deg_src = degree(edge_index[0], x_src.size(0)).clamp(min=1)
        deg_dst = degree(edge_index[1], x_dst.size(0)).clamp(min=1)
        norm = (deg_src[edge_index[0]] * deg_dst[edge_index[1]]).rsqrt()
        out = self.propagate(edge_index, x=(x_src @ self.lin.weight.T, None), norm=norm,
                             size=(x_src.size(0), x_dst.size(0)))
        return out + self.lin.bias

    def message(self, x_j: Tensor, norm: Tensor) -> Tensor:
        return norm.view(-1, 1) * x_j


def make_conv(conv: str, dim: int, heads: int, attention_dropout: float) -> nn.Module:
    """One relation's convolution from ``dim`` to ``dim`` features on (source, target) pairs."""
    if conv == "gat":
        return SparseGATConv(dim, dim // heads, heads=heads, dropout=attention_dropout)
    if conv == "gatv2":
        return GATv2Conv((dim, dim), dim // heads, heads=heads, concat=True,
                         add_self_loops=False, dropout=attention_dropout)
    if conv == "gcn":
        return BipartiteGCNConv(dim, dim)
    if conv == "sage":
        return SAGEConv((dim, dim), dim, aggr="mean")
    if conv == "gin":
        return GINConv(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)),
                       train_eps=True)
    raise ValueError(f"conv must be one of {CONVS}, got {conv!r}.")


__all__ = ["ATTENTION_CONVS", "CONVS", "BipartiteGCNConv", "make_conv"]
