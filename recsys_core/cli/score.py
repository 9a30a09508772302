"""``python -m recsys_core score``: a saved run's scores for chosen items, optionally with the
user's interactions edited (what-if, no retraining). Prints ``{"scores": {item_id: score}}``.

Editing interactions works for ``gnn-llm``, ``ease``, ``text-knn`` and ``lightgcn`` runs;
``mf`` and ``pop`` runs score without edits only (exit code 2 otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..errors import DataError
from .options import add_run_and_user


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score", help="scores of items for a user, optionally with interactions edited (JSON)",
        description="Score items for a user with a saved run. --drop-interactions / "
                    "--add-interactions rescore as if the user had not / had interacted with "
                    "those items, without retraining.")
    add_run_and_user(parser)
    parser.add_argument("--items", required=True, metavar="I1,I2",
                        help="comma-separated raw item ids to score")
    parser.add_argument("--drop-interactions", default="", metavar="J1,J2",
                        help="comma-separated raw item ids removed from the user's interactions")
    parser.add_argument("--add-interactions", default="", metavar="K1,K2",
                        help="comma-separated raw item ids added to the user's interactions")
    parser.set_defaults(run=run)


def parse_ids(value: str, flag: str, required: bool = False) -> list[str]:
    """Comma-separated ids, stripped, duplicates kept once in order."""
    parts = [p.strip() for p in str(value).split(",")]
    if any(p == "" for p in parts) and str(value).strip():
        raise DataError(f"{flag} has an empty id in {value!r}; separate ids with single commas.")
    ids = list(dict.fromkeys(p for p in parts if p))
    if required and not ids:
        raise DataError(f"{flag} needs at least one id.")
    return ids


def run(args: argparse.Namespace) -> int:
    from ..explain import history_scorer
    from ..run import load_run

    items = parse_ids(args.items, "--items", required=True)
    drop = parse_ids(args.drop_interactions, "--drop-interactions")
    add = parse_ids(args.add_interactions, "--add-interactions")
    model, dataset, _ = load_run(args.run_dir)
    user = int(dataset.user_idx(args.user)[0])
    item_idx = dataset.item_idx(items)
    drop_idx = dataset.item_idx(drop) if drop else np.zeros(0, np.int64)
    add_idx = dataset.item_idx(add) if add else np.zeros(0, np.int64)
    if len(drop_idx) or len(add_idx):
        scorer = history_scorer(model)
        history = scorer.history(user)
        _note_ignored(dataset.item_ids[np.setdiff1d(drop_idx, history)], "dropped",
                      "the user has no interaction with")
        _note_ignored(dataset.item_ids[np.intersect1d(add_idx, history)], "added",
                      "the user already interacted with")
        scores = scorer.scores(user, item_idx, drop=np.intersect1d(drop_idx, history),
                               add=np.setdiff1d(add_idx, history))
    else:
        scores = model.score(np.array([user]), item_idx)[0]
    print(json.dumps({"scores": {i: float(s) for i, s in zip(items, scores, strict=True)}},
                     indent=2, ensure_ascii=False))
    return 0


def _note_ignored(ids, what: str, reason: str) -> None:
    if len(ids):
        shown = ", ".join(repr(str(i)) for i in ids[:5])
        print(f"note: {len(ids)} item(s) not {what} because {reason} them: {shown}",
              file=sys.stderr)
