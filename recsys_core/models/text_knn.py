"""Content-only baseline: users are the mean text embedding of what they interacted with."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..dataset import DEFAULT_TEXT_TEMPLATE, Dataset
from .base import OnePassRecommender, ProgressCallback, check_state_tensors


class TextKNNRecommender(OnePassRecommender):
    r"""Cosine similarity between a user's text profile and each item's text embedding.

    Item texts (title, description and attributes, formatted by ``template``) are embedded by
    a pretrained sentence encoder and L2-normalised, :math:`\hat{\mathbf{e}}_i`. A user's
    profile is the mean over their training items,
    :math:`\mathbf{p}_u = \frac{1}{|\mathcal{N}_u|}\sum_{i \in \mathcal{N}_u} \hat{\mathbf{e}}_i`,
    and the score is the cosine :math:`s_{ui} = \cos(\mathbf{p}_u, \hat{\mathbf{e}}_i)`. No
    interaction of the candidate item is used, so cold items (metadata only) are scored like
    any other. Users without training interactions score 0 everywhere.

    Args:
        item_text_embeddings (Tensor, optional): Precomputed ``[num_items, d]`` embeddings in
            the dataset's item order; when omitted, :meth:`fit` encodes the item texts with
            :func:`recsys_core.text.encode_items`. (default: :obj:`None`)
        template (str): Item text template (see :meth:`Dataset.item_texts`).
            (default: :obj:`DEFAULT_TEXT_TEMPLATE`)
        encoder (recsys_core.text.TextEncoder, optional): Encoder to use when embeddings are
            not given. (default: the package's all-MiniLM-L6-v2)
    """

    name = "text-knn"

    def __init__(
        self,
        item_text_embeddings: torch.Tensor | np.ndarray | None = None,
        template: str = DEFAULT_TEXT_TEMPLATE,
        encoder: Any | None = None,
    ) -> None:
        super().__init__()
        self.template = template
        self.encoder = encoder
        self._given_embeddings = item_text_embeddings
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Forget the fitted item embeddings."""
        self.item_embeddings: torch.Tensor | None = None  # [num_items, d], L2-normalised

    def fit_bound(self, dataset: Dataset, on_progress: ProgressCallback | None) -> None:
        self.item_embeddings = unit_text_embeddings(dataset, self._given_embeddings, self.encoder,
                                                    self.template, on_progress)

    def user_profiles(self, users: np.ndarray) -> np.ndarray:
        """L2-normalised mean item embedding of each user's training items, ``[len(users), d]``."""
        emb = self.item_embeddings.numpy()
        history = self.train_matrix[np.asarray(users, dtype=np.int64)]
        profiles = np.asarray(history @ emb, dtype=np.float32)
        # Normalising the sum gives the same direction as normalising the mean.
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        return profiles / np.maximum(norms, 1e-12)

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        if self.item_embeddings is None:
            raise RuntimeError("TextKNNRecommender is not fitted.")
        emb = self.item_embeddings.numpy()
        if items is not None:
            emb = emb[np.asarray(items, dtype=np.int64)]
        return self.user_profiles(users) @ emb.T

    def config(self) -> dict[str, Any]:
        return {"template": self.template}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.item_embeddings is None:
            return {}
        return {"item_embeddings": self.item_embeddings}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        num_items = self.dataset.num_items if self.dataset is not None else None
        check_state_tensors(self.name, tensors, {"item_embeddings": (num_items, None)})
        self.item_embeddings = tensors["item_embeddings"].detach().to(
            "cpu", torch.float32).contiguous()


def unit_text_embeddings(
    dataset: Dataset,
    given: torch.Tensor | np.ndarray | None,
    encoder: Any | None,
    template: str,
    on_progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """``[num_items, d]`` L2-normalised item text embeddings: ``given`` (checked against the
    dataset's item count), or the item texts formatted by ``template`` and embedded by
    ``encoder`` (:func:`recsys_core.text.encode_items`)."""
    embeddings = given
    if embeddings is None:
        from ..text import encode_items  # heavy (transformers): only when needed

        embeddings = encode_items(dataset, encoder=encoder, template=template,
                                  on_progress=on_progress)
    embeddings = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    if embeddings.ndim != 2 or embeddings.shape[0] != dataset.num_items:
        raise ValueError(f"item_text_embeddings must have shape [{dataset.num_items}, d], "
                         f"got {tuple(embeddings.shape)}.")
    return torch.nn.functional.normalize(embeddings, dim=1).contiguous()
