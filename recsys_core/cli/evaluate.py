"""``python -m recsys_core evaluate``: offline metrics of a saved run on held-out interactions."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL
from ..errors import DataError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="offline metrics of a saved run on a test file (JSON)",
        description="Rank all items for every test user (excluding the run's training "
                    "interactions), compare the top K with the test interactions and print "
                    "the metrics as JSON.")
    parser.add_argument("--run", dest="run_dir", required=True, metavar="DIR", help="run directory from `train`")
    parser.add_argument("--test", required=True, metavar="FILE",
                        help="held-out interactions (same formats/column detection as train)")
    parser.add_argument("--k", type=int, default=20, metavar="K",
                        help="list length for the @K metrics (default: 20)")
    parser.add_argument("--user-col", metavar="NAME", help="user id column of --test")
    parser.add_argument("--item-col", metavar="NAME", help="item id column of --test")
    parser.add_argument("--rating-col", metavar="NAME", help="rating column of --test")
    parser.add_argument("--time-col", metavar="NAME", help="timestamp column of --test")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..ingest import load_dataset
    from ..run import load_run

    if args.k < 1:
        raise DataError(f"--k must be at least 1, got {args.k}.")
    model, dataset, info = load_run(args.run_dir)
    test_ds = load_dataset(args.test, user_col=args.user_col, item_col=args.item_col,
                           rating_col=args.rating_col, time_col=args.time_col)
    test, skipped = align_test(test_ds.interactions, dataset, args.test)
    for reason, count in skipped.items():
        if count:
            print(f"note: skipped {count:,} test row(s): {reason.replace('_', ' ')}.",
                  file=sys.stderr)
    users = pd.unique(test[USER_COL]).tolist()
    metrics = evaluate_run(model, dataset, test, users, args.k)
    result = {"model": info["model"], "run": str(args.run_dir), "k": args.k,
              "num_test_users": len(users), "num_test_interactions": int(len(test)),
              "skipped_test_rows": skipped, "metrics": metrics}
    print(json.dumps(_jsonable(result), indent=2))
    return 0


#: Most (user, item) score rows held at once for AUC and the slices (full score vectors).
FULL_SCORE_ROWS = 4_000_000


def evaluate_run(model, dataset, test: pd.DataFrame, users: list[str], k: int) -> dict[str, Any]:
    """:func:`~recsys_core.metrics.evaluate_recommendations` over a full ranking.

    The top-``k`` metrics, coverage, novelty and popularity come from every user's top-``k``
    list. AUC and the slices (re-ranked among slice items) need each user's whole score vector
    (every item except training interactions); those are computed on blocks of users small
    enough to hold at most :data:`FULL_SCORE_ROWS` rows and combined as user-weighted means,
    which equals the one-pass result.
    """
    from ..metrics import RANKING_METRICS, evaluate_recommendations

    train = dataset.interactions
    top = model.recommend(users=users, k=k, exclude_seen=True)
    metrics = evaluate_recommendations(test, top, train=train, k=k, num_items=dataset.num_items)
    block = max(1, FULL_SCORE_ROWS // max(dataset.num_items, 1))
    parts = []
    for start in range(0, len(users), block):
        chunk = users[start:start + block]
        full = model.recommend(users=chunk, k=dataset.num_items, exclude_seen=True)
        parts.append(evaluate_recommendations(test[test[USER_COL].isin(chunk)], full,
                                              train=train, k=k, num_items=dataset.num_items))
    if len(parts) == 1:
        metrics["auc"], metrics["slices"] = parts[0]["auc"], parts[0]["slices"]
        return metrics
    weights = [p["n_users"] - p["n_users_without_predictions"] for p in parts]
    metrics["auc"] = _weighted([p["auc"] for p in parts], weights)
    for name, whole in (metrics.get("slices") or {}).items():
        blocks = [p["slices"][name] for p in parts]
        for metric in RANKING_METRICS:
            whole[metric] = _weighted([b[metric] for b in blocks], [b["n_users"] for b in blocks])
    return metrics


def _weighted(values: list[float | None], weights: list[int]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def align_test(test: pd.DataFrame, dataset, file: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the test rows that can be scored, counting every row left out and why.

    Rows whose user or item the run does not know cannot be ranked; rows that are training
    interactions can never be recommended (training items are excluded from the ranking).

    Raises:
        DataError: No test row is left.
    """
    frame = test[[USER_COL, ITEM_COL, RATING_COL, TIME_COL]].copy()
    frame[USER_COL] = frame[USER_COL].astype(str)
    frame[ITEM_COL] = frame[ITEM_COL].astype(str)
    known_user = frame[USER_COL].map(dataset.user_index.__contains__).astype(bool).to_numpy()
    known_item = frame[ITEM_COL].map(dataset.item_index.__contains__).astype(bool).to_numpy()
    skipped = {"unknown_user": int((~known_user).sum()),
               "unknown_item": int((known_user & ~known_item).sum())}
    frame = frame[known_user & known_item]
    users = dataset.user_idx(frame[USER_COL])
    items = dataset.item_idx(frame[ITEM_COL])
    seen = np.zeros(len(frame), dtype=bool)
    if len(frame):
        matrix = dataset.interactions
        train_pairs = pd.MultiIndex.from_arrays([matrix["user_idx"].to_numpy(),
                                                 matrix["item_idx"].to_numpy()])
        seen = pd.MultiIndex.from_arrays([users, items]).isin(train_pairs)
    skipped["in_training_data"] = int(seen.sum())
    frame = frame[~seen].reset_index(drop=True)
    if frame.empty:
        raise DataError("no test interaction can be evaluated: every row has an unknown user or "
                        "item or is already in the run's training data "
                        f"({skipped}). Evaluate on held-out interactions of the trained users.",
                        file=file)
    return frame, skipped


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict(orient="records"))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value
