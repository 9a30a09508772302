"""Faithfulness of explanations: does removing what an explanation ranks highest matter?

Deletion test (after Samek et al., 2017, on graph edits): for each sampled user and their top
recommendation, remove the ``k`` history items the explanation ranks highest and measure how
much the item's score drops (a forward pass on the edited interactions, no retraining);
compare with removing ``k`` random history items (averaged over several draws). A faithful
explanation gives a drop several times larger than random. Optional deletion / insertion
curves repeat this for ``1..k`` items, and for keeping only the top items.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from ..dataset import Dataset
from .evidence import HISTORY_ITEM, Explanation
from .history import history_scorer

FAITHFULNESS_COLUMNS = ["user_id", "item_id", "history_size", "score", "drop_top",
                        "drop_random", "explain_seconds"]


def faithfulness(
    model,
    dataset: Dataset,
    method: str | Callable[..., Explanation],
    users: Iterable[str],
    k: int = 5,
    n_random: int = 5,
    seed: int = 0,
    curves: bool = False,
    explain_options: dict | None = None,
) -> dict:
    """Deletion test of an explanation method on the top recommendation of each user.

    Args:
        model (Recommender): A fitted model whose scores follow edited interactions (see
            :func:`~recsys_core.explain.history.history_scorer`).
        dataset (Dataset): Its dataset.
        method (str or callable): ``"attention"``, ``"shap"``, ``"lime"``,
            ``"gnnexplainer"``, or a function ``(model, dataset, user_id, item_id) ->
            Explanation``. Every method is ranked the same way (:func:`ranked_history`: its
            individually scored history items by decreasing weight), so the test is the same
            for all.
        users (iterable of str): Raw user ids; users with at most ``k`` history items are
            skipped (counted in ``skipped``).
        k (int): History items removed. (default: :obj:`5`)
        n_random (int): Random draws averaged for the baseline. (default: :obj:`5`)
        seed (int): Seed of the random draws. (default: :obj:`0`)
        curves (bool): Also compute deletion and insertion curves for ``1..k`` items.
            (default: :obj:`False`)
        explain_options (dict, optional): Extra keyword arguments of the method.

    Returns:
        dict: ``method``, ``k``, ``users`` (evaluated), ``skipped``, ``mean_drop_top``,
        ``mean_drop_random``, ``ratio`` (their quotient; ``inf`` when random removals do not
        lower the score on average but the top ones do), ``top_beats_random`` (share of users
        whose top-k drop exceeds their random-k drop), ``mean_explain_seconds``, ``per_user``
        (DataFrame with :data:`FAITHFULNESS_COLUMNS`) and, with ``curves``, ``deletion`` and
        ``insertion`` DataFrames (``k``, ``top``, ``random``: mean score drop when removing /
        mean score when keeping only that many items).
    """
    from . import explain

    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    options = dict(explain_options or {})
    scorer = history_scorer(model)
    rng = np.random.default_rng(seed)
    rows, deletion, insertion = [], [], []
    skipped = 0
    for user_id in users:
        picked = _top_pick(model, dataset, scorer, str(user_id), k)
        if picked is None:
            skipped += 1
            continue
        user, history, item_id, item = picked
        start = time.perf_counter()
        result = (explain(model, dataset, str(user_id), item_id, method=method, **options)
                  if isinstance(method, str) else method(model, dataset, str(user_id), item_id))
        seconds = time.perf_counter() - start
        ranked = ranked_history(result, dataset, history)
        if len(ranked) < k:
            skipped += 1
            continue
        base = float(scorer.scores(user, [item])[0])
        draws = [rng.choice(history, size=k, replace=False) for _ in range(n_random)]
        drop_top = base - _without(scorer, user, item, ranked[:k])
        drop_random = float(np.mean([base - _without(scorer, user, item, d) for d in draws]))
        rows.append({"user_id": str(user_id), "item_id": item_id, "history_size": len(history),
                     "score": base, "drop_top": drop_top, "drop_random": drop_random,
                     "explain_seconds": seconds})
        if curves:
            for size in range(1, k + 1):
                random_sets = [rng.choice(history, size=size, replace=False)
                               for _ in range(n_random)]
                deletion.append({
                    "k": size, "top": base - _without(scorer, user, item, ranked[:size]),
                    "random": float(np.mean([base - _without(scorer, user, item, r)
                                             for r in random_sets]))})
                insertion.append({
                    "k": size,
                    "top": _without(scorer, user, item, np.setdiff1d(history, ranked[:size])),
                    "random": float(np.mean([_without(scorer, user, item, np.setdiff1d(history, r))
                                             for r in random_sets]))})
    per_user = pd.DataFrame(rows, columns=FAITHFULNESS_COLUMNS)
    mean_top = float(per_user["drop_top"].mean()) if len(per_user) else float("nan")
    mean_random = float(per_user["drop_random"].mean()) if len(per_user) else float("nan")
    out = {
        "method": name, "k": k, "users": len(per_user), "skipped": skipped,
        "mean_drop_top": mean_top, "mean_drop_random": mean_random,
        "ratio": _ratio(mean_top, mean_random),
        "top_beats_random": float((per_user["drop_top"] > per_user["drop_random"]).mean())
        if len(per_user) else float("nan"),
        "mean_explain_seconds": (float(per_user["explain_seconds"].mean()) if len(per_user)
                                 else float("nan")),
        "per_user": per_user,
    }
    if curves:
        # Typed empty frames when every user was skipped (too short a history).
        columns = ["k", "top", "random"]
        out["deletion"] = pd.DataFrame(deletion, columns=columns).groupby(
            "k", as_index=False).mean()
        out["insertion"] = pd.DataFrame(insertion, columns=columns).groupby(
            "k", as_index=False).mean()
    return out


def greedy_deletion(model, dataset: Dataset, users: Iterable[str], k: int = 5) -> dict:
    """The largest score drop a ``k``-item deletion finds for each user's top recommendation.

    The model's own scores pick, ``k`` times, the history item whose removal (with those already
    removed) lowers the score most. This is the reference a deletion test's top-k drop is read
    against: no explanation can rank better than the removals the model itself prefers (greedy
    search is optimal when the score is additive over history items and close to it otherwise).
    A ratio to random removal below 3x with an explanation close to this drop says the model
    spreads its evidence over many history items, not that the explanation misses it.

    Args:
        model (Recommender): A fitted model whose scores follow edited interactions (see
            :func:`~recsys_core.explain.history.history_scorer`).
        dataset (Dataset): Its dataset.
        users (iterable of str): Raw user ids; users with at most ``k`` history items are
            skipped, as in :func:`faithfulness`.
        k (int): History items removed. (default: :obj:`5`)

    Returns:
        dict: ``k``, ``users`` (evaluated), ``mean_drop_greedy`` and ``per_user`` (DataFrame
        with ``user_id``, ``item_id``, ``history_size``, ``score``, ``drop_greedy``).
    """
    scorer = history_scorer(model)
    rows = []
    for user_id in users:
        picked = _top_pick(model, dataset, scorer, str(user_id), k)
        if picked is None:
            continue
        user, history, item_id, item = picked
        base = float(scorer.scores(user, [item])[0])
        removed: list[int] = []
        for _ in range(k):
            rest = history[~np.isin(history, removed)]
            left = [_without(scorer, user, item, np.asarray([*removed, j])) for j in rest]
            removed.append(int(rest[int(np.argmin(left))]))
        rows.append({"user_id": str(user_id), "item_id": item_id, "history_size": len(history),
                     "score": base,
                     "drop_greedy": base - _without(scorer, user, item, np.asarray(removed))})
    per_user = pd.DataFrame(rows, columns=["user_id", "item_id", "history_size", "score",
                                           "drop_greedy"])
    return {"k": k, "users": len(per_user),
            "mean_drop_greedy": (float(per_user["drop_greedy"].mean()) if len(per_user)
                                 else float("nan")),
            "per_user": per_user}


def ranked_history(explanation: Explanation, dataset: Dataset, history: np.ndarray) -> np.ndarray:
    """Item indices of the user's history items in the order the explanation ranks them
    (largest weight first; only items the explanation scores individually)."""
    frame = explanation.contributions
    frame = frame[frame["kind"] == HISTORY_ITEM].sort_values("weight", ascending=False,
                                                              kind="stable")
    if not len(frame):
        return np.zeros(0, dtype=np.int64)
    index = dataset.item_idx(frame["id"].astype(str).tolist())
    return index[np.isin(index, history)]


def _top_pick(model, dataset: Dataset, scorer, user_id: str, k: int
              ) -> tuple[int, np.ndarray, str, int] | None:
    """``(user, history, item_id, item)``: a user's index, history and top recommendation,
    or ``None`` when the history has at most ``k`` items or nothing is recommended (the
    user is skipped)."""
    user = int(dataset.user_idx(user_id)[0])
    history = scorer.history(user)
    if len(history) <= k:
        return None
    recs = model.recommend([user_id], k=1)
    if not len(recs):
        return None
    item_id = str(recs["item_id"].iloc[0])
    return user, history, item_id, int(dataset.item_idx(item_id)[0])


def _without(scorer, user: int, item: int, drop: np.ndarray) -> float:
    """The item's score with ``drop`` removed from the user's history."""
    return float(scorer.scores(user, [item], drop=drop)[0])


def _ratio(top: float, random: float) -> float:
    if np.isnan(top) or np.isnan(random):
        return float("nan")
    if random > 0:
        return top / random
    return float("inf") if top > 0 else float("nan")
