"""What each part of the flagship contributes: ablations on MovieLens-100K and the demo data.

Same protocol as ``bench_ml100k.py`` (``../shared/BENCHMARK.md``: per-user random 80/10/10
split, fit on train + valid, full ranking of unseen items, Recall@20 / NDCG@20 on test).
Each variant is the default flagship with one part switched off
(:data:`recsys_core.models.ablations.ABLATIONS`: the item-item path; the graph filter; both,
leaving the learned graph attention alone; text; attribute nodes; user-user edges; user
attributes), trained from scratch in its own process; only variants that change something
on the data set run (ml-100k has no user-user edges; the demo data no user attributes).

MovieLens runs with its user file (age, gender, occupation) as user attributes. Results go to
``benchmarks/results/ablations.json``; ``bench_ml100k.py --ablations`` prints the same table.

Usage::

    python benchmarks/bench_ablations.py                 # both data sets
    python benchmarks/bench_ablations.py --data demo --variants full,no-text
    python benchmarks/bench_ablations.py --seeds 42,1,2   # averaged over three splits

With several seeds the table gives each variant's mean over the splits and its mean change
against the full flagship on the same split, with the number of splits where the full
flagship is ahead on both metrics (a one-split change of about 1% is within the noise of
ml-100k's test set).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Sibling scripts: ``python benchmarks/bench_ablations.py`` puts benchmarks/ on the path.
from bench_ml100k import load_ml100k, protocol_splits, recall_ndcg_at_k
from tune_flagship import load_demo

from recsys_core.models.ablations import ABLATIONS, ABLATIONS_BY_KEY, applicable_ablations

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ablations.json"
ML100K = REPO / "../shared/data/ml-100k"
DEMO = REPO / "data"
K = 20

def load_data(name: str):
    """``"ml-100k"`` (with ``u.user`` as user attributes when the loader supports it) or
    ``"demo"``, as a :class:`recsys_core.dataset.Dataset`."""
    return load_demo(DEMO) if name == "demo" else load_ml100k(ML100K)


def run_variant(data: str, variant: str, seed: int, protocol: str = "warm") -> dict[str, Any]:
    """Fit one variant on one split of ``protocol`` and score it (in this process)."""
    import torch

    from recsys_core.models import create_model

    torch.manual_seed(0)
    ds = load_data(data)
    # "warm" is BENCHMARK.md's random split of split seed ``seed``; "cold" its cold-start
    # split, ``seed`` drawing the held-out items (only they are ranked).
    fit, test, held = protocol_splits(ds, "random" if protocol == "warm" else "cold", seed,
                                      cold_seed=seed)
    held = None if held is None else ds.item_ids[held]
    model = create_model("gnn-llm", show_progress=False, **ABLATIONS_BY_KEY[variant].params)
    start = time.perf_counter()
    model.fit(ds, fit)
    fit_s = time.perf_counter() - start
    recs = model.recommend(users=ds.user_ids[np.unique(test["user_idx"])], k=K,
                           candidates=held)
    recall, ndcg = recall_ndcg_at_k(recs, test)
    selected = model.train_result.selected if model.train_result else {}
    return {"data": data, "variant": variant, "label": ABLATIONS_BY_KEY[variant].label, "seed": seed,
            "protocol": protocol, "recall@20": recall, "ndcg@20": ndcg, "fit_s": fit_s,
            "validation": selected.get("validation", {}),
            "relations": selected.get("relations"),
            "graph_filter": selected.get("graph_filter"),
            "item_item": selected.get("item_item")}


def saved_ml100k_rows(seed: int) -> list[dict[str, Any]]:
    """``full`` and ``no-item-item`` rows from ``benchmarks/results/ml100k.json`` (same
    protocol, same split seed), when that file holds them."""
    path = RESULTS.parent / "ml100k.json"
    if not path.exists():
        return []
    names = {"gnn-llm": "full", "gnn-llm:no-item-item": "no-item-item"}
    out = []
    for r in json.loads(path.read_text()).get("results", []):
        if (r.get("protocol") == "random" and r.get("seed") == seed and r.get("model") in names
                and "error" not in r):
            key = names[r["model"]]
            out.append({"data": "ml-100k", "variant": key, "label": ABLATIONS_BY_KEY[key].label,
                        "seed": seed, "protocol": "warm", "recall@20": r["recall@20"],
                        "ndcg@20": r["ndcg@20"],
                        "fit_s": r["fit_s"], "from": "ml100k.json"})
    return out


def row_key(row: dict[str, Any]) -> tuple[str, str, int, str]:
    """(data, variant, seed, protocol) of a result row (rows saved before the cold-start
    protocol was added are warm)."""
    return row["data"], row["variant"], row["seed"], row.get("protocol", "warm")


def save_rows(rows: list[dict[str, Any]]) -> None:
    """Merge ``rows`` into :data:`RESULTS` (replacing the same data, variant, seed and
    protocol)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    done = {row_key(r) for r in rows}
    kept = [r for r in previous.get("rows", []) if row_key(r) not in done]
    RESULTS.write_text(json.dumps({"rows": kept + rows}, indent=2, default=float) + "\n")


def mean_table(rows: list[dict[str, Any]], seeds: list[int], protocol: str | None = None
               ) -> str:
    """Markdown table over ``seeds``: each variant's mean Recall / NDCG, its mean change
    against the full flagship of the same split, and the splits where the full one is ahead
    on both metrics (rows of ``protocol`` only, when given)."""
    lines = ["| data | protocol | variant | Recall@20 | NDCG@20 | vs full (Recall / NDCG) | "
             "full ahead on both | splits |", "|---|---|---|---|---|---|---|---|"]
    by_key = {row_key(r): r for r in rows if r["seed"] in seeds
              and protocol in (None, row_key(r)[3])}
    order = list(dict.fromkeys((d, v, p) for d, v, s, p in by_key))
    for data, variant, protocol in order:
        runs = [by_key[(data, variant, s, protocol)] for s in seeds
                if (data, variant, s, protocol) in by_key]
        pairs = [(r, by_key[(data, "full", r["seed"], protocol)]) for r in runs
                 if (data, "full", r["seed"], protocol) in by_key]
        recall = np.mean([r["recall@20"] for r in runs])
        ndcg = np.mean([r["ndcg@20"] for r in runs])
        delta = ahead = ""
        if variant != "full" and pairs:
            dr = np.mean([r["recall@20"] / f["recall@20"] - 1 for r, f in pairs])
            dn = np.mean([r["ndcg@20"] / f["ndcg@20"] - 1 for r, f in pairs])
            delta = f"{dr:+.1%} / {dn:+.1%}"
            won = sum(f["recall@20"] > r["recall@20"] and f["ndcg@20"] > r["ndcg@20"]
                      for r, f in pairs)
            ahead = f"{won} of {len(pairs)}"
        lines.append(f"| {data} | {protocol} | {runs[0]['label']} | {recall:.4f} | "
                     f"{ndcg:.4f} | {delta} | {ahead} | "
                     f"{', '.join(str(r['seed']) for r in runs)} |")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table, with each variant's change against the full flagship."""
    lines = ["| data | protocol | variant | Recall@20 | NDCG@20 | vs full (Recall / NDCG) | "
             "fit s |", "|---|---|---|---|---|---|---|"]
    full = {row_key(r)[::3]: r for r in rows if r["variant"] == "full"}
    for r in rows:
        ref = full.get(row_key(r)[::3])
        delta = (f"{r['recall@20'] / ref['recall@20'] - 1:+.1%} / "
                 f"{r['ndcg@20'] / ref['ndcg@20'] - 1:+.1%}" if ref and r is not ref else "")
        lines.append(f"| {r['data']} | {row_key(r)[3]} | {r['label']} | "
                     f"{r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {delta} | "
                     f"{r['fit_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="ml-100k,demo", help="comma-separated: ml-100k, demo")
    parser.add_argument("--variants", default="", help="comma-separated keys (default: all "
                        f"that apply): {', '.join(a.key for a in ABLATIONS)}")
    parser.add_argument("--seeds", default="42",
                        help="comma-separated split seeds (default: 42; BENCHMARK.md's three: "
                             "42,1,2)")
    parser.add_argument("--protocol", choices=("warm", "cold"), default="warm",
                        help="warm: per-user random split (default); cold: 10%% of the items "
                             "held out entirely, only they are ranked, each seed drawing other "
                             "items (BENCHMARK.md's cold-start split is seed 7)")
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)  # the worker's
    parser.add_argument("--worker", nargs=2, metavar=("DATA", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_variant(*args.worker, args.seed, args.protocol)))
        return
    rows = []
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for data, seed in [(d, s) for d in args.data.split(",") for s in seeds]:
        # The full flagship and the graph network alone (no item-item path) on ml-100k are
        # runs of bench_ml100k.py (gnn-llm, gnn-llm:no-item-item): reuse them when saved.
        rows += [r for r in saved_ml100k_rows(seed) if data == "ml-100k"
                 and args.protocol == "warm"
                 and (not args.variants or r["variant"] in args.variants.split(","))]
        keys = [a.key for a in applicable_ablations(load_data(data))
                if not args.variants or a.key in args.variants.split(",")]
        for variant in keys:
            if (data, variant, seed, args.protocol) in {row_key(r) for r in rows}:
                continue
            out = subprocess.run([sys.executable, __file__, "--worker", data, variant,
                                  "--seed", str(seed), "--protocol", args.protocol],
                                 capture_output=True, text=True, check=False)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{data} / {variant} failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{data:8s} {args.protocol} seed {seed:<3d} {row['label']:42s} "
                  f"recall {row['recall@20']:.4f} "
                  f"ndcg {row['ndcg@20']:.4f} ({row['fit_s']:.0f} s)", flush=True)
            save_rows(rows)  # after each variant, so a stopped run keeps what it measured
    save_rows(rows)
    print()
    print(table(rows) if len(seeds) == 1 else mean_table(rows, seeds, args.protocol))


if __name__ == "__main__":
    main()
