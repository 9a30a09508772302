"""Scores with a user's interactions edited, without retraining, for any model that allows it.

:func:`history_scorer` returns an object that rescored a user after removing (``drop``) or
adding (``add``) interactions:

* ``gnn-llm`` (flagship): the user's ``rates``/``rated_by`` edges are edited and the graph
  network is re-run (exactly, incrementally: :class:`~recsys_core.explain.engine.FlagshipEngine`);
* ``ease``: the user's row of the interaction matrix is edited (scores are ``x_u B``);
* ``text-knn``: the user's text profile is the mean embedding of the edited history;
* ``lightgcn``: propagation is re-run over the edited interaction graph (the learned layer-0
  user vector stays, so edits move scores less than for history-driven models).

``mf`` and ``pop`` score from learned per-user vectors or global counts: their scores do not
follow a change of interactions without retraining, so they raise :class:`HistoryEditError`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable

import numpy as np
import torch

from ..errors import RecScopeError
from .engine import flagship_engine, is_flagship


class HistoryEditError(RecScopeError):
    """The model cannot rescore a user with edited interactions without retraining."""


class HistoryScorer:
    """Scores of one model for a user whose interactions are edited (base class).

    Args:
        model (Recommender): A fitted model.
    """

    #: Whether the scorer edits a graph that the flagship's explainers can also use.
    graph_based = False

    def __init__(self, model) -> None:
        self.model = model
        self.dataset = model.dataset

    def history(self, user: int) -> np.ndarray:
        """The user's training items (sorted item indices)."""
        return np.sort(self.model.train_matrix[int(user)].indices.astype(np.int64))

    def scores(self, user: int, items: Iterable[int] | None = None, drop: Iterable[int] = (),
               add: Iterable[int] = ()) -> np.ndarray:
        """Scores of ``items`` (default: all) for ``user`` with ``drop`` items removed from and
        ``add`` items added to the user's interactions."""
        raise NotImplementedError


class FlagshipHistoryScorer(HistoryScorer):
    """History edits on the flagship's graph (exact forward passes, no retraining)."""

    graph_based = True

    def __init__(self, model) -> None:
        super().__init__(model)
        self.engine = flagship_engine(model)

    def history(self, user: int) -> np.ndarray:
        return self.engine.history(user)

    def scores(self, user, items=None, drop=(), add=()):
        edit = self.engine.history_edit(user, drop, add)
        return self.engine.scores(user, _items(items), edit)


class EASEHistoryScorer(HistoryScorer):
    """EASE scores ``x_u B`` with the user's binary history vector ``x_u`` edited."""

    def scores(self, user, items=None, drop=(), add=()):
        model = self.model
        weights = model.weights.numpy()
        pos = model._active_pos
        history = _edited(self.history(user), drop, add)
        rows = pos[history]
        rows = rows[rows >= 0]  # items without training interactions have no weights
        item_idx = (np.arange(self.dataset.num_items) if items is None
                    else np.asarray(items, np.int64))
        cols = pos[item_idx]
        out = np.zeros(len(item_idx), dtype=np.float32)
        known = cols >= 0
        if known.any() and len(rows):
            out[known] = weights[rows][:, cols[known]].sum(axis=0)
        return out


class TextKNNHistoryScorer(HistoryScorer):
    """Cosine between the mean text embedding of the edited history and each item."""

    def scores(self, user, items=None, drop=(), add=()):
        emb = self.model.item_embeddings.numpy()
        history = _edited(self.history(user), drop, add)
        targets = emb if items is None else emb[np.asarray(items, dtype=np.int64)]
        if len(history) == 0:
            return np.zeros(len(targets), dtype=np.float32)
        profile = emb[history].sum(axis=0)
        profile = profile / max(float(np.linalg.norm(profile)), 1e-12)
        return (targets @ profile).astype(np.float32)


class PropagationHistoryScorer(HistoryScorer):
    """Re-run an interaction-propagating embedding model (LightGCN) on edited interactions.

    Works on a private copy of the model's network, so the shared model is never modified.
    """

    def __init__(self, model) -> None:
        super().__init__(model)
        self.module = copy.deepcopy(model.module).to("cpu").eval()
        self._lock = threading.Lock()
        coo = model.train_matrix.tocoo()
        self.users = torch.from_numpy(coo.row.astype(np.int64))
        self.items = torch.from_numpy(coo.col.astype(np.int64))

    @torch.no_grad()
    def scores(self, user, items=None, drop=(), add=()):
        user = int(user)
        drop = torch.as_tensor(sorted({int(j) for j in drop}), dtype=torch.long)
        keep = ~((self.users == user) & torch.isin(self.items, drop))
        add = sorted({int(j) for j in add} - set(self.history(user).tolist()))
        users = torch.cat([self.users[keep], torch.full((len(add),), user, dtype=torch.long)])
        new_items = torch.cat([self.items[keep], torch.as_tensor(add, dtype=torch.long)])
        with self._lock:
            self.module.set_interactions(users, new_items)
            user_emb, item_emb = self.module()
        targets = (item_emb if items is None
                   else item_emb[torch.as_tensor(np.asarray(items, np.int64))])
        return (user_emb[user] @ targets.T).float().numpy()


def history_scorer(model) -> HistoryScorer:
    """The :class:`HistoryScorer` for a fitted model.

    Raises:
        HistoryEditError: For models whose scores do not depend on the user's interactions at
            scoring time (``mf``, ``pop``): their scores would need retraining.
    """
    if getattr(model, "dataset", None) is None:
        raise RuntimeError("The model is not fitted.")
    if is_flagship(model):
        return FlagshipHistoryScorer(model)
    name = getattr(model, "name", type(model).__name__)
    if name == "ease":
        return EASEHistoryScorer(model)
    if name == "text-knn":
        return TextKNNHistoryScorer(model)
    if name == "lightgcn":
        return PropagationHistoryScorer(model)
    reason = {
        "mf": "matrix factorisation scores come from a learned vector per user",
        "pop": "popularity scores are the same for every user",
    }.get(name, "its scores do not follow the user's interactions at scoring time")
    raise HistoryEditError(
        f"Model '{name}' cannot rescore edited interactions without retraining: {reason}. "
        f"Editing interactions works for 'gnn-llm', 'ease', 'text-knn' and 'lightgcn' runs.")


def _edited(history: np.ndarray, drop: Iterable[int], add: Iterable[int]) -> np.ndarray:
    kept = np.setdiff1d(history, np.asarray(list(drop), dtype=np.int64))
    return np.union1d(kept, np.asarray(list(add), dtype=np.int64)).astype(np.int64)


def _items(items):
    return None if items is None else np.asarray(list(items), dtype=np.int64)
