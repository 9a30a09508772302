"""Data-parallel training: ``torchrun --standalone --nproc-per-node=2 -m recsys_core train``
with gloo on the CPU writes one run that loads, recommends and reaches the single-process
validation figure within :data:`TOLERANCE`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from recsys_core import distributed
from recsys_core.cli import main
from recsys_core.run import load_run

#: Validation NDCG@20 of the 2-process run may fall at most this far below one process's
#: (same data, seed and settings; the ranks draw other negatives, so the paths differ).
TOLERANCE = 0.1
PARAMS = ["use_text=false", "embedding_dim=16", "batch_size=64", "num_negatives=16",
          "patience=20", "refit=false"]


def clustered_files(folder: Path) -> tuple[Path, Path]:
    """60 users in 3 taste clusters over 36 items (8 interactions each), item genres."""
    rng = np.random.default_rng(0)
    topics = ["Fantasy", "Crime", "Space"]
    items = ["item_id,title,description,genre"]
    items += [f"i{t}_{k},{topic} {k},A {topic.lower()} story number {k}.,{topic}"
              for t, topic in enumerate(topics) for k in range(12)]
    rows, n = ["user_id,item_id,rating,timestamp"], 0
    for u in range(60):
        t = u % 3
        picks = [f"i{t}_{k}" for k in rng.choice(12, size=7, replace=False)]
        picks.append(f"i{(t + 1) % 3}_{rng.integers(12)}")
        for item in picks:
            rows.append(f"u{u},{item},4,{1_600_000_000 + n}")
            n += 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inter.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "items.csv").write_text("\n".join(items) + "\n", encoding="utf-8")
    return folder / "inter.csv", folder / "items.csv"


def train_args(inter: Path, items: Path, out: Path) -> list[str]:
    args = ["train", "--interactions", str(inter), "--items", str(items), "--out", str(out),
            "--epochs", "10", "--device", "cpu"]
    for param in PARAMS:
        args += ["--param", param]
    return args


def valid_ndcg(run: Path) -> float:
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    return float(meta["metrics"]["valid_ndcg@20"])


def test_helpers_are_the_identity_in_one_process():
    assert distributed.current() is None and distributed.is_main()
    assert distributed.broadcast_float(0.25) == 0.25
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.any_rank(False) is False
    assert distributed.mean_over_ranks(3.0, 2) == 1.5
    assert distributed.init_from_env() is None  # WORLD_SIZE unset


def test_torchrun_two_cpu_processes_match_one(tmp_path):
    inter, items = clustered_files(tmp_path / "data")
    single = tmp_path / "single"
    torch_threads = torch.get_num_threads()
    try:
        assert main(train_args(inter, items, single)) == 0
    finally:
        torch.set_num_threads(torch_threads)
    parallel = tmp_path / "parallel"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["RECSCOPE_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "recsys_core", *train_args(inter, items, parallel)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stderr and "gloo" in done.stderr
    meta = json.loads((parallel / "run.json").read_text(encoding="utf-8"))
    assert meta["extra"]["training"]["world_size"] == 2
    assert meta["extra"]["train_result"]["world_size"] == 2
    assert "validation" in meta["extra"]["train_result"]["selected"]  # rank 0's choices
    assert valid_ndcg(parallel) >= valid_ndcg(single) - TOLERANCE
    model, _, info = load_run(parallel)  # the one run loads and recommends
    assert info["extra"]["training"]["mode"] == "full"  # 480 interactions: full graph
    recs = model.recommend(["u0", "u1"], k=5)
    assert len(recs) == 10 and set(recs["user_id"]) == {"u0", "u1"}
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(parallel), "--k", "3", "--out", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1 + 60 * 3

