"""Ingestion speed and memory: 1M synthetic interactions -> Dataset -> HeteroData.

Writes a synthetic interactions CSV (popularity-skewed items, 1-5 ratings, epoch-second
timestamps, a few duplicate pairs) and an items CSV (title, description, multi-valued genres,
a category) to a temporary folder, then times ``load_dataset`` and ``build_hetero_graph`` in a
fresh child process so the peak RSS reflects ingestion alone (not data generation).

Target: under 10 s and under 2 GB peak RSS for 1M interactions.

Usage::

    python benchmarks/bench_ingest.py [--rows 1000000] [--users 60000] [--items 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
GENRES = ["Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War"]


def generate(folder: Path, rows: int, users: int, items: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    item_idx = rng.choice(items, size=rows, p=popularity / popularity.sum())
    frame = pd.DataFrame({
        "user_id": rng.integers(0, users, rows),
        "item_id": item_idx,
        "rating": rng.integers(1, 6, rows),
        "timestamp": rng.integers(946_684_800, 1_700_000_000, rows),
    })
    frame.to_csv(folder / "interactions.csv", index=False)
    n_genres = rng.integers(1, 4, items)
    genres = ["|".join(rng.choice(GENRES, size=k, replace=False)) for k in n_genres]
    meta = pd.DataFrame({
        "item_id": np.arange(items),
        "title": [f"Synthetic title {k}" for k in range(items)],
        "description": [f"An item about topic {k % 97} and theme {k % 13}, made in {1950 + k % 70}."
                        for k in range(items)],
        "genres": genres,
        "category": rng.choice(["film", "series", "short", "documentary"], size=items),
    })
    meta.to_csv(folder / "items.csv", index=False)


def measure(folder: Path) -> dict:
    import resource

    from recsys_core.graph import build_hetero_graph
    from recsys_core.ingest import load_dataset

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    dataset = load_dataset(folder / "interactions.csv", folder / "items.csv")
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    data = build_hetero_graph(dataset)
    graph_s = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows_read": dataset.report.counts["rows_read"],
        "interactions": len(dataset.interactions),
        "users": dataset.num_users,
        "items": dataset.num_items,
        "duplicate_pairs": dataset.report.problem_counts().get("duplicate_pairs", 0),
        "edge_types": len(data.edge_types),
        "ingest_s": round(ingest_s, 2),
        "graph_s": round(graph_s, 2),
        "total_s": round(ingest_s + graph_s, 2),
        "rss_after_imports_mb": round(base_rss),
        "peak_rss_mb": round(peak_rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=60_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--measure", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        generate(folder, args.rows, args.users, args.items)
        size_mb = (folder / "interactions.csv").stat().st_size / 2**20
        print(f"generated {args.rows:,} interactions ({size_mb:.0f} MiB CSV) and {args.items:,} "
              f"items in {time.perf_counter() - start:.1f} s")
        out = subprocess.run([sys.executable, __file__, "--measure", tmp], check=True,
                             capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
    print(f"rows read {result['rows_read']:,}; kept {result['interactions']:,} interactions "
          f"({result['duplicate_pairs']:,} duplicate pairs merged); {result['users']:,} users, "
          f"{result['items']:,} items; {result['edge_types']} edge types")
    print(f"ingest (load_dataset)      {result['ingest_s']:6.2f} s")
    print(f"graph (build_hetero_graph) {result['graph_s']:6.2f} s")
    print(f"total                      {result['total_s']:6.2f} s   (target < 10 s)")
    print(f"peak RSS                   {result['peak_rss_mb']:6d} MB  (target < 2048 MB; "
          f"{result['rss_after_imports_mb']} MB after imports)")


if __name__ == "__main__":
    main()
