"""Cold start: the text of a new item and the users it would reach."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..dataset import DEFAULT_TEXT_TEMPLATE, USER_IDX
from ..errors import RecScopeError
from .workspace import Workspace


def cold_start_text(
    ws: Workspace,
    title: str,
    description: str = "",
    attributes: dict[str, list[str]] | None = None,
) -> str:
    """The text of a new item, built by the same code and template as the catalogue texts
    the workspace's item embeddings were encoded from (:func:`ensure_item_text`), so the new
    item and the catalogue are compared like for like.

    Args:
        ws (Workspace): The workspace.
        title (str): The new item's title.
        description (str): Its description. (default: :obj:`""`)
        attributes (dict, optional): Attribute column -> values. (default: :obj:`None`)
    """
    return ws.dataset.new_item_text(title, description, attributes,
                                    template=DEFAULT_TEXT_TEMPLATE)


def cold_start_reach(
    model: Any,
    ws: Workspace,
    text_embedding: np.ndarray,
    attributes: dict[str, list[str]] | None = None,
    k_items: int = 10,
    top_users: int = 20,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which users a new item (known by its text and attributes) would reach.

    A model that can score items outside its catalogue (the flagship's
    ``score_new_items``) scores the new item itself, exactly as it scores a catalogue item
    without interactions. Any other model is asked through a content bridge: the new item's
    score for a user is the similarity-weighted mean of the model's scores of the ``k_items``
    catalogue items whose texts are closest. Scores are standardised per user against the
    user's scores of the whole catalogue, so a user ranks high when the new item would rank
    high in *their* list, not because their scores are large overall.

    Args:
        model (Recommender): A fitted model.
        ws (Workspace): The workspace (needs :attr:`Workspace.item_text`).
        text_embedding (numpy.ndarray): ``[d]`` embedding of the new item's text.
        attributes (dict, optional): Attribute column -> values of the new item.
        k_items (int): Similar catalogue items listed (and used by the bridge). (default:
            :obj:`10`)
        top_users (int): Users returned. (default: :obj:`20`)

    Returns:
        ``(users, neighbours)``: users with ``user_id``, ``score``, ``interactions`` and
        ``method`` (``"model"`` or ``"text bridge"``); the similar catalogue items with
        ``item_id``, ``title`` and ``similarity``.
    """
    if ws.item_text is None:
        raise RecScopeError(
            "Item text embeddings are not ready yet; wait for the text "
            "encoding step of training to finish."
        )
    ds = ws.dataset
    emb = np.asarray(ws.item_text, dtype=np.float32)
    query = np.asarray(text_embedding, dtype=np.float32).reshape(-1)
    sims = emb @ query / (np.linalg.norm(emb, axis=1) * np.linalg.norm(query) + 1e-12)
    k_items = min(k_items, ds.num_items)
    nearest = np.argsort(-sims, kind="stable")[:k_items]
    weights = np.clip(sims[nearest], 0.0, None)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(k_items, 1.0 / k_items)
    native = callable(getattr(model, "score_new_items", None))
    if native:  # one forward pass for every user
        new = np.asarray(model.score_new_items(query[None, :], [dict(attributes or {})]),
                         dtype=np.float64)[:, 0]
    scores = np.zeros(ds.num_users, dtype=np.float64)
    for start in range(0, ds.num_users, 2048):
        block = np.arange(start, min(start + 2048, ds.num_users))
        full = np.asarray(model.score(block, None), dtype=np.float64)
        mean = full.mean(axis=1, keepdims=True)
        std = full.std(axis=1, keepdims=True) + 1e-9
        if native:
            scores[block] = ((new[block, None] - mean) / std)[:, 0]
        else:
            scores[block] = ((full[:, nearest] - mean) / std) @ weights
    counts = np.bincount(ws.train[USER_IDX].to_numpy(), minlength=ds.num_users)
    order = np.argsort(-scores, kind="stable")[:top_users]
    users = pd.DataFrame(
        {
            "user_id": ds.user_ids[order],
            "score": scores[order],
            "interactions": counts[order],
            "method": "model" if native else "text bridge",
        }
    )
    neighbours = pd.DataFrame(
        {
            "item_id": ds.item_ids[nearest],
            "title": ds.items["title"].to_numpy()[nearest],
            "similarity": sims[nearest],
        }
    )
    return users, neighbours
