"""Faithfulness and speed of RecScope's explanations of the flagship (gnn-llm).

Deletion test (recsys_core.explain.faithfulness): for sampled users and their top
recommendation, remove the k history items an explanation ranks highest and measure the score
drop (forward pass on the edited graph, no retraining), against removing k random history
items (mean of 5 draws). Printed per dataset and method: mean drop top-k, mean drop random-k,
their ratio (target: >= 2 for attention, SHAP and LIME), and seconds per explanation (target
for SHAP and LIME: < 10 s on a 2-core CPU). Datasets: the shipped demo data (data/*.csv) and
MovieLens-100K (../shared/data/ml-100k; never copied into the repo).

The flagship is trained once per dataset on all interactions (explanations do not need a test
split) with ``--epochs`` / ``--time-limit`` and saved under ``--runs-dir``; later runs reuse
it. Results also go to ``benchmarks/results/faithfulness.{json,md}``: the rows of the datasets
run replace theirs, the other datasets' rows are kept with the date and machine they were
measured on.

Usage::

    python benchmarks/bench_faithfulness.py                       # both datasets, 30 users
    python benchmarks/bench_faithfulness.py --datasets demo --users 20   # demo only
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from recsys_core.explain import explain, faithfulness, greedy_deletion
from recsys_core.ingest import load_dataset
from recsys_core.models.gnn_llm import GNNLLMRecommender
from recsys_core.run import load_run, save_run

ROOT = Path(__file__).resolve().parents[1]  # the repository (demo data under data/)

DATASETS = {
    "demo": lambda: load_dataset(ROOT / "data" / "interactions.csv", ROOT / "data" / "items.csv",
                                 user_edges=ROOT / "data" / "user_edges.csv", name="demo"),
    "ml100k": lambda: load_dataset(ROOT.parent / "shared" / "data" / "ml-100k" / "u.data",
                                   ROOT.parent / "shared" / "data" / "ml-100k" / "u.item",
                                   name="ml-100k"),
}


def flagship(name: str, runs_dir: Path, epochs: int, time_limit: float | None):
    """The trained flagship of a dataset: loaded from ``runs_dir/name`` or trained and saved."""
    path = runs_dir / name
    if (path / "run.json").is_file():
        model, dataset, info = load_run(path)
        return model, dataset, info.get("extra", {}).get("fit_seconds")
    dataset = DATASETS[name]()
    model = GNNLLMRecommender(epochs=epochs, time_limit=time_limit, show_progress=True, seed=0)
    start = time.perf_counter()
    model.fit(dataset, dataset.interactions)
    seconds = time.perf_counter() - start
    save_run(path, model, dataset, dataset.interactions, extra={"fit_seconds": seconds})
    model, dataset, _ = load_run(path)  # explain exactly what a saved run holds
    return model, dataset, seconds


def sample_users(dataset, n: int, k: int, seed: int) -> list[str]:
    counts = dataset.interactions.groupby("user_id").size()
    eligible = np.sort(counts[counts > k].index.astype(str).to_numpy())
    rng = np.random.default_rng(seed)
    return [str(u) for u in rng.choice(eligible, size=min(n, len(eligible)), replace=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="demo,ml100k")
    parser.add_argument("--methods", default="attention,shap,lime,gnnexplainer")
    parser.add_argument("--users", type=int, default=30, help="users sampled per dataset")
    parser.add_argument("--k", type=int, default=5, help="history items removed")
    parser.add_argument("--epochs", type=int, default=30, help="flagship training epochs")
    parser.add_argument("--time-limit", type=float, default=900.0,
                        help="flagship training seconds at most (best epoch kept)")
    parser.add_argument("--runs-dir", type=Path,
                        default=Path.home() / ".cache" / "recscope" / "bench_faithfulness",
                        help="where trained flagship runs are kept and reused (outside the "
                             "repository: a run holds a copy of its data)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads while explaining (default 1: many small ops)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    results, measured = [], {}
    machine = (f"{platform.machine()}, {args.threads} torch thread(s), "
               f"torch {torch.__version__}")
    for name in [d for d in args.datasets.split(",") if d]:
        model, dataset, fit_seconds = flagship(name, args.runs_dir, args.epochs, args.time_limit)
        torch.set_num_threads(args.threads)
        users = sample_users(dataset, args.users + 1, args.k, args.seed)
        warm_user, users = users[0], users[1:]
        warm_item = str(model.recommend([warm_user], k=1)["item_id"].iloc[0])
        start = time.perf_counter()
        for method in args.methods.split(","):  # engine, shap import, text encoder: once
            explain(model, dataset, warm_user, warm_item, method=method)
        warmup = time.perf_counter() - start
        history = dataset.interactions.groupby("user_id").size()
        print(f"\n{name}: {dataset.num_users} users, {dataset.num_items} items, "
              f"{len(dataset.interactions)} interactions; {len(users)} users sampled "
              f"(median history {int(history[users].median())}, max {int(history[users].max())}); "
              f"warm-up {warmup:.1f} s", flush=True)
        # The reference: the largest top-k drop the model's own scores find (no explanation
        # can rank better); the same for every method.
        start = time.perf_counter()
        greedy = greedy_deletion(model, dataset, users, k=args.k)["mean_drop_greedy"]
        print(f"  greedy search   drop top-{args.k} {greedy:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        for method in args.methods.split(","):
            result = faithfulness(model, dataset, method, users, k=args.k, n_random=5,
                                  seed=args.seed)
            per_user = result["per_user"]
            seconds = per_user["explain_seconds"]
            row = {"dataset": name, "method": method, "users": result["users"],
                   "skipped": result["skipped"], "k": args.k,
                   "mean_drop_top": result["mean_drop_top"],
                   "mean_drop_random": result["mean_drop_random"], "ratio": result["ratio"],
                   "users_top_beats_random": result["top_beats_random"],
                   "seconds_mean": float(seconds.mean()),
                   "seconds_median": float(seconds.median()),
                   "seconds_max": float(seconds.max()), "fit_seconds": fit_seconds,
                   "mean_drop_greedy": greedy,
                   "greedy_ratio": greedy / result["mean_drop_random"],
                   "top_share_of_greedy": result["mean_drop_top"] / greedy}
            results.append(row)
            print(f"  {method:13s} drop top-{args.k} {row['mean_drop_top']:.4f}  random-{args.k} "
                  f"{row['mean_drop_random']:.4f}  ratio {row['ratio']:.2f}  "
                  f"top>random for {100 * row['users_top_beats_random']:.0f}% of users  "
                  f"s/explanation mean {row['seconds_mean']:.2f} median "
                  f"{row['seconds_median']:.2f} max {row['seconds_max']:.2f}  "
                  f"{100 * row['top_share_of_greedy']:.0f}% of the greedy drop "
                  f"(greedy ratio {row['greedy_ratio']:.2f})", flush=True)
        measured[name] = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "machine": machine, "k": args.k, "users": args.users,
                          "methods": args.methods.split(",")}

    out = ROOT / "benchmarks" / "results"
    results, runs = merge_results(out / "faithfulness.json", results, measured)
    write_results(out, results, runs)
    return 0


def merge_results(path: Path, results: list[dict], measured: dict[str, dict]
                  ) -> tuple[list[dict], dict[str, dict]]:
    """This run's rows and, for datasets not run now, the rows already in ``path``; with
    ``{dataset: {"created", "machine", ...}}`` saying when and where each was measured."""
    old_rows, old_runs = [], {}
    if path.is_file():
        saved = json.loads(path.read_text())
        old_rows = [r for r in saved.get("results", []) if r["dataset"] not in measured]
        old_runs = saved.get("runs") or {
            r["dataset"]: {k: saved["meta"][k] for k in ("created", "machine", "k", "users")
                           if k in saved.get("meta", {})}
            for r in old_rows}
    # Datasets in the order they already had, new ones after them.
    order = list(dict.fromkeys([*(r["dataset"] for r in old_rows), *measured]))
    if path.is_file():
        order = list(dict.fromkeys([*(r["dataset"] for r in saved.get("results", [])
                                      if r["dataset"] in order), *order]))
    rows = old_rows + results
    rows.sort(key=lambda r: order.index(r["dataset"]))  # stable: methods keep their order
    runs = {d: old_runs[d] if d not in measured else measured[d] for d in order
            if d in old_runs or d in measured}
    return rows, runs


def write_results(out: Path, results: list[dict], runs: dict[str, dict]) -> None:
    """``faithfulness.json`` and ``faithfulness.md`` (one table, a line per dataset saying when
    and on what it was measured)."""
    lines = [f"| {r['dataset']} | {r['method']} | {r['users']} | {r['mean_drop_top']:.4f} | "
             f"{r['mean_drop_random']:.4f} | {r['ratio']:.2f} | "
             f"{100 * r['users_top_beats_random']:.0f}% | {r['seconds_mean']:.2f} | "
             f"{r['seconds_median']:.2f} | {r['seconds_max']:.2f} | {_greedy_cells(r)} |"
             for r in results]
    header = ("| dataset | method | users | mean drop top-k | mean drop random-k | ratio | "
              "top > random | s mean | s median | s max | greedy ratio | top / greedy |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|")
    table = "\n".join([header, *lines])
    print("\n" + table)
    out.mkdir(parents=True, exist_ok=True)
    latest = max(runs.values(), key=lambda run: run.get("created", ""), default={})
    (out / "faithfulness.json").write_text(json.dumps(
        {"meta": latest, "runs": runs, "results": results}, indent=2))
    when = "\n".join(f"- {name}: measured {run['created']} on {run['machine']} "
                     f"(k = {run.get('k')}, {run.get('users')} users)"
                     for name, run in runs.items())
    (out / "faithfulness.md").write_text(
        "# Explanation faithfulness\n\n"
        "Deletion test: score drop when removing the explanation's top-k history items vs k "
        f"random ones (5 draws). Greedy ratio: the largest top-k drop the model's own scores "
        "find (k greedy removals), over the same random drop: the most any explanation could "
        f"reach on this model; top / greedy: how much of it the method's ranking gets."
        f"\n\n{when}\n\n{table}\n")


def _greedy_cells(row: dict) -> str:
    if "greedy_ratio" not in row:  # measured before the greedy reference existed
        return "- | -"
    return f"{row['greedy_ratio']:.2f} | {100 * row['top_share_of_greedy']:.0f}%"


if __name__ == "__main__":
    raise SystemExit(main())
