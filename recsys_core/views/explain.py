"""Scores and ranks the Explain page shows around an explanation."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..dataset import Dataset


def _rank_among_unseen(scores: np.ndarray, item: int, seen: Iterable[int]) -> int:
    """1 + the number of unseen items scoring strictly above ``item``."""
    scores = np.array(scores, dtype=np.float64)
    target = scores[item]
    scores[list(seen)] = -np.inf
    return int((scores > target).sum()) + 1


def score_and_rank(model, dataset: Dataset, user_id: str, item_id: str) -> tuple[float, int | None]:
    """The model's score of a (user, item) pair and the item's rank among the items the user
    has not interacted with in training.

    Args:
        model (Recommender): A fitted model.
        dataset (Dataset): Its dataset.
        user_id (str): Raw user id.
        item_id (str): Raw item id.

    Returns:
        ``(score, rank)``; ``rank`` is ``None`` when the user already interacted with the item.
    """
    user = dataset.user_idx(str(user_id))
    scores = np.asarray(model.score(user, None), dtype=np.float64)[0]
    item = int(dataset.item_idx(str(item_id))[0])
    seen = model.train_matrix[int(user[0])].indices
    if item in seen:
        return float(scores[item]), None
    return float(scores[item]), _rank_among_unseen(scores, item, seen)


def what_if_ranks(model, user_id: str, item_id: str,
                  drop: Iterable[str] = ()) -> tuple[int, int]:
    """The item's rank among the user's unseen items before and after removing ``drop``
    from the user's history (nothing retrained; see :mod:`recsys_core.explain.whatif`).

    Args:
        model (Recommender): A fitted model that can rescore an edited history.
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        drop (iterable): Raw ids of history items to remove. (default: :obj:`()`)

    Returns:
        ``(rank before, rank after)``.
    """
    from ..explain.history import history_scorer

    dataset = model.dataset
    scorer = history_scorer(model)
    user = int(dataset.user_idx(str(user_id))[0])
    item = int(dataset.item_idx(str(item_id))[0])
    history = list(scorer.history(user))
    drop_idx = [int(i) for i in dataset.item_idx(list(drop))] if list(drop) else []
    before = _rank_among_unseen(scorer.scores(user, None), item, history)
    kept = [h for h in history if h not in set(drop_idx)]
    after = _rank_among_unseen(scorer.scores(user, None, drop=drop_idx), item, kept)
    return before, after


def faithfulness_users(train: pd.DataFrame, user_id: str, n: int, k: int,
                       seed: int = 0) -> list[str]:
    """Up to ``n`` users with more than ``k`` training interactions (removing ``k`` must leave
    some): ``user_id`` first when it qualifies, the others drawn with ``seed``.

    Args:
        train (pandas.DataFrame): Training interactions (``user_id`` column).
        user_id (str): The user on screen.
        n (int): Users wanted.
        k (int): Items the faithfulness test removes.
        seed (int): Seed of the draw. (default: :obj:`0`)
    """
    counts = train["user_id"].value_counts()
    eligible = set(counts.index[counts > k].astype(str))
    pool = sorted(eligible - {str(user_id)})
    first = [str(user_id)] if str(user_id) in eligible else []
    size = min(n - len(first), len(pool))
    picked = list(np.random.default_rng(seed).choice(pool, size=size, replace=False)) \
        if size > 0 else []
    return first + [str(u) for u in picked]


__all__ = ["faithfulness_users", "score_and_rank", "what_if_ranks"]
