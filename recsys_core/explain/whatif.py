"""What-if analysis: a user's scores and top-K with chosen interactions removed or added.

Nothing is retrained: the model is re-run on the edited interactions (see
:func:`~recsys_core.explain.history.history_scorer` for which models support it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..dataset import TITLE_COL, Dataset
from .history import history_scorer

TOP_COLUMNS = ["rank", "item_id", "title", "score"]


@dataclass
class WhatIfResult:
    """Before/after view of one user's recommendations under an interaction edit.

    Attributes:
        user_id (str): Raw user id.
        dropped (list[str]): Raw ids of the interactions removed (only ones the user had).
        added (list[str]): Raw ids of the interactions added (only ones the user lacked).
        scores (pandas.DataFrame): For the requested items: ``item_id, title, score_before,
            score_after, delta``.
        top_before (pandas.DataFrame): ``rank, item_id, title, score`` on the real history.
        top_after (pandas.DataFrame): The same on the edited history.
        entered (list[str]): Raw ids in ``top_after`` but not ``top_before``.
        left (list[str]): Raw ids in ``top_before`` but not ``top_after``.
    """

    user_id: str
    dropped: list[str]
    added: list[str]
    scores: pd.DataFrame
    top_before: pd.DataFrame
    top_after: pd.DataFrame
    entered: list[str]
    left: list[str]

    def to_dict(self) -> dict:
        """JSON-ready form."""
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: (float(v) if isinstance(v, (float, np.floating)) else
                         int(v) if isinstance(v, (np.integer,)) else str(v))
                     for k, v in row.items()} for row in frame.to_dict("records")]

        return {"user": self.user_id, "dropped": self.dropped, "added": self.added,
                "scores": records(self.scores), "top_before": records(self.top_before),
                "top_after": records(self.top_after), "entered": self.entered,
                "left": self.left}


def what_if(
    model,
    dataset: Dataset,
    user_id: str,
    drop: Iterable[str] = (),
    add: Iterable[str] = (),
    k: int = 10,
    items: Iterable[str] | None = None,
) -> WhatIfResult:
    """Rescore a user with interactions removed (``drop``) and/or added (``add``).

    The top-K excludes the user's interactions: the real ones before the edit, the edited
    ones after it (a dropped item may re-enter, an added one cannot appear).

    Args:
        model (Recommender): A fitted model (``gnn-llm``, ``ease``, ``text-knn`` or
            ``lightgcn``).
        dataset (Dataset): Its dataset (interactions = the training split).
        user_id (str): Raw user id.
        drop (iterable of str): Raw item ids to remove from the user's interactions; ids the
            user has no interaction with are ignored (listed nowhere). (default: none)
        add (iterable of str): Raw item ids to add. (default: none)
        k (int): Length of the top lists. (default: :obj:`10`)
        items (iterable of str, optional): Items whose before/after scores to report.
            (default: none)

    Raises:
        UnknownIdError: An unknown user or item id.
        HistoryEditError: The model cannot rescore edited interactions.
    """
    user = int(dataset.user_idx(str(user_id))[0])
    drop_idx = dataset.item_idx([str(i) for i in drop]) if drop else np.zeros(0, np.int64)
    add_idx = dataset.item_idx([str(i) for i in add]) if add else np.zeros(0, np.int64)
    item_idx = dataset.item_idx([str(i) for i in items]) if items else np.zeros(0, np.int64)
    scorer = history_scorer(model)
    history = scorer.history(user)
    drop_idx = np.intersect1d(drop_idx, history)
    add_idx = np.setdiff1d(add_idx, history)
    before = np.asarray(scorer.scores(user, None), dtype=np.float64)
    after = np.asarray(scorer.scores(user, None, drop=drop_idx, add=add_idx), dtype=np.float64)
    new_history = np.union1d(np.setdiff1d(history, drop_idx), add_idx)
    top_before = _top(dataset, before, history, k)
    top_after = _top(dataset, after, new_history, k)
    titles = dataset.items[TITLE_COL].astype(str).to_numpy()
    scores = pd.DataFrame({
        "item_id": dataset.item_ids[item_idx].astype(str), "title": titles[item_idx],
        "score_before": before[item_idx], "score_after": after[item_idx],
        "delta": after[item_idx] - before[item_idx]})
    before_ids, after_ids = list(top_before["item_id"]), list(top_after["item_id"])
    return WhatIfResult(
        user_id=str(user_id),
        dropped=[str(i) for i in dataset.item_ids[drop_idx]],
        added=[str(i) for i in dataset.item_ids[add_idx]],
        scores=scores, top_before=top_before, top_after=top_after,
        entered=[i for i in after_ids if i not in before_ids],
        left=[i for i in before_ids if i not in after_ids])


def _top(dataset: Dataset, scores: np.ndarray, exclude: np.ndarray, k: int) -> pd.DataFrame:
    masked = scores.copy()
    masked[exclude] = -np.inf
    order = np.lexsort((np.arange(len(masked)), -masked))  # score desc, ties by index
    order = order[np.isfinite(masked[order])][:k]
    return pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "item_id": dataset.item_ids[order].astype(str),
        "title": dataset.items[TITLE_COL].astype(str).to_numpy()[order],
        "score": masked[order],
    })[TOP_COLUMNS]
