"""Accuracy, cold start, fit time and memory of the trainable recommenders.

Protocol: ``../shared/BENCHMARK.md`` next to the repository (MovieLens-100K, every rating a
positive, per-user random 80/10/10 split with seed 42, Recall@20 / NDCG@20 over all unseen
items; cold start: 10% of the items (seed 7) held out entirely, each user ranks only those).
The same protocol runs on the shipped demo data (``--data demo``) to check that the defaults generalise.

All defaults were chosen with ``--tune`` (fit on train, score the validation split); the test
split is only ever printed. Every model, metric and split comes from ``recsys_core``.

Usage::

    python benchmarks/tune_flagship.py                              # ml-100k, test split
    python benchmarks/tune_flagship.py --models gnn-llm --tune \\
        --params '{"gnn-llm": {"num_layers": 2}}'                  # a validation run
    python benchmarks/tune_flagship.py --data demo --split-seed 1  # other data / split
    python benchmarks/tune_flagship.py --models gnn-llm --tune --no-cold \
        --out benchmarks/results/tuning.json --note "why this run"  # keep the rows

With ``--out``, every row is also appended to that JSON file (a list; each row with its data,
split seed, mode, parameters, note and date), so a default chosen on validation can be
quoted from a committed output.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

# A sibling script: ``python benchmarks/tune_flagship.py`` puts benchmarks/ on the path.
from bench_ml100k import load_ml100k, recall_ndcg_at_k

from recsys_core.dataset import USER_IDX, Dataset
from recsys_core.models import create_model
from recsys_core.splits import cold_start_item_split, per_user_random_split

ML100K = Path(__file__).resolve().parents[1] / "../shared/data/ml-100k"
DEMO = Path(__file__).resolve().parents[1] / "data"
TEXT_MODELS = {"gnn-llm", "text-knn"}


def load_demo(root: str | Path = DEMO) -> Dataset:
    """The shipped synthetic book catalogue, through the normal ingestion path."""
    from recsys_core.ingest import load_dataset

    root = Path(root)
    return load_dataset(root / "interactions.csv", root / "items.csv", root / "user_edges.csv")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def evaluate(model, ds: Dataset, truth: pd.DataFrame, candidates: list[str] | None = None,
             k: int = 20) -> tuple[float, float]:
    """Recall@k and NDCG@k of ``model.recommend`` for every user in ``truth``."""
    users = ds.user_ids[np.unique(truth[USER_IDX].to_numpy())]
    recs = model.recommend(list(users), k=k, exclude_seen=True, candidates=candidates)
    return recall_ndcg_at_k(recs, truth, k=k)


def build(name: str, params: dict, text: torch.Tensor | None):
    options = dict(params.get(name, {}))
    if name in TEXT_MODELS and text is not None:
        options["item_text_embeddings"] = text
    if name in {"mf", "lightgcn", "gnn-llm"}:
        options.setdefault("show_progress", False)
    return create_model(name, **options)


def run(name: str, ds: Dataset, train: pd.DataFrame, target: pd.DataFrame, params: dict,
        text: torch.Tensor | None, candidates: list[str] | None = None) -> dict:
    model = build(name, params, text)
    start = time.perf_counter()
    model.fit(ds, train)
    seconds = time.perf_counter() - start
    recall, ndcg = evaluate(model, ds, target, candidates)
    row = {"model": name, "recall@20": round(recall, 4), "ndcg@20": round(ndcg, 4),
           "fit_s": round(seconds, 1), "peak_rss_gb": round(peak_rss_gb(), 2)}
    result = getattr(model, "train_result", None)
    if result is not None:
        row.update(best_epoch=result.best_epoch, epochs_run=len(result.history),
                   stop=result.stop_reason,
                   seconds_to_best=round(result.history[result.best_epoch - 1]["seconds"], 1)
                   if result.best_epoch else 0.0)
    return row


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` (dated) to the JSON list in ``path``, written atomically, under a lock
    (runs on other splits may append at the same time)."""
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(path.read_text()) if path.exists() else []
        rows.append({**row, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
        tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ml-100k", help="'ml-100k', 'demo' or an ml-100k folder")
    parser.add_argument("--models", default="ease,text-knn,mf,lightgcn,gnn-llm")
    parser.add_argument("--params", default="{}",
                        help="JSON: model name -> constructor overrides")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start protocol")
    parser.add_argument("--tune", action="store_true",
                        help="fit on train and report on validation (for choosing defaults)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--out", help="append every row to this JSON file (a list)")
    parser.add_argument("--note", default="", help="a note stored with each row of --out")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_demo() if args.data == "demo" else load_ml100k(
        ML100K if args.data == "ml-100k" else args.data)
    split = per_user_random_split(ds.interactions, seed=args.split_seed)
    if args.tune:
        fit_frame, target = split.train, split.valid
    else:
        fit_frame, target = pd.concat([split.train, split.valid]), split.test
    names = args.models.split(",")
    params = json.loads(args.params)
    text = None
    if TEXT_MODELS & set(names):
        from recsys_core.text import encode_items

        start = time.perf_counter()
        text = encode_items(ds)
        print(json.dumps({"text_encoding_s": round(time.perf_counter() - start, 1),
                          "items": ds.num_items}), flush=True)
    print(json.dumps({"data": ds.name, "users": ds.num_users, "items": ds.num_items,
                      "fit_interactions": len(fit_frame), "target": len(target),
                      "mode": "valid" if args.tune else "test", "split_seed": args.split_seed,
                      "threads": torch.get_num_threads()}), flush=True)
    context = {"data": args.data, "split_seed": args.split_seed,
               "mode": "valid" if args.tune else "test", "params": params, "note": args.note,
               "threads": torch.get_num_threads()}

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)
        if args.out:
            append_row(Path(args.out), {**context, **row})

    for name in names:
        emit(run(name, ds, fit_frame, target, params, text))
    if not args.no_cold:
        cold = cold_start_item_split(ds.interactions)
        held = sorted(set(cold.test["item_id"]))
        for name in names:
            if name in {"ease", "mf", "lightgcn", "pop"}:
                continue  # no signal for items without interactions
            row = run(name, ds, cold.train, cold.test, params, text, candidates=held)
            row["model"] = f"{name} (cold start, {len(held)} items)"
            emit(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
