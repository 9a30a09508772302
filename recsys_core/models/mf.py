"""Matrix factorisation with Bayesian personalised ranking (MF-BPR, Rendle et al. 2009)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..dataset import Dataset
from ..sampling import SamplingPlan
from ..training import batch_l2
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
        epochs (int): Maximum epochs. (default: :obj:`200`)
        batch_size (int): Positives per step. (default: :obj:`4096`)
        lr (float): Adam learning rate. (default: :obj:`5e-3`)
        weight_decay (float): Adam weight decay. (default: :obj:`0.0`)
        loss (str): ``"bpr"``, ``"bce"`` or ``"softmax"``. (default: :obj:`"bpr"`)
        num_negatives (int): Negatives per positive (shared by the batch for softmax).
            (default: :obj:`1`)
        temperature (float): Softmax temperature. (default: :obj:`1.0`)
        hide_targets (bool): Unused by MF (no message passing). (default: :obj:`False`)
        eval_k (int): Validation NDCG cut-off. (default: :obj:`20`)
        patience (int): Evaluations without improvement before stopping. (default: :obj:`10`)
        eval_every (int): Epochs between evaluations. (default: :obj:`1`)
        valid_fraction (float): Per-user validation share when none is given.
            (default: :obj:`0.1`)
        seed (int): Random seed. (default: :obj:`0`)
        device (str): ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``. (default: :obj:`"auto"`)
        amp (bool): Mixed precision on CUDA. (default: :obj:`True`)
        max_grad_norm (float, optional): Gradient clipping. (default: :obj:`10.0`)
        time_limit (float, optional): Training time budget in seconds. (default: :obj:`None`)
        checkpoint_dir (str, optional): Folder for the best checkpoint. (default: :obj:`None`)
        resume (bool): Continue from ``checkpoint_dir``. (default: :obj:`False`)
        show_progress (bool, optional): tqdm bar (``None``: terminals only).
            (default: :obj:`None`)
        refit (bool): Retrain on all interactions for the early-stopped epoch count (see
            :class:`~recsys_core.training.TrainConfig`). (default: :obj:`False`)
        training_mode (str): ``"auto"``, ``"full"`` or ``"minibatch"`` (see
            :class:`~recsys_core.training.TrainConfig`). (default: :obj:`"auto"`)
        num_neighbors (int): Neighbours sampled per node and relation in mini-batch mode.
            (default: :obj:`10`)
    """

    name = "mf"

    def __init__(
        self,
        embedding_dim: int = 64,
        reg_weight: float = 1e-4,
        epochs: int = 200,
        batch_size: int = 4096,
        lr: float = 5e-3,
        weight_decay: float = 0.0,
        loss: str = "bpr",
        num_negatives: int = 1,
        temperature: float = 1.0,
        hide_targets: bool = False,
        eval_k: int = 20,
        patience: int = 10,
        eval_every: int = 1,
        valid_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        max_grad_norm: float | None = 10.0,
        time_limit: float | None = None,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        show_progress: bool | None = None,
        refit: bool = False,
        training_mode: str = "auto",
        num_neighbors: int = 10,
    ) -> None:
        super().__init__(
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, loss=loss,
            num_negatives=num_negatives, temperature=temperature, hide_targets=hide_targets,
            eval_k=eval_k, patience=patience, eval_every=eval_every,
            valid_fraction=valid_fraction, seed=seed, device=device, amp=amp,
            max_grad_norm=max_grad_norm, time_limit=time_limit, checkpoint_dir=checkpoint_dir,
            resume=resume, show_progress=show_progress, refit=refit,
            training_mode=training_mode, num_neighbors=num_neighbors)
        self.embedding_dim = int(embedding_dim)
        self.reg_weight = float(reg_weight)

    def build_module(self, dataset: Dataset) -> MFModule:
        return MFModule(dataset.num_users, dataset.num_items, self.embedding_dim, self.reg_weight)

    def model_config(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim, "reg_weight": self.reg_weight}
