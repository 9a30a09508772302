"""The sparse GAT kernel: attention terms as one ``[N, in] x [in, heads]`` product per node
type, against PyG's ``GATConv`` (outputs, attention, every gradient), including targets
without incoming edges and relations without edges (what a trimmed mini-batch pass gives it).
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATConv

from recsys_core.models.sparse_attention import SparseGATConv

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py


def pair(dim: int, heads: int, seed: int = 0) -> tuple[GATConv, SparseGATConv]:
    torch.manual_seed(seed)
    ref = GATConv((dim, dim), dim // heads, heads=heads, add_self_loops=False)
    ours = SparseGATConv(dim, dim // heads, heads=heads)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_folded_attention_terms_match_gatconv_with_isolated_targets(heads):
    gen = torch.Generator().manual_seed(heads)
    ns, nd, dim = 30, 20, 8
    ei = torch.unique(torch.stack([torch.randint(ns, (90,), generator=gen),
                                   torch.randint(nd - 5, (90,), generator=gen)]), dim=1)
    ei = ei[:, torch.randperm(ei.size(1), generator=gen)]  # targets 15..19: no edges
    xs = torch.randn(ns, dim, generator=gen, requires_grad=True)
    xd = torch.randn(nd, dim, generator=gen, requires_grad=True)
    ref, ours = pair(dim, heads)
    out_ref, (_, alpha_ref) = ref((xs, xd), ei, return_attention_weights=True)
    out, (_, alpha) = ours((xs, xd), ei, return_attention_weights=True)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alpha, alpha_ref, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(out[15:], ours.bias.expand(5, -1))  # isolated: bias only
    grad = torch.randn(out.shape, generator=gen)
    g_ref = torch.autograd.grad(out_ref, [xs, xd, *ref.parameters()], grad)
    g = torch.autograd.grad(out, [xs, xd, *ours.parameters()], grad)
    names = ["x_src", "x_dst", *(name for name, _ in ours.named_parameters())]
    for name, a, b in zip(names, g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_attention_vectors_are_the_projection_dotted_with_a():
    _, conv = pair(12, 3, seed=1)
    x = torch.randn(7, 12)
    direct = (conv.lin_dst(x).view(7, 3, 4) * conv.att_dst).sum(-1)
    torch.testing.assert_close(x @ conv.attention_vectors(conv.lin_dst.weight, conv.att_dst),
                               direct)


def test_a_relation_without_edges_or_sources_gives_the_bias():
    _, conv = pair(8, 2)
    xs = torch.zeros(0, 8, requires_grad=True)
    xd = torch.randn(4, 8)
    out = conv((xs, xd), torch.zeros(2, 0, dtype=torch.long))
    torch.testing.assert_close(out, conv.bias.expand(4, -1))
    out.sum().backward()  # gradients flow to the bias only
    assert conv.bias.grad is not None
