"""Time per epoch and peak memory of the flagship, full-graph against mini-batch training.

For each data set (MovieLens-100K when its files are there, and a synthetic larger graph with
Zipf item popularity) and each mode (``training_mode=full`` / ``minibatch``), one fresh
subprocess trains the flagship (``gnn-llm``) for a warm-up epoch plus ``--epochs`` timed
epochs and reports:

* seconds per timed epoch (from the in-epoch progress events: training steps only, no
  validation pass);
* on CUDA, the peak device memory (:func:`torch.cuda.max_memory_allocated`) with AMP on, as
  the model trains there by default; on the CPU, the process's peak resident memory.

Item texts are random vectors of the encoder's width (384): encoding is a separate stage
(``benchmarks/bench_text.py``) and not part of an epoch. The closed-form paths are off
(``graph_filter=false``, ``item_item=false``), and there is no refit: only training epochs
are measured.

Without a GPU it prints the CPU figures and says that no GPU was found.

Usage::

    python benchmarks/bench_gpu.py                                  # ml-100k + 1 M synthetic
    python benchmarks/bench_gpu.py --synthetic 200000 --epochs 1    # a quick CPU look
    python benchmarks/bench_gpu.py --no-ml100k --synthetic 5000000 --batch-size 8192
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "../shared/data/ml-100k"
TEXT_DIM = 384


def synthetic_dataset(interactions: int, seed: int = 0):
    """About ``interactions`` distinct (user, item) pairs: 1 user per 40 interactions, 1 item
    per 80, item popularity Zipf-like (rank ** -0.9), each user's count geometric."""
    from recsys_core.dataset import Dataset

    rng = np.random.default_rng(seed)
    num_users = max(50, interactions // 40)
    num_items = max(50, interactions // 80)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.9
    popularity /= popularity.sum()
    counts = np.minimum(rng.geometric(1 / 40, num_users), num_items // 2) + 1
    users = np.repeat(np.arange(num_users), counts)
    items = rng.choice(num_items, size=len(users), p=popularity)
    frame = pd.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str)})
    frame = frame.drop_duplicates(ignore_index=True)
    frame["rating"] = 1.0
    frame["timestamp"] = np.arange(len(frame), dtype=np.float64)
    catalogue = pd.DataFrame({"item_id": np.arange(num_items).astype(str),
                              "title": [f"item {i}" for i in range(num_items)]})
    return Dataset(frame, catalogue, name=f"synthetic-{len(frame)}")


def load(name: str, data: Path):
    if name == "ml-100k":
        from bench_ml100k import load_ml100k  # this script's folder is on the path

        return load_ml100k(data, with_users=False)
    return synthetic_dataset(int(name.split("-", 1)[1]))


def measure(name: str, mode: str, args: argparse.Namespace) -> dict:
    """One data set and mode, in this process."""
    import torch

    from recsys_core.device import pick_device
    from recsys_core.models.gnn_llm import GNNLLMRecommender

    torch.set_num_threads(args.threads) if args.threads else None
    dataset = load(name, args.data)
    device = pick_device(args.device)
    text = torch.randn(dataset.num_items, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    events: list[tuple[float, dict]] = []
    model = GNNLLMRecommender(
        epochs=args.epochs + 2, batch_size=args.batch_size, patience=10**6, refit=False,
        item_item=False, graph_filter=False, item_text_embeddings=text, device=args.device,
        training_mode=mode, num_neighbors=args.num_neighbors, show_progress=False, seed=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model.fit(dataset, dataset.interactions,
              on_progress=lambda e: events.append((time.perf_counter(), e)))
    total = time.perf_counter() - started
    ends = [t for t, e in events if e.get("stage") == "train" and "loss" in e]
    # Epoch 1 warms up; the last epoch ends with the validation pass: time the ones between.
    timed = np.diff(ends[:args.epochs + 1]) if len(ends) > args.epochs else np.array([])
    out = {"data": name, "mode": mode, "device": str(device),
           "interactions": int(len(dataset.interactions)), "users": dataset.num_users,
           "items": dataset.num_items, "seconds_per_epoch": float(timed.mean()) if timed.size
           else float("nan"), "fit_seconds": total,
           "training_mode": model.train_result.training_mode,
           "batches_per_epoch": max((e.get("batches", 0) for _, e in events), default=0)}
    if device.type == "cuda":
        out["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with u.data / u.item (default: ../shared/data/ml-100k)")
    parser.add_argument("--no-ml100k", action="store_true", help="skip MovieLens-100K")
    parser.add_argument("--synthetic", type=int, default=1_000_000, metavar="N",
                        help="interactions of the synthetic graph; 0 skips it (default: 1 M)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (default: 2)")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--num-neighbors", type=int, default=10)
    parser.add_argument("--modes", default="full,minibatch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: DATA:MODE in this process
    args = parser.parse_args()
    if args.one:
        name, mode = args.one.rsplit(":", 1)
        print(json.dumps(measure(name, mode, args)))
        return

    import torch

    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}; AMP on; peak device memory from "
              "torch.cuda.max_memory_allocated")
    else:
        print("No GPU found (torch.cuda.is_available() is False): CPU figures, peak RSS.")
    names = []
    if not args.no_ml100k:
        if (args.data / "u.data").exists():
            names.append("ml-100k")
        else:
            print(f"ml-100k skipped: no {args.data / 'u.data'}")
    if args.synthetic > 0:
        names.append(f"synthetic-{args.synthetic}")
    passthrough = [f"--data={args.data}", f"--epochs={args.epochs}",
                   f"--batch-size={args.batch_size}", f"--num-neighbors={args.num_neighbors}",
                   f"--device={args.device}", f"--threads={args.threads}"]
    rows = []
    for name in names:
        for mode in args.modes.split(","):
            done = subprocess.run([sys.executable, __file__, "--one", f"{name}:{mode}",
                                   *passthrough], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name} {mode}: failed\n{done.stderr[-2000:]}")
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if not rows:
        return
    table = pd.DataFrame(rows)
    columns = ["data", "mode", "device", "interactions", "batches_per_epoch",
               "seconds_per_epoch", "peak_device_mib", "peak_rss_mib"]
    print(table[[c for c in columns if c in table]].to_string(index=False,
                                                            float_format="%.2f"))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
