"""Every RecScope model side by side on MovieLens-100K, under ../shared/BENCHMARK.md.

Warm protocol: every rating is a positive, duplicates dropped; users with >= 5 interactions;
for each user (sorted by user id) a random permutation from one ``default_rng(42)``: the first
round(10%) (at least 1) of their interactions is test, the next round(10%) (at least 1) valid,
the rest train. Models fit on train + valid (iterative ones carve their own early-stopping
split), rank all items excluding the user's train + valid items, and are scored by Recall@20 and
NDCG@20 (binary gains, ideal DCG over min(|test|, 20) positions) averaged over test users.

Cold-start protocol: 10% of the items (``default_rng(7)``) are held out entirely; models fit on
the other interactions and, for each user with held-out interactions, rank only the held-out
items (known from their title and genres).

Tuned peers: the peers with a grid in :data:`recsys_core.tuning.DEFAULT_GRIDS` (pop, EASE,
RP3beta, ItemKNN, MF, LightGCN) choose their settings as the flagship does, on the validation
split :func:`recsys_core.tuning.tune_model` carves out of train + valid (the flagship's own
``split_validation(fit, 0.1, seed=0)``), then refit on all of train + valid; ``--no-tune`` runs
them with their constructor defaults instead. MF and LightGCN train with the flagship's loss
and negatives (sampled softmax over 2,048 items). ``--time-limit`` caps each grid point's
training; the refit of an iterative peer trains for the epochs validation chose.

Split seeds: ``--seeds 42,1,2`` repeats the warm protocol on other random splits (42 is the
BENCHMARK.md one); per-seed figures and their means are printed and saved. The cold-start
split keeps its protocol seed (7).

Each model runs in a fresh subprocess so that its peak resident memory (RSS) is its own. Fit
seconds cover ``model.fit`` only (for a tuned peer: the whole grid plus the refit); text
encoding (all-MiniLM-L6-v2, cached on disk) is reported separately. Results go to
``benchmarks/results/ml100k.{json,md}``; a run replaces the entries it re-measures (same model,
protocol, seed and tuning) and keeps the others, so runs of different models add up
(``--fresh`` starts over).

Usage::

    python benchmarks/bench_ml100k.py                      # every available model
    python benchmarks/bench_ml100k.py --models ease,pop,text-knn --no-cold
    python benchmarks/bench_ml100k.py --models pop,ease,rp3beta,itemknn,mf,lightgcn \\
        --cold-models text-knn,text-pop --seeds 42,1,2 --time-limit 120
"""

from __future__ import annotations

import argparse
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

from recsys_core.dataset import ITEM_IDX, USER_IDX, Dataset  # noqa: E402
from recsys_core.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from recsys_core.models import available_models, create_model, model_arguments  # noqa: E402
from recsys_core.models.ablations import ABLATIONS_BY_KEY  # noqa: E402
from recsys_core.splits import (  # noqa: E402
    BENCHMARK_SEED,
    COLD_START_SEED,
    cold_start_item_split,
    per_user_random_split,
)
from recsys_core.tuning import DEFAULT_BASE_PARAMS, DEFAULT_GRIDS, tune_model  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "../shared/data/ml-100k"
RESULTS = REPO / "benchmarks" / "results"
K = 20
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]
#: Peer figures from BENCHMARK.md (Recall@20, NDCG@20) for the table's reference column.
PEERS = {"pop": (0.182, 0.158), "ease": (0.406, 0.367), "lightgcn": (0.357, 0.308)}
#: BENCHMARK.md's validation-tuned peers (chosen on its valid split), for the tuned table.
PEERS_TUNED = {"pop": (0.182, 0.158), "ease": (0.417, 0.369), "rp3beta": (0.357, 0.313)}
PEERS_COLD = {"text-knn": 0.241, "text-pop": 0.322}
MODEL_ORDER = ["pop", "ease", "rp3beta", "itemknn", "text-knn", "text-pop", "mf", "lightgcn",
               "gnn-llm"]
#: Peers tuned on validation in the warm protocol (unless --no-tune), in table order.
TUNED_PEERS = [m for m in MODEL_ORDER if m in DEFAULT_GRIDS]
FAST_FIT_S = 10.0
FAST_FIT_REPEATS = 3


# ---------------------------------------------------------------------------------- data
def load_ml100k(root: str | Path, with_users: bool = True) -> Dataset:
    """MovieLens-100K as a :class:`Dataset`: every rating a positive, one ``genre`` column,
    and (``with_users``) the user file ``u.user`` (age, gender, occupation) as user
    attributes, read by the same ingestion as ``--users`` (age binned, zip code ignored)."""
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
    users = None
    if with_users and (root / "u.user").is_file():
        from recsys_core.ingest import load_dataset

        users = load_dataset(root / "u.data", users=root / "u.user").users
    return Dataset(inter, items, attribute_columns=["genre"], users=users, name="ml-100k")


def protocol_splits(ds: Dataset, protocol: str, seed: int = BENCHMARK_SEED,
                    cold_seed: int = COLD_START_SEED
                    ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None]:
    """(fit frame, test frame, held-out item indices or ``None``) for ``"random"``/``"cold"``.

    Both come from :mod:`recsys_core.splits`, whose defaults are the BENCHMARK.md protocols;
    ``seed`` is the random split's, ``cold_seed`` the cold-start split's (which items are
    held out; BENCHMARK.md's is the default).
    """
    if protocol == "random":
        train, valid, test = per_user_random_split(ds.interactions, seed=seed)
        return pd.concat([train, valid]), test, None
    train, test = cold_start_item_split(ds.interactions, seed=cold_seed)
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
    params = model_arguments(name)
    kwargs = {k: v for k, v in options.items() if k in params and v is not None}
    encode_s = 0.0
    if "item_text_embeddings" in params:
        from recsys_core.text import encode_items

        start = time.perf_counter()
        kwargs["item_text_embeddings"] = encode_items(ds)
        encode_s = time.perf_counter() - start
    return kwargs, encode_s


def run_worker(name: str, protocol: str, data: Path, options: dict[str, Any],
               seed: int = BENCHMARK_SEED, tune: bool = False) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    ds = load_ml100k(data)
    # "gnn-llm:no-item-item": the flagship with one part switched off (models.ablations).
    base, _, variant = name.partition(":")
    if variant:
        options = {**options, **ABLATIONS_BY_KEY[variant].params}
    kwargs, encode_s = _model_kwargs(base, ds, options)
    fit_frame, test, held = protocol_splits(ds, protocol, seed)
    rss_before = _rss_mb()
    fit_times = []
    tuning = None
    if tune:  # the whole grid plus the refit, once (it is not a fast fit to repeat)
        start = time.perf_counter()
        model, record = tune_model(name, ds, fit_frame,
                                   base_params={**DEFAULT_BASE_PARAMS.get(name, {}), **kwargs})
        fit_times.append(time.perf_counter() - start)
        tuning = {**record.to_dict(), "describe": record.describe()}
    # Fast fits are repeated (best of 3, like timeit) because the CPU may be shared.
    while not tune and (not fit_times or (len(fit_times) < FAST_FIT_REPEATS
                                          and max(fit_times) < FAST_FIT_S)):
        model = create_model(base, **kwargs)
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
    result = {"model": name, "protocol": protocol, "seed": seed if held is None else None,
              "tuned": tune, "recall@20": recall, "ndcg@20": ndcg,
              "fit_s": min(fit_times), "fit_runs": len(fit_times), "encode_s": encode_s,
              "recommend_s": score_s, "peak_rss_mb": _peak_rss_mb(),
              "rss_before_fit_mb": rss_before, "test_users": int(len(user_idx)),
              "test_interactions": int(len(test)),
              "candidates": None if held is None else int(len(held)), "config": model.config(),
              "device": _device_of(model),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if tuning is not None:
        result["tuning"] = tuning
    if getattr(model, "validation", None):  # text-pop: its pseudo-cold choice
        result["validation"] = model.validation
    train_result = getattr(model, "train_result", None)
    if train_result is not None:  # iterative models: how training ended
        result["training"] = {"best_epoch": train_result.best_epoch,
                              "epochs_run": len(train_result.history)
                              - train_result.refit_epochs,
                              "refit_epochs": train_result.refit_epochs,
                              "stop_reason": train_result.stop_reason,
                              "best_valid_ndcg": train_result.best_valid_ndcg,
                              # the flagship: graph filter / item-item path chosen on validation
                              "selected": train_result.selected}
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


def run_in_subprocess(name: str, protocol: str, args: argparse.Namespace,
                      seed: int = BENCHMARK_SEED, tune: bool = False) -> dict[str, Any]:
    key = {"model": name, "protocol": protocol,
           "seed": seed if protocol == "random" else None, "tuned": tune}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", name, "--protocol", protocol,
               "--data", str(args.data), "--result", str(out), "--options", args.options_json,
               "--split-seed", str(seed)] + (["--tune"] if tune else [])
        try:
            proc = subprocess.run(cmd, timeout=args.timeout, stderr=subprocess.PIPE, text=True)
        except subprocess.TimeoutExpired:
            return {**key, "error": f"timeout ({args.timeout} s)"}
        if proc.returncode != 0 or not out.is_file():
            tail = proc.stderr.strip().splitlines()[-3:]
            return {**key, "error": " | ".join(tail) or "failed"}
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


def _seed_order(result: dict[str, Any]) -> tuple[bool, int]:
    """The BENCHMARK.md seed first, then the others in ascending order."""
    seed = result.get("seed")
    return (seed != BENCHMARK_SEED, seed or 0)


def _seed_label(result: dict[str, Any]) -> str:
    return "-" if result.get("seed") is None else str(result["seed"])


def _chosen(result: dict[str, Any]) -> str:
    """The tuned setting in words, with how iterative grid points ended."""
    tuning = result.get("tuning") or {}
    chosen = tuning.get("chosen") or {}
    text = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in chosen.items()) or "nothing to tune"
    stops = {p.get("stop_reason") for p in tuning.get("points", [])} - {None}
    if "time_limit" in stops:
        text += " (time limit hit)"
    return text


def tuned_peer_table(results: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: each tuned peer's choice on validation and its test figures, per seed."""
    rows = sorted((r for r in results if r["protocol"] == "random" and r.get("tuned")),
                  key=lambda r: (_order_of(r["model"]), _seed_order(r)))
    if not rows:
        return []
    lines = ["Tuned peers (each chose its settings on the flagship's validation split, "
             "`split_validation(train + valid, 0.1, seed=0)`, by NDCG@20, then refit on train + "
             "valid; fit s = the whole grid plus the refit):", "",
             "| model | split seed | chosen on validation | grid points | valid NDCG@20 | "
             "Recall@20 | NDCG@20 | BENCHMARK.md tuned R/N | fit s | refit s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {_seed_label(r)} | error: {r['error']} " + "|" * 8)
            continue
        t = r["tuning"]
        best = max((p["ndcg"] for p in t["points"]), default=None)
        peer = PEERS_TUNED.get(r["model"]) if r.get("seed") == BENCHMARK_SEED else None
        lines.append(
            f"| {r['model']} | {_seed_label(r)} | {_chosen(r)} | {len(t['points'])} | "
            f"{_fmt(best, '.4f')} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | "
            f"{'-' if peer is None else f'{peer[0]:.3f} / {peer[1]:.3f}'} | {r['fit_s']:.1f} | "
            f"{t['refit_seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    return lines


def seed_means(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, tuned): warm-protocol Recall@20 / NDCG@20 averaged over the split seeds."""
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for r in results:
        if r["protocol"] == "random" and "error" not in r:
            groups.setdefault((r["model"], bool(r.get("tuned"))), []).append(r)
    out = []
    for (model, tuned), rows in sorted(groups.items(), key=lambda g: (_order_of(g[0][0]),
                                                                     g[0][1])):
        rows = sorted(rows, key=_seed_order)
        out.append({"model": model, "tuned": tuned, "seeds": [r.get("seed") for r in rows],
                    "recall@20": float(np.mean([r["recall@20"] for r in rows])),
                    "ndcg@20": float(np.mean([r["ndcg@20"] for r in rows])),
                    "per_seed": {str(r.get("seed")): [r["recall@20"], r["ndcg@20"]]
                                 for r in rows},
                    "chosen": {str(r.get("seed")): _chosen(r) for r in rows if tuned}})
    return out


def seed_mean_table(means: list[dict[str, Any]]) -> list[str]:
    if not any(len(m["seeds"]) > 1 for m in means):
        return []
    lines = ["Averaged over split seeds (warm protocol):", "",
             "| model | tuned | seeds | mean Recall@20 | mean NDCG@20 | per seed Recall / NDCG |",
             "|---|---|---|---|---|---|"]
    for m in means:
        per_seed = "; ".join(f"{seed}: {r:.4f} / {n:.4f}" for seed, (r, n) in
                             m["per_seed"].items())
        lines.append(f"| {m['model']} | {'yes' if m['tuned'] else 'no'} | "
                     f"{','.join(str(s) for s in m['seeds'])} | {m['recall@20']:.4f} | "
                     f"{m['ndcg@20']:.4f} | {per_seed} |")
    return lines


def _order_of(name: str) -> int:
    return MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# MovieLens-100K ({meta['created']}, {meta['machine']})", ""]
    tuned = tuned_peer_table(results)
    if tuned:
        lines += tuned + [""]
    means = seed_mean_table(seed_means(results))
    if means:
        lines += means + [""]
    untuned = [r for r in results if r["protocol"] == "random" and not r.get("tuned")]
    if untuned:
        lines += ["Warm protocol (random 80/10/10 per user, fit on train+valid, full ranking; "
                  "constructor defaults):", "",
                  "| model | split seed | Recall@20 | NDCG@20 | peer R/N | fit s | encode s | "
                  "recommend s | peak RSS MB | RSS before fit MB | device | training |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(untuned, key=lambda r: (_order_of(r["model"]), _seed_order(r))):
        if "error" in r:
            lines.append(f"| {r['model']} | {_seed_label(r)} | error: {r['error']} " + "|" * 10)
            continue
        peer = PEERS.get(r["model"]) if r.get("seed", BENCHMARK_SEED) == BENCHMARK_SEED else None
        lines.append(
            f"| {r['model']} | {_seed_label(r)} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | "
            f"{'-' if peer is None else f'{peer[0]:.3f} / {peer[1]:.3f}'} | {r['fit_s']:.2f}"
            f"{_best_of(r)} | "
            f"{r['encode_s']:.1f} | {r['recommend_s']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_before_fit_mb']:.0f} | {r.get('device', '-')} | {_training(r)} |")
    cold = sorted((r for r in results if r["protocol"] == "cold"),
                  key=lambda r: _order_of(r["model"]))
    if cold:
        size = next((r["candidates"] for r in cold if r.get("candidates")), None)
        lines += ["", f"Cold-start protocol ({size} held-out items, rank only those; random "
                      f"ranking expects Recall@20 = {min(K, size or K) / (size or K):.3f}):", "",
                  "| model | Recall@20 | NDCG@20 | peer Recall@20 | chosen on validation | "
                  "fit s | encode s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in cold:
            if "error" in r:
                lines.append(f"| {r['model']} | error: {r['error']} |||||||")
                continue
            if not r.get("scores_cold_items", True):
                lines.append(f"| {r['model']} | n/a: scores every held-out item the same "
                             f"(tie order would give {r['recall@20']:.3f}) |||||||")
                continue
            chosen = r.get("validation") or {}
            weight = ("-" if "popularity_weight" not in chosen else
                      f"popularity weight {chosen['popularity_weight']:g} (pseudo-cold, "
                      f"{chosen['held_out_items']} items)")
            lines.append(f"| {r['model']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | "
                         f"{_fmt(PEERS_COLD.get(r['model']), '.3f')} | {weight} | "
                         f"{r['fit_s']:.2f} | {r['encode_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None,
                        help="comma-separated model names (default: every available model); "
                        "gnn-llm:KEY is the flagship with one part off (KEY from "
                        "recsys_core.models.ablations, e.g. gnn-llm:no-item-item)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with u.data / u.item (default: ../shared/data/ml-100k)")
    parser.add_argument("--epochs", type=int, help="maximum epochs for iterative models")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda (default: model's)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="training seconds for iterative models, per grid point when tuned "
                             "(best weights so far are kept; default: none)")
    parser.add_argument("--seeds", default=str(BENCHMARK_SEED),
                        help="comma-separated split seeds of the warm protocol (default: 42, the "
                             "BENCHMARK.md split), e.g. 42,1,2")
    parser.add_argument("--no-tune", action="store_true",
                        help="run the peers with their defaults instead of tuning them on "
                             "validation")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start protocol")
    parser.add_argument("--cold-models", default=None,
                        help="models for the cold-start protocol (default: same as --models)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed per model and protocol (default: none)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--fresh", action="store_true",
                        help="discard the results already in --out instead of updating them")
    parser.add_argument("--ablations", default="",
                        help="also run the flagship's ablations (benchmarks/bench_ablations.py) "
                        "on these comma-separated data sets (ml-100k, demo) and print their "
                        "table; 'saved' prints the last saved table without running")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", default="random", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--split-seed", type=int, default=BENCHMARK_SEED, help=argparse.SUPPRESS)
    parser.add_argument("--tune", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(args.worker, args.protocol, args.data, json.loads(args.options),
                            seed=args.split_seed, tune=args.tune)
        args.result.write_text(json.dumps(result))
        return 0

    names = args.models.split(",") if args.models else [
        m for m in MODEL_ORDER if m in available_models()]
    unknown = [n for n in names if not _known_model(n)]
    if unknown:
        raise SystemExit(f"not available: {', '.join(unknown)}; available: "
                         f"{', '.join(available_models())}")
    cold_names = args.cold_models.split(",") if args.cold_models else names
    unknown = [n for n in cold_names if not _known_model(n)]
    if unknown:
        raise SystemExit(f"not available: {', '.join(unknown)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    args.options_json = json.dumps({"epochs": args.epochs, "device": args.device, "seed": 0,
                                    "time_limit": args.time_limit})
    runs = [("random", name, seed, name in TUNED_PEERS and not args.no_tune)
            for seed in seeds for name in names]
    if not args.no_cold:
        runs += [("cold", name, BENCHMARK_SEED, False) for name in cold_names]
    meta = run_metadata(args.data)
    meta["seeds"] = seeds
    results: list[dict[str, Any]] = []
    for protocol, name, seed, tune in runs:
        label = f"[{protocol}{f' seed {seed}' if protocol == 'random' else ''}]"
        print(f"{label} {name}{' (tuned on validation)' if tune else ''} ...", file=sys.stderr,
              flush=True)
        result = run_in_subprocess(name, protocol, args, seed=seed, tune=tune)
        results.append(result)
        if "error" in result:
            print(f"  error: {result['error']}", file=sys.stderr)
        else:
            chosen = f"  chosen {_chosen(result)}" if tune else ""
            print(f"  Recall@20 {result['recall@20']:.4f}  NDCG@20 {result['ndcg@20']:.4f}  "
                  f"fit {result['fit_s']:.2f} s  peak RSS {result['peak_rss_mb']:.0f} MB{chosen}",
                  file=sys.stderr, flush=True)
        # After each model, so partial runs count; the file is read again each time, so a run
        # of other models writing to it meanwhile keeps its entries.
        previous = [] if args.fresh else read_results(args.out)
        table = write_results(args.out, merge_results(previous, results), meta)
    print(table)
    if args.ablations:
        print()
        print(ablation_table(args.ablations, args.split_seed))
    return 0


def ablation_table(data: str, seed: int) -> str:
    """The ablation table: run ``bench_ablations.py`` on ``data`` (or, with ``"saved"``, read
    its last saved results)."""
    script = Path(__file__).resolve().parent / "bench_ablations.py"
    if data != "saved":
        subprocess.run([sys.executable, str(script), "--data", data, "--seeds", str(seed)],
                       check=True)
    rows = json.loads((RESULTS / "ablations.json").read_text())["rows"]
    from bench_ablations import mean_table

    return ("Ablations (each part of the flagship switched off)\n\n"
            + mean_table(rows, [seed], "warm"))


def _known_model(name: str) -> bool:
    """A registered model, or ``gnn-llm:<ablation key>`` (see recsys_core.models.ablations)."""
    base, _, variant = name.partition(":")
    return base in available_models() and (not variant or (
        base == "gnn-llm" and variant in ABLATIONS_BY_KEY))


def _result_key(result: dict[str, Any]) -> tuple:
    seed = result.get("seed", BENCHMARK_SEED) if result["protocol"] == "random" else None
    return (result["model"], result["protocol"], seed, bool(result.get("tuned")))


def merge_results(previous: list[dict[str, Any]], new: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """``previous`` with every entry re-measured in ``new`` replaced (same model, protocol,
    seed and tuning), plus the new ones."""
    fresh = {_result_key(r) for r in new}
    return [r for r in previous if _result_key(r) not in fresh] + list(new)


def read_results(folder: Path) -> list[dict[str, Any]]:
    """The results saved in ``folder`` (none when there is no readable file)."""
    try:
        return list(json.loads((folder / "ml100k.json").read_text())["results"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


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
    payload = {"meta": meta, "results": results, "seed_means": seed_means(results)}
    (folder / "ml100k.json").write_text(json.dumps(payload, indent=2))
    (folder / "ml100k.md").write_text(table)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
