"""LightGCN (He et al., SIGIR 2020) on top of PyG's :class:`~torch_geometric.nn.models.LightGCN`."""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn.models import LightGCN

from ..dataset import Dataset
from ..graph import RATED_BY, RATES
from ..sampling import SamplingPlan
from ..training import TrainOptions, batch_l2
from .embedding import EmbeddingRecommender


class LightGCNModule(nn.Module):
    r"""Users and items as one node set of PyG's LightGCN over the bipartite interaction graph.

    Final embeddings are :math:`\sum_l \alpha_l \mathbf{e}^{(l)}` with
    :math:`\alpha_l = 1/(L+1)` (:meth:`LightGCN.get_embedding`).

    Args:
        num_users (int): Number of users (nodes ``0 .. num_users - 1``).
        num_items (int): Number of items (nodes ``num_users ..``).
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Propagation layers. (default: :obj:`3`)
        reg_weight (float): L2 penalty on the layer-0 embeddings of each batch's users,
            positives and negatives, as in :meth:`LightGCN.recommendation_loss`.
            (default: :obj:`1e-4`)
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 num_layers: int = 3, reg_weight: float = 1e-4) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.reg_weight = reg_weight
        self.lightgcn = LightGCN(num_users + num_items, embedding_dim, num_layers)
        self.register_buffer("users", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("items", torch.zeros(0, dtype=torch.long), persistent=False)

    def reset_parameters(self) -> None:
        self.lightgcn.reset_parameters()

    def set_interactions(self, users: Tensor, items: Tensor) -> None:
        """Propagate over these user-item pairs (both directions)."""
        device = self.lightgcn.embedding.weight.device
        self.users, self.items = users.to(device), items.to(device)

    def sampling_plan(self) -> SamplingPlan:
        """Mini-batch sampling: ``num_layers`` hops over both directions of the interactions
        (the layers are synchronous: hop ``h`` reaches the nodes layer ``L - h`` reads)."""
        rates = torch.stack([self.users, self.items]).cpu()
        relations = [RATES, RATED_BY]
        return SamplingPlan({RATES: rates, RATED_BY: rates.flip(0)},
                            {"user": self.num_users, "item": self.num_items},
                            [relations] * self.lightgcn.num_layers, (RATES, RATED_BY))

    def _sampled(self, batch: HeteroData) -> tuple[Tensor, Tensor]:
        r"""Seed rows from a sampled subgraph. Each sampled edge carries the full graph's
        coefficient :math:`1/\sqrt{d_u d_i}` scaled by ``d_target / s_target`` (full over
        sampled in-degree), so a layer's sum over the sample estimates the full sum without
        bias (exact where a node kept all its neighbours)."""
        users, items = batch["user"].n_id, batch["item"].n_id
        n_users = users.numel()
        deg_user = torch.bincount(self.users, minlength=self.num_users).float()
        deg_item = torch.bincount(self.items, minlength=self.num_items).float()
        forward = batch[RATES].edge_index  # local user -> local item
        backward = batch[RATED_BY].edge_index  # local item -> local user
        src = torch.cat([forward[0], backward[0] + n_users])
        dst = torch.cat([forward[1] + n_users, backward[1]])
        full = torch.cat([deg_user.index_select(0, users), deg_item.index_select(0, items)])
        sampled = torch.bincount(dst, minlength=full.numel()).float()
        weight = (full[src] * full[dst]).clamp(min=1).rsqrt() * (
            full[dst] / sampled[dst].clamp(min=1))
        edge_index = torch.stack([src, dst])
        x = self.lightgcn.embedding(torch.cat([users, items + self.num_users]))
        out = x * self.lightgcn.alpha[0]
        for i, conv in enumerate(self.lightgcn.convs):
            x = conv.propagate(edge_index, x=x, edge_weight=weight)  # weights given: no renorm
            out = out + x * self.lightgcn.alpha[i + 1]
        return out[:batch["user"].batch_size], out[n_users:n_users + batch["item"].batch_size]

    def forward(self, hidden: Tensor | None = None,
                sampled: HeteroData | None = None) -> tuple[Tensor, Tensor]:
        """``(user_emb, item_emb)`` after propagation; ``hidden`` pairs carry no messages.
        Given a ``sampled`` mini-batch, the rows of its seed users and items (see
        :meth:`_sampled`)."""
        if sampled is not None:
            return self._sampled(sampled)
        users, items = self.users, self.items
        if hidden is not None:
            keep = torch.ones(users.numel(), dtype=torch.bool, device=users.device)
            keep[hidden] = False
            users, items = users[keep], items[keep]
        items = items + self.num_users
        edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
        out = self.lightgcn.get_embedding(edge_index)
        return out[:self.num_users], out[self.num_users:]

    def regularization(self, users: Tensor, items: Tensor, negatives: Tensor | None) -> Tensor:
        """The L2 penalty of :func:`~recsys_core.training.batch_l2` on the layer-0 embeddings."""
        emb = self.lightgcn.embedding.weight
        return batch_l2(emb[:self.num_users], emb[self.num_users:], users, items, negatives,
                        self.reg_weight)


class LightGCNRecommender(EmbeddingRecommender):
    r"""LightGCN: free embeddings smoothed over the user-item graph, trained with BPR.

    Args:
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Propagation layers. (default: :obj:`3`)
        reg_weight (float): L2 penalty on batch embeddings. (default: :obj:`1e-4`)
        **train_options: Training settings (:class:`~recsys_core.training.TrainOptions`, each
            documented on :class:`~recsys_core.training.TrainConfig`). LightGCN's defaults
            differ in ``lr`` (:obj:`5e-3`); ``hide_targets`` hides each batch's positive edges
            from propagation.
    """

    name = "lightgcn"
    train_defaults: ClassVar[TrainOptions] = {"lr": 5e-3}

    def __init__(self, embedding_dim: int = 64, num_layers: int = 3, reg_weight: float = 1e-4,
                 **train_options: Unpack[TrainOptions]) -> None:
        super().__init__(**train_options)
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.reg_weight = float(reg_weight)

    def build_module(self, dataset: Dataset) -> LightGCNModule:
        return LightGCNModule(dataset.num_users, dataset.num_items, self.embedding_dim,
                              self.num_layers, self.reg_weight)

    def model_config(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim, "num_layers": self.num_layers,
                "reg_weight": self.reg_weight}
