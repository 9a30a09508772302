"""Every RecScope model side by side on MovieLens-100K, under /work/shared/BENCHMARK.md.

Warm protocol: every rating is a positive, duplicates dropped; users with >= 5 interactions;
for each user (sorted by user id) a random permutation from one ``default_rng(42)``: the first
round(10%) (at least 1) of their interactions is test, the next round(10%) (at least 1) valid,
the rest train. Models fit on train + valid (iterative ones carve their own early-stopping
split), rank all items excluding the user's train + valid items, and are scored by Recall@20 and
NDCG@20 (binary gains, ideal DCG over min(|test|, 20) positions) averaged over test users.

Cold-start protocol: 10% of the items (``default_rng(7)``) are held out entirely; models fit on
the other interactions and, for each user with held-out interactions, rank only the held-out
items (known from their title and genres).

Each model runs in a fresh subprocess so that its peak resident memory (RSS) is its own. Fit
seconds cover ``model.fit`` only; text encoding (all-MiniLM-L6-v2, cached on disk) is reported
separately. Results go to ``benchmarks/results/ml100k.{json,md}``.

Usage::

    python benchmarks/bench_ml100k.py                      # every available model
    python benchmarks/bench_ml100k.py --models ease,pop,text-knn --no-cold
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys_core.dataset import ITEM_IDX, USER_IDX, Dataset  # noqa: E402
from recsys_core.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from recsys_core.models import available_models, create_model, get_model_class  # noqa: E402
from recsys_core.splits import benchmark_split, cold_start_item_split  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "../shared/data/ml-100k"
RESULTS = REPO / "benchmarks" / "results"
K = 20
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]
#: Peer figures from BENCHMARK.md (Recall@20, NDCG@20) for the table's reference column.
PEERS = {"pop": (0.182, 0.158), "ease": (0.406, 0.367), "lightgcn": (0.357, 0.308)}
PEERS_COLD = {"text-knn": 0.241}
MODEL_ORDER = ["pop", "ease", "text-knn", "mf", "lightgcn", "gnn-llm"]
FAST_FIT_S = 10.0
FAST_FIT_REPEATS = 3


# ---------------------------------------------------------------------------------- data
def load_ml100k(root: str | Path) -> Dataset:
    """MovieLens-100K as a :class:`Dataset`: every rating a positive, one ``genre`` column."""
    root = Path(root)
    if not (root / "u.data").is_file():
        raise SystemExit(f"MovieLens-100K not found at {root} (expected u.data); pass --data.")
    inter = pd.read_csv(root / "u.data", sep="\t", header=None,
                        names=["user_id", "item_id", "rating", "timestamp"])
    inter = inter.drop_duplicates(["user_id", "item_id"])
    inter = inter.astype({"user_id": str, "item_id": str, "rating": float, "timestamp": float})
    raw = pd.read_csv(root / "u.item", sep="|", header=None, encoding="latin-1")
    flags = raw.iloc[:, 5:24].to_numpy().astype(bool)
    items = pd.DataFrame({
        "item_id": raw[0].astype(str),
        "title": raw[1].astype(str),
        "description": "",
        "genre": [[g for g, on in zip(GENRES, row, strict=True) if on] for row in flags],
    })
    return Dataset(inter, items, attribute_columns=["genre"], name="ml-100k")


def protocol_splits(ds: Dataset, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame,
                                                          np.ndarray | None]:
    """(fit frame, test frame, held-out item indices or ``None``) for ``"random"``/``"cold"``.

    Both come from :mod:`recsys_core.splits`, whose defaults are the BENCHMARK.md protocols.
    """
    if protocol == "random":
        train, valid, test = benchmark_split(ds.interactions)
        return pd.concat([train, valid]), test, None
    train, test = cold_start_item_split(ds.interactions)
    return train, test, np.unique(test[ITEM_IDX].to_numpy())


def recall_ndcg_at_k(recs: pd.DataFrame, test: pd.DataFrame, k: int = K) -> tuple[float, float]:
    """Mean Recall@k and NDCG@k over the users of ``test`` (:mod:`recsys_core.metrics`).

    Lists are judged in the model's own rank order (the score column is dropped, so the
    metrics do not re-break ties).
    """
    ranked = recs[["user_id", "item_id", "rank"]]
    return (recall_at_k(test, ranked, k=k), ndcg_at_k(test, ranked, k=k))


# ---------------------------------------------------------------------------------- one model
def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _model_kwargs(name: str, ds: Dataset, options: dict[str, Any]) -> tuple[dict, float]:
    """Constructor arguments the model takes from ``options``, plus text-encoding seconds."""
    params = inspect.signature(get_model_class(name).__init__).parameters
    kwargs = {k: v for k, v in options.items() if k in params and v is not None}
    encode_s = 0.0
    if "item_text_embeddings" in params:
        from recsys_core.text import encode_items

        start = time.perf_counter()
        kwargs["item_text_embeddings"] = encode_items(ds)
        encode_s = time.perf_counter() - start
    return kwargs, encode_s


def run_worker(name: str, protocol: str, data: Path, options: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    ds = load_ml100k(data)
    kwargs, encode_s = _model_kwargs(name, ds, options)
    fit_frame, test, held = protocol_splits(ds, protocol)
    rss_before = _rss_mb()
    fit_times = []
    # Fast fits are repeated (best of 3, like timeit) because the CPU may be shared.
    while not fit_times or (len(fit_times) < FAST_FIT_REPEATS and max(fit_times) < FAST_FIT_S):
        model = create_model(name, **kwargs)
        start = time.perf_counter()
        model.fit(ds, fit_frame)
        fit_times.append(time.perf_counter() - start)
    user_idx = np.unique(test[USER_IDX].to_numpy())
    candidates = None if held is None else ds.item_ids[held]
    start = time.perf_counter()
    recs = model.recommend(users=ds.user_ids[user_idx], k=K, exclude_seen=True,
                           candidates=candidates)
    score_s = time.perf_counter() - start
    recall, ndcg = recall_ndcg_at_k(recs, test)
    result = {"model": name, "protocol": protocol, "recall@20": recall, "ndcg@20": ndcg,
              "fit_s": min(fit_times), "fit_runs": len(fit_times), "encode_s": encode_s,
              "recommend_s": score_s, "peak_rss_mb": _peak_rss_mb(),
              "rss_before_fit_mb": rss_before, "test_users": int(len(user_idx)),
              "test_interactions": int(len(test)),
              "candidates": None if held is None else int(len(held)), "config": model.config(),
              "device": _device_of(model)}
    train_result = getattr(model, "train_result", None)
    if train_result is not None:  # iterative models: how training ended
        result["training"] = {"best_epoch": train_result.best_epoch,
                              "epochs_run": len(train_result.history)
                              - train_result.refit_epochs,
                              "refit_epochs": train_result.refit_epochs,
                              "stop_reason": train_result.stop_reason,
                              "best_valid_ndcg": train_result.best_valid_ndcg}
    if held is not None:
        # A model that gives every held-out item the same score only shows the tie order
        # (item index, which on ML-100K correlates with popularity): not a cold-start signal.
        scores = model.score(user_idx, held)
        result["scores_cold_items"] = bool((np.ptp(scores, axis=1) > 0).any())
    return result


def _device_of(model: Any) -> str:
    from recsys_core.device import describe_device, pick_device

    device = model.config().get("device")
    return "CPU" if device is None else describe_device(pick_device(device))


def run_in_subprocess(name: str, protocol: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", name, "--protocol", protocol,
               "--data", str(args.data), "--result", str(out), "--options", args.options_json]
        try:
            proc = subprocess.run(cmd, timeout=args.timeout, stderr=subprocess.PIPE, text=True)
        except subprocess.TimeoutExpired:
            return {"model": name, "protocol": protocol, "error": f"timeout ({args.timeout} s)"}
        if proc.returncode != 0 or not out.is_file():
            tail = proc.stderr.strip().splitlines()[-3:]
            return {"model": name, "protocol": protocol, "error": " | ".join(tail) or "failed"}
        return json.loads(out.read_text())


# ---------------------------------------------------------------------------------- report
def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _training(result: dict[str, Any]) -> str:
    t = result.get("training")
    if not t:
        return "no training loop"
    refit = (f"; then refit on all fit data for {t['refit_epochs']} epochs"
             if t.get("refit_epochs") else "")
    return (f"best epoch {t['best_epoch']} of {t['epochs_run']} run, stopped by "
            f"{t['stop_reason']}{refit}")


def _best_of(result: dict[str, Any]) -> str:
    runs = result.get("fit_runs", 1)
    return f" (best of {runs})" if runs > 1 else ""


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# MovieLens-100K ({meta['created']}, {meta['machine']})", "",
             "Warm protocol (random 80/10/10 per user, fit on train+valid, full ranking):", "",
             "| model | Recall@20 | NDCG@20 | peer R/N | fit s | encode s | recommend s | "
             "peak RSS MB | RSS before fit MB | device | training |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in results if r["protocol"] == "random"):
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} " + "|" * 10)
            continue
        peer = PEERS.get(r["model"])
        lines.append(
            f"| {r['model']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | "
            f"{'-' if peer is None else f'{peer[0]:.3f} / {peer[1]:.3f}'} | {r['fit_s']:.2f}"
            f"{_best_of(r)} | "
            f"{r['encode_s']:.1f} | {r['recommend_s']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_before_fit_mb']:.0f} | {r.get('device', '-')} | {_training(r)} |")
    cold = [r for r in results if r["protocol"] == "cold"]
    if cold:
        size = next((r["candidates"] for r in cold if r.get("candidates")), None)
        lines += ["", f"Cold-start protocol ({size} held-out items, rank only those; random "
                      f"ranking expects Recall@20 = {min(K, size or K) / (size or K):.3f}):", "",
                  "| model | Recall@20 | NDCG@20 | peer Recall@20 | fit s | encode s | "
                  "peak RSS MB |",
                  "|---|---|---|---|---|---|---|"]
        for r in cold:
            if "error" in r:
                lines.append(f"| {r['model']} | error: {r['error']} ||||||")
                continue
            if not r.get("scores_cold_items", True):
                lines.append(f"| {r['model']} | n/a: scores every held-out item the same "
                             f"(tie order would give {r['recall@20']:.3f}) ||||||")
                continue
            lines.append(f"| {r['model']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | "
                         f"{_fmt(PEERS_COLD.get(r['model']), '.3f')} | {r['fit_s']:.2f} | "
                         f"{r['encode_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None,
                        help="comma-separated model names (default: every available model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with u.data / u.item (default: ../shared/data/ml-100k)")
    parser.add_argument("--epochs", type=int, help="maximum epochs for iterative models")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default: model's)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="training seconds for iterative models (best weights so far are "
                             "kept; default: none)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start protocol")
    parser.add_argument("--cold-models", default=None,
                        help="models for the cold-start protocol (default: same as --models)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed per model and protocol (default: none)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", default="random", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(args.worker, args.protocol, args.data, json.loads(args.options))
        args.result.write_text(json.dumps(result))
        return 0

    names = args.models.split(",") if args.models else [
        m for m in MODEL_ORDER if m in available_models()]
    unknown = [n for n in names if n not in available_models()]
    if unknown:
        raise SystemExit(f"not available: {', '.join(unknown)}; available: "
                         f"{', '.join(available_models())}")
    cold_names = args.cold_models.split(",") if args.cold_models else names
    unknown = [n for n in cold_names if n not in available_models()]
    if unknown:
        raise SystemExit(f"not available: {', '.join(unknown)}")
    args.options_json = json.dumps({"epochs": args.epochs, "device": args.device, "seed": 0,
                                    "time_limit": args.time_limit})
    protocols = {"random": names}
    if not args.no_cold:
        protocols["cold"] = cold_names
    meta = run_metadata(args.data)
    results: list[dict[str, Any]] = []
    for protocol, models in protocols.items():
        for name in models:
            print(f"[{protocol}] {name} ...", file=sys.stderr, flush=True)
            result = run_in_subprocess(name, protocol, args)
            results.append(result)
            if "error" in result:
                print(f"  error: {result['error']}", file=sys.stderr)
            else:
                print(f"  Recall@20 {result['recall@20']:.4f}  NDCG@20 {result['ndcg@20']:.4f}  "
                      f"fit {result['fit_s']:.2f} s  peak RSS {result['peak_rss_mb']:.0f} MB",
                      file=sys.stderr, flush=True)
            table = write_results(args.out, results, meta)  # after each model: partial runs count
    print(table)
    return 0


def run_metadata(data: Path) -> dict[str, Any]:
    import torch

    gpu = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                       f"{gpu}",
            "data": str(Path(data).resolve()), "k": K}


def write_results(folder: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Write ``ml100k.json`` and ``ml100k.md`` into ``folder``; return the markdown."""
    table = markdown(results, meta)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml100k.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (folder / "ml100k.md").write_text(table)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
