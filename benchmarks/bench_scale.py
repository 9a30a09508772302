"""Scale benchmark: time and peak memory of every stage from 100k to 20M interactions.

A synthetic generator writes data with a realistic skew (Zipf item popularity, lognormal user
activity, taste clusters: each user draws most interactions from the items of a few clusters,
1-5 ratings, timestamps over three years; items with titles, a description, a cluster genre
and a category). Then each stage runs in its own child process, so its peak RSS
(``resource.getrusage(RUSAGE_SELF)`` in the child) is its own, and so is its CPU time (user +
system of the whole child, imports included, ``cpu_seconds``: unlike the wall time, it hardly
moves when other jobs share the cores):

* ``ingest``: :func:`recsys_core.ingest.load_dataset` (chunked parsing; the time starts
  after torch and PyG are imported);
* ``graph``: ingestion again, then :func:`recsys_core.graph.build_hetero_graph` (the time is
  the graph build alone; the peak includes the ingestion before it);
* ``encode``: the item texts embedded by the default text encoder
  (:func:`recsys_core.text.encode_items`) into an embedding cache of the size's own folder,
  empty before the stage, so the time is the real encoding; the later stages read that cache;
* ``train``: ``python -m recsys_core train`` of the flagship with ``--epochs 1`` (one epoch,
  validation selection of the graph filter and item-item path, the refit epoch on every
  interaction, the final fit, the run saved; the item texts come from the ``encode`` stage's
  cache). Its ``epoch_seconds`` is the first epoch alone, with the validation passes before
  and after it (from the run's history), and ``epoch_cpu_seconds`` its CPU time (one
  thread: the compute, whatever else shares the cores); at the ``100k`` size also
  ``train-default``, the default training
  (issue 11: a 100k-interaction, 10k-item data set trains in 120 s or less), stopped at
  ``--default-timeout`` with the epoch it reached; ``epoch_valid_ndcg`` is the validation
  NDCG@20 after the first epoch;
* ``train-historical``: the same one-epoch ``train`` with ``--param
  historical_embeddings=true`` (mini-batch steps read the users outside the batch from
  historical embeddings, so a step's sample stops at them): its cost per interaction and
  its validation NDCG after the epoch against ``train``'s;
* ``recommend``: ``python -m recsys_core recommend --k 20`` for every user (streamed CSV).

Sizes (rows / users / items): ``100k`` 100k / 5k / 10k, ``1m`` 1M / 20k / 10k, ``2m`` 2M /
40k / 16k (between the two, for the curve), ``5m`` 5M / 100k / 30k (the issue's target size),
``20m`` 20M / 400k / 60k; and a series with the catalogue fixed at 10k items, ``1m``,
``2m-10k`` 2M / 40k / 10k, ``5m-10k`` 5M / 100k / 10k and ``10m-10k`` 10M / 200k / 10k,
which separates the cost of more
interactions from the cost of a larger catalogue (the first series grows both). Heavy users draw popular
items more than once: the repeated pairs collapse on ingestion (the table shows the
interactions kept). The table printed
at the end, where the ``train`` row also gives the first epoch's cost per interaction kept
(microseconds), is also saved to ``benchmarks/results/scale.json`` (each size merged into the
file as it stands when the size finishes, so sizes and stages measured before, or by another
run meanwhile, are kept) and drawn in ``docs/scale.html`` (plotly: time and peak RSS per stage,
and the first epoch per interaction; a PNG beside it only when kaleido is installed).

Usage::

    python benchmarks/bench_scale.py --sizes 100k,1m [--stages ingest,graph,train,recommend]
        [--work DIR] [--threads N] [--timeout S]
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

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
FIGURE = ROOT / "docs" / "scale.html"

#: name -> (interactions, users, items)
SIZES = {
    "100k": (100_000, 5_000, 10_000),
    "1m": (1_000_000, 20_000, 10_000),
    "2m": (2_000_000, 40_000, 16_000),
    "5m": (5_000_000, 100_000, 30_000),
    "20m": (20_000_000, 400_000, 60_000),
    # The catalogue fixed at 1m's 10k items (users grow with the rows): separates the cost
    # of more interactions from the cost of a larger catalogue, which the sizes above mix.
    "2m-10k": (2_000_000, 40_000, 10_000),
    "5m-10k": (5_000_000, 100_000, 10_000),
    "10m-10k": (10_000_000, 200_000, 10_000),
}
#: The fixed-catalogue series (10k items), drawn as its own line.
FIXED_CATALOGUE = ("1m", "2m-10k", "5m-10k", "10m-10k")
STAGES = ("ingest", "graph", "encode", "train", "train-historical", "recommend")
CLUSTERS = 50
GENRES = ["Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
          "Western", "History", "Biography", "Family", "Sport"]
WORDS = ["river", "empire", "winter", "signal", "garden", "harbour", "machine", "silence",
         "storm", "letter", "mountain", "circus", "orbit", "lantern", "desert", "island",
         "mirror", "engine", "forest", "crown", "bridge", "shadow", "comet", "market"]


# ------------------------------------------------------------------------------ generator
def generate(folder: Path, interactions: int, users: int, items: int, seed: int = 0,
             chunk: int = 2_000_000) -> dict:
    """Write ``interactions.csv`` and ``items.csv`` into ``folder``.

    Items get a taste cluster and a Zipf(0.9) popularity; users a lognormal(0, 1) activity
    and a home cluster. Each interaction is drawn from the user's home cluster with
    probability 0.7 (by popularity within the cluster), else from the whole catalogue (by
    popularity). Written in chunks, so memory stays bounded at 20M rows.

    Returns:
        Counts written (rows before duplicates collapse, users, items).
    """
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(0, CLUSTERS, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    popularity = popularity[rng.permutation(items)]  # popularity not in id order
    global_p = popularity / popularity.sum()
    members = [np.flatnonzero(item_cluster == c) for c in range(CLUSTERS)]
    cluster_p = [popularity[m] / popularity[m].sum() for m in members]
    user_cluster = rng.integers(0, CLUSTERS, users)
    activity = rng.lognormal(0.0, 1.0, users)
    activity /= activity.sum()
    path = folder / "interactions.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("user_id,item_id,rating,timestamp\n")
        for start in range(0, interactions, chunk):
            n = min(chunk, interactions - start)
            user = rng.choice(users, size=n, p=activity)
            home = rng.random(n) < 0.7
            item = rng.choice(items, size=n, p=global_p)
            for c in np.unique(user_cluster[user[home]]):
                rows = np.flatnonzero(home & (user_cluster[user] == c))
                item[rows] = rng.choice(members[c], size=len(rows), p=cluster_p[c])
            rating = np.clip(np.round(rng.normal(3.6, 1.0, n)), 1, 5).astype(np.int8)
            stamp = rng.integers(1_600_000_000, 1_694_000_000, n)
            pd.DataFrame({"user_id": user, "item_id": item, "rating": rating,
                          "timestamp": stamp}).to_csv(handle, header=False, index=False)
    words = np.array(WORDS)
    first = words[rng.integers(0, len(words), items)]
    second = words[rng.integers(0, len(words), items)]
    meta = pd.DataFrame({
        "item_id": np.arange(items),
        "title": [f"The {a.capitalize()} of the {b.capitalize()} {k}"
                  for k, (a, b) in enumerate(zip(first, second, strict=True))],
        "description": [f"A {GENRES[c % len(GENRES)].lower()} story of a {a} and a {b}."
                        for c, a, b in zip(item_cluster, first, second, strict=True)],
        "genres": [GENRES[c % len(GENRES)] + ("|" + GENRES[(c * 7 + 3) % len(GENRES)]
                                              if c % 3 == 0 else "")
                   for c in item_cluster],
        "category": rng.choice(["film", "series", "short", "documentary"], size=items),
    })
    meta.to_csv(folder / "items.csv", index=False)
    return {"rows": interactions, "users": users, "items": items}


# ------------------------------------------------------------------------------ stages
def run_stage(stage: str, folder: Path) -> dict:
    """Run one stage in this process; returns its own seconds (and extra facts)."""
    inter, items = str(folder / "interactions.csv"), str(folder / "items.csv")
    run_dir = folder / "run"
    if stage in ("ingest", "graph"):
        import recsys_core.graph  # noqa: F401  (imports torch and PyG: not part of the time)
        from recsys_core.ingest import load_dataset

        start = time.perf_counter()
        ds = load_dataset(inter, items)
        ingest_s = time.perf_counter() - start
        out = {"seconds": ingest_s, "interactions": len(ds.interactions),
               "users": ds.num_users, "items": ds.num_items}
        if stage == "graph":
            from recsys_core.graph import build_hetero_graph

            start = time.perf_counter()
            data = build_hetero_graph(ds)
            out.update(seconds=time.perf_counter() - start, ingest_seconds=ingest_s,
                       edges=int(sum(data[et].num_edges for et in data.edge_types)))
        return out
    if stage == "encode":
        import recsys_core.graph  # noqa: F401  (torch and PyG: not part of the time)
        from recsys_core.ingest import load_dataset
        from recsys_core.text import default_encoder, encode_items

        ds = load_dataset(inter, items)
        encoder = default_encoder()  # loading the model is not part of the time either
        start = time.perf_counter()
        encode_items(ds, encoder=encoder)
        return {"seconds": time.perf_counter() - start, "items": ds.num_items,
                "cache_hits": encoder.stats.cache_hits}
    from recsys_core.cli import main

    if stage in ("train", "train-default", "train-historical"):
        out_dir = {"train": run_dir, "train-default": folder / "run-default",
                   "train-historical": folder / "run-historical"}[stage]
        args = ["train", "--interactions", inter, "--items", items, "--out", str(out_dir)]
        if stage != "train-default":
            args += ["--epochs", "1"]
        if stage == "train-historical":
            args += ["--param", "historical_embeddings=true"]
        start = time.perf_counter()
        code = main(args)
        out = {"seconds": time.perf_counter() - start, "exit": code}
        info = out_dir / "run.json"
        if info.exists():
            extra = json.loads(info.read_text()).get("extra", {})
            result = extra.get("train_result") or {}
            epochs = [r for r in result.get("history", []) if r.get("stage", "train") == "train"]
            out["epochs"] = len(epochs)
            if epochs:  # the first epoch with its validation passes (seconds from the start)
                out["epoch_seconds"] = epochs[0]["seconds"]
                if "cpu_seconds" in epochs[0]:
                    out["epoch_cpu_seconds"] = epochs[0]["cpu_seconds"]
                if "valid_ndcg" in epochs[0]:  # what the epoch reached (historical vs exact)
                    out["epoch_valid_ndcg"] = epochs[0]["valid_ndcg"]
            out["best_epoch"] = result.get("best_epoch")
            # Where the time went: the early-stopped run and the refit (seconds from each
            # one's start, validation passes included); the rest is selection and set-up.
            refit = [r for r in result.get("history", []) if r.get("stage") == "refit"]
            if epochs:
                out["train_seconds"] = epochs[-1]["seconds"]
            if refit:
                out["refit_epochs"], out["refit_seconds"] = len(refit), refit[-1]["seconds"]
            if result.get("valid_users"):  # users ranked per validation pass
                out["valid_users"] = result["valid_users"]
            if "training" in extra:  # full-graph or mini-batch, and why
                out["training"] = extra["training"]
        return out
    if stage == "recommend":
        start = time.perf_counter()
        code = main(["recommend", "--run", str(run_dir), "--k", "20", "--out",
                     str(folder / "recs.csv")])
        return {"seconds": time.perf_counter() - start, "exit": code}
    raise ValueError(f"unknown stage {stage!r}")


def child(stage: str, folder: Path, threads: int | None, timeout: float) -> dict:
    """``run_stage`` in a fresh process; adds its peak RSS (GB) and wall time."""
    env = dict(os.environ)
    # The children import this checkout's recsys_core whether or not it is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # The size's own embedding cache: emptied by the encode stage, read by the later ones.
    env["RECSCOPE_CACHE_DIR"] = str(folder / "cache")
    if threads:
        env["RECSCOPE_THREADS"] = env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    if stage == "encode":
        import shutil

        shutil.rmtree(folder / "cache", ignore_errors=True)
    load = os.getloadavg()[0]  # other jobs on the cores slow the wall time, not the CPU time
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--work",
                               str(folder)], capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        return {"stage": stage, "error": f"stopped at the {timeout:.0f} s limit",
                "progress": _progress(exc.stderr), "wall_seconds": time.perf_counter() - start}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines()
                if line.strip() and "\r" not in line][-3:]
        return {"stage": stage, "error": " | ".join(tail) or f"exit {proc.returncode}",
                "progress": _progress(proc.stderr), "wall_seconds": wall}
    out = json.loads(lines[-1])
    out.update(stage=stage, wall_seconds=wall, load_average_before=round(load, 1),
               threads=threads or os.cpu_count(),
               measured=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return out


def _progress(stderr) -> str | None:
    """The last training progress a stage printed (``epoch=34/300``), if any."""
    import re

    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    found = re.findall(r"epoch=(\d+/\d+)", text)
    return f"epoch {found[-1]}" if found else None


def measure_size(name: str, stages: list[str], work: Path, threads: int | None,
                 timeout: float, default_timeout: float) -> dict:
    rows, users, items = SIZES[name]
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not (folder / "interactions.csv").exists():
        generate(folder, rows, users, items)
    entry = {"interactions_generated": rows, "users_generated": users, "items_generated": items,
             "generate_seconds": time.perf_counter() - start, "stages": {}}
    if name == "100k" and "train" in stages:
        stages = [*stages, "train-default"]  # issue 11: the default training, timed
    for stage in stages:
        result = child(stage, folder, threads, default_timeout if stage == "train-default"
                       else timeout)
        entry["stages"][stage] = result
        shown = (f"{result['seconds']:.1f} s, {result['peak_rss_gb']:.2f} GB"
                 if "seconds" in result else
                 f"{result['error']} ({result.get('progress') or 'no progress'})")
        print(f"  {name:>5} {stage:<14} {shown}", flush=True)
        if "error" in result and stage == "train":
            break  # nothing to recommend from
    return entry


# ------------------------------------------------------------------------------ output
def table(results: dict) -> str:
    lines = ["| size | rows (kept after duplicates) | users | items | stage | threads | time (s) | "
             "CPU time (s) | peak RSS (GB) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(results["sizes"], key=lambda n: SIZES.get(n, (0,))[0]):
        entry = results["sizes"][name]
        kept = entry["stages"].get("ingest", {}).get("interactions")
        rows = f"{entry['interactions_generated']:,}" + (f" ({kept:,})" if kept else "")
        for stage, r in entry["stages"].items():
            time_s = (f"{r['seconds']:.1f}" if "seconds" in r else
                      f"{r.get('error', '-')}" + (f", {r['progress']}" if r.get("progress")
                                                  else ""))
            if "epoch_seconds" in r:
                time_s += f" (first epoch {r['epoch_seconds']:.0f}"
                if "epoch_cpu_seconds" in r:
                    time_s += f", CPU {r['epoch_cpu_seconds']:.0f}"
                time_s += (f"; {per_interaction(r, kept):.0f} µs per interaction)" if kept
                           else ")")
            rss = f"{r['peak_rss_gb']:.2f}" if "peak_rss_gb" in r else "-"
            cpu = f"{r['cpu_seconds']:.1f}" if "cpu_seconds" in r else "-"
            lines.append(f"| {name} | {rows} | "
                         f"{entry['users_generated']:,} | {entry['items_generated']:,} | "
                         f"{stage} | {r.get('threads', '-')} | {time_s} | {cpu} | {rss} |")
    return "\n".join(lines)


def per_interaction(stage: dict, interactions: int) -> float:
    """The first epoch's CPU seconds (wall seconds where the run did not record them), with
    its validation passes, per interaction kept, in µs."""
    return stage.get("epoch_cpu_seconds", stage["epoch_seconds"]) / interactions * 1e6


def figure(results: dict) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "Time per stage (s)", "Peak RSS per stage (GB)",
        "First training epoch per interaction (µs of CPU)"))
    names = sorted(results["sizes"], key=lambda n: SIZES.get(n, (0,))[0])
    growing = [n for n in names if n not in FIXED_CATALOGUE[1:]]  # one line per stage
    stages = list(dict.fromkeys(s for n in growing for s in results["sizes"][n]["stages"]))
    for stage in stages:
        xs, times, rss = [], [], []
        for name in growing:
            r = results["sizes"][name]["stages"].get(stage, {})
            if "seconds" in r:
                xs.append(results["sizes"][name]["interactions_generated"])
                times.append(r["seconds"])
                rss.append(r["peak_rss_gb"])
        if not xs:
            continue
        fig.add_trace(go.Scatter(x=xs, y=times, mode="lines+markers", name=stage,
                                 legendgroup=stage), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=rss, mode="lines+markers", name=stage,
                                 legendgroup=stage, showlegend=False), row=1, col=2)
    # (trace, training stage, sizes, fewest points worth a line): a lone fixed-catalogue
    # point is 1m's again.
    fixed = [n for n in names if n in FIXED_CATALOGUE]
    series = [("first epoch / interaction (catalogue grows)", "train", growing, 1),
              ("first epoch / interaction (10k items)", "train", fixed, 2),
              ("historical embeddings (catalogue grows)", "train-historical", growing, 2),
              ("historical embeddings (10k items)", "train-historical", fixed, 2)]
    for trace, stage, members, fewest in series:
        xs, costs, labels = [], [], []
        for name in members:
            entry = results["sizes"][name]
            train, kept = entry["stages"].get(stage, {}), \
                entry["stages"].get("ingest", {}).get("interactions")
            if "epoch_seconds" in train and kept:
                xs.append(kept)
                costs.append(per_interaction(train, kept))
                seconds = train.get("epoch_cpu_seconds", train["epoch_seconds"])
                labels.append(f"{name}: {seconds:.0f} s"
                              + (" CPU" if "epoch_cpu_seconds" in train else "")
                              + f", {train.get('training', {}).get('mode', '?')}")
        if len(xs) >= fewest:
            fig.add_trace(go.Scatter(x=xs, y=costs, mode="lines+markers+text", text=labels,
                                     textposition="top center", name=trace),
                          row=1, col=3)
    for col in (1, 2, 3):
        fig.update_xaxes(type="log", title_text="interactions", row=1, col=col)
        fig.update_yaxes(type="log", row=1, col=col)
    fig.update_xaxes(title_text="interactions kept", row=1, col=3)
    fig.update_yaxes(type="linear", rangemode="tozero", row=1, col=3)
    fig.update_layout(title=f"RecScope at scale ({results['machine']})", height=460)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(FIGURE, include_plotlyjs="cdn", full_html=True)
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return
    fig.write_image(FIGURE.with_suffix(".png"))


def save_size(name: str, entry: dict, machine: str) -> dict:
    """Merge one size's entry into ``scale.json`` as the file stands now (re-read just before
    writing, so sizes written meanwhile by another run are kept); stages not re-run keep
    their figures (the generator is seeded). Returns the merged results."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"sizes": {}}
    results["machine"] = machine
    before = results["sizes"].get(name, {}).get("stages", {})
    if before:
        merged = {**before, **entry["stages"]}
        entry["stages"] = {s: merged[s] for s in (*STAGES, "train-default") if s in merged}
    results["sizes"][name] = entry
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1m",
                        help=f"comma-separated, from {', '.join(SIZES)} (default: 100k,1m)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated, from {', '.join(STAGES)} (default: all)")
    parser.add_argument("--work", help="folder for the data and runs (default: a temp folder; "
                                       "data already there is reused)")
    parser.add_argument("--threads", type=int, help="RECSCOPE_THREADS for each stage")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds per stage (default: 3600)")
    parser.add_argument("--default-timeout", type=float, default=600.0,
                        help="seconds for the 100k default training (default: 600)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.stage:
        out = run_stage(args.stage, Path(args.work))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["peak_rss_gb"] = usage.ru_maxrss / 2**20
        out["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(out))
        return 0 if out.get("exit", 0) == 0 else 1
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES] + [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown size or stage: {', '.join(unknown)}")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, "
               f"load {os.getloadavg()[0]:.1f} at start")
    results = {"sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        for name in sizes:
            print(f"{name}: {SIZES[name][0]:,} interactions", flush=True)
            entry = measure_size(name, stages, work, args.threads, args.timeout,
                                 args.default_timeout)
            entry["measured"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            entry["load_average"] = round(os.getloadavg()[0], 1)
            results = save_size(name, entry, machine)
    print(table(results))
    figure(results)
    print(f"Saved {RESULTS.relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
