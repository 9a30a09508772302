"""Offline evaluation of a fitted model on the workspace's test split, and what a model chose on
its validation split, in words."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..dataset import ITEM_COL, USER_COL
from .jobs import is_number

if TYPE_CHECKING:
    from .workspace import Workspace

#: Cut-offs of the Recall/NDCG@K curves.
DEFAULT_KS = (1, 5, 10, 20, 50)
#: Cut-off of the headline metrics.
HEADLINE_K = 20


def evaluate_model(
    model: Any, ws: Workspace, ks: Sequence[int] = DEFAULT_KS, head_share: float = 0.8
) -> dict[str, Any]:
    """Offline metrics of a fitted model on the workspace's test split.

    Returns:
        dict with ``summary`` (:func:`recsys_core.metrics.evaluate_recommendations` at
        :data:`HEADLINE_K`), ``at_k`` (long DataFrame ``k, metric, value``), ``per_user``
        (:func:`recsys_core.metrics.per_user_metrics` at :data:`HEADLINE_K`), ``warm_items``,
        ``cold_items`` and ``long_tail`` (slice metrics where only warm / cold / long-tail items
        are ranked and only their test interactions count; warm items are those with
        training interactions, so ``warm_items`` and ``cold_items`` are the headline pair) and
        ``seconds``.
    """
    from ..metrics import RANKING_METRICS, evaluate_recommendations, per_user_metrics, slice_metrics

    started = time.perf_counter()
    ds = ws.dataset
    test = ws.test
    users = pd.unique(test[USER_COL])
    k_max = max(max(ks), HEADLINE_K)
    recs = model.recommend(users=users, k=k_max)
    top = recs[recs["rank"] <= HEADLINE_K]
    summary = evaluate_recommendations(
        test, top, train=ws.train, k=HEADLINE_K, num_items=ds.num_items, head_share=head_share
    )
    rows = []
    for k in ks:
        per_k = per_user_metrics(test, recs, k=k)
        for name, column in RANKING_METRICS.items():
            rows.append({"k": int(k), "metric": name, "value": float(per_k[column].mean())})
    per_user = per_user_metrics(test, recs, k=HEADLINE_K)
    train_items = set(ws.train[ITEM_COL])
    warm = [i for i in ds.item_ids if i in train_items]
    cold = [i for i in ds.item_ids if i not in train_items]
    tail = [i for i in ds.item_ids if i in train_items and i not in ws.head_items(head_share)]
    slices = {}
    for name, candidates in (("warm_items", warm), ("cold_items", cold), ("long_tail", tail)):
        if candidates:
            slice_recs = model.recommend(users=users, k=HEADLINE_K, candidates=candidates)
            slices[name] = slice_metrics(test, slice_recs, k=HEADLINE_K, items=candidates)
        else:
            slices[name] = {"n_users": 0, "n_items": 0, **dict.fromkeys(RANKING_METRICS)}
    return {
        "summary": summary,
        "at_k": pd.DataFrame(rows),
        "per_user": per_user,
        "warm_items": slices["warm_items"],
        "cold_items": slices["cold_items"],
        "long_tail": slices["long_tail"],
        "seconds": time.perf_counter() - started,
    }


def chosen_on_validation(model: Any) -> str:
    """What a model chose on its validation split, in words (the flagship's graph filter and
    item-item path, a tuned peer's grid choice); empty when nothing was chosen."""
    from ..models.graph_filter import describe_selection

    record = getattr(model, "tuning", None)
    if record is not None:
        return record.describe()
    result = getattr(model, "train_result", None)
    return describe_selection(getattr(result, "selected", None) or {})


def validation_choice(model: Any) -> dict[str, Any]:
    """``chosen on validation``, ``how`` and ``valid ndcg@20`` of one fitted model (see
    :meth:`RunRegistry.validation_choices`)."""
    valid_ndcg = f"valid ndcg@{HEADLINE_K}"
    record = getattr(model, "tuning", None)
    if record is not None:  # a peer tuned by recsys_core.tuning
        settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in record.chosen.items())
        return {"chosen on validation": settings or "defaults (nothing to tune)",
                "how": (f"grid of {len(record.points)} on the validation split "
                        f"({record.valid_fraction:.0%} of each user's training interactions, "
                        f"seed {record.seed}), best {record.metric}, then refit on all"),
                valid_ndcg: record.best.ndcg if record.best is not None else None}
    result = getattr(model, "train_result", None)
    if result is not None:  # trained with early stopping on a carved validation split
        parts = [f"{result.best_epoch} epochs (early stopping)"]
        chosen = chosen_on_validation(model)
        if chosen:
            parts.append(chosen)
        ndcg = result.best_valid_ndcg
        return {"chosen on validation": "; ".join(parts),
                "how": "early stopping on the validation split carved from the training "
                       "interactions" + (", then refit on all" if result.refit_epochs else ""),
                valid_ndcg: float(ndcg) if is_number(ndcg) else None}
    weight = (getattr(model, "validation", None) or {}).get("popularity_weight")
    if weight is not None:  # text-pop's pseudo-cold choice
        recall = model.validation["recall_by_weight"][str(weight)]
        return {"chosen on validation": f"popularity weight {weight:g}",
                "how": (f"pseudo-cold validation: {model.validation['held_out_items']} items "
                        f"held out, Recall@{model.valid_k} {recall:.4f}"),
                valid_ndcg: None}
    return {"chosen on validation": "constructor settings (nothing chosen on validation)",
            "how": "", valid_ndcg: None}
