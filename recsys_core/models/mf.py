"""Matrix factorisation with Bayesian personalised ranking (MF-BPR, Rendle et al. 2009)."""

from __future__ import annotations

from typing import Any, ClassVar, Unpack

from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..dataset import Dataset
from ..sampling import SamplingPlan
from ..training import TrainOptions, batch_l2
from .embedding import EmbeddingRecommender


class MFModule(nn.Module):
    r"""Free user and item embeddings; the score is :math:`\mathbf{p}_u^\top \mathbf{q}_i`.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int): Size of each embedding. (default: :obj:`64`)
        reg_weight (float): L2 penalty on the embeddings of each batch's users, positives and
            negatives, per positive. (default: :obj:`1e-4`)
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 reg_weight: float = 1e-4) -> None:
        super().__init__()
        self.reg_weight = reg_weight
        self.user = nn.Embedding(num_users, embedding_dim)
        self.item = nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def set_interactions(self, users: Tensor, items: Tensor) -> None:
        """MF has no graph: nothing to do."""

    def sampling_plan(self) -> SamplingPlan:
        """No graph: a mini-batch is its seed users and items (no hops)."""
        return SamplingPlan({}, {"user": self.user.num_embeddings,
                                 "item": self.item.num_embeddings}, [])

    def forward(self, hidden: Tensor | None = None,
                sampled: HeteroData | None = None) -> tuple[Tensor, Tensor]:
        """``(user_emb [num_users, d], item_emb [num_items, d])``; ``hidden`` is ignored.
        Given a ``sampled`` mini-batch, the rows of its seed users and items."""
        if sampled is not None:
            return (self.user(sampled["user"].n_id[:sampled["user"].batch_size]),
                    self.item(sampled["item"].n_id[:sampled["item"].batch_size]))
        return self.user.weight, self.item.weight

    def regularization(self, users: Tensor, items: Tensor, negatives: Tensor | None) -> Tensor:
        """:math:`\\lambda (\\|p_u\\|^2 + \\|q_i\\|^2 + \\|q_j\\|^2)` averaged over the batch."""
        return batch_l2(self.user.weight, self.item.weight, users, items, negatives,
                        self.reg_weight)


class MFRecommender(EmbeddingRecommender):
    r"""MF-BPR: user/item embeddings trained on :math:`-\log\sigma(s_{ui} - s_{uj})`.

    Args:
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        reg_weight (float): L2 penalty on batch embeddings. (default: :obj:`1e-4`)
        **train_options: Training settings (:class:`~recsys_core.training.TrainOptions`, each
            documented on :class:`~recsys_core.training.TrainConfig`). MF's defaults differ in
            ``lr`` (:obj:`5e-3`); ``hide_targets`` has no effect (no message passing).
    """

    name = "mf"
    train_defaults: ClassVar[TrainOptions] = {"lr": 5e-3}

    def __init__(self, embedding_dim: int = 64, reg_weight: float = 1e-4,
                 **train_options: Unpack[TrainOptions]) -> None:
        super().__init__(**train_options)
        self.embedding_dim = int(embedding_dim)
        self.reg_weight = float(reg_weight)

    def build_module(self, dataset: Dataset) -> MFModule:
        return MFModule(dataset.num_users, dataset.num_items, self.embedding_dim, self.reg_weight)

    def model_config(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim, "reg_weight": self.reg_weight}
