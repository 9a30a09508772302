"""Bad input and faults at scale.

* A rank killed part-way ends the whole ``torchrun`` job within seconds, with a message naming
  where the last good checkpoint is and the command that resumes; that checkpoint loads, and
  the printed command finishes the training into a run that loads and recommends.
* A data set too large for the chosen training mode is refused before the first step with the
  limit, the figures and what to do, by the CLI (exit 2) and by the app's job service.
  ``RECSCOPE_MEMORY_GB`` stands in for a small machine."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from test_distributed import PARAMS, clustered_files

from recsys_core import distributed
from recsys_core.cli import main
from recsys_core.run import load_run
from recsys_core.services.fitting import training_target
from recsys_core.services.jobs import FAILED, TrainingJob
from recsys_core.services.workspace import prepare_workspace
from recsys_core.training import (
    TRAINING_BASE_BYTES,
    TRAINING_BYTES_PER_INTERACTION,
    load_checkpoint,
)

#: Seconds from the SIGKILL of one rank to the end of the whole job. gloo fails the surviving
#: rank's next collective as soon as the dead rank's connection closes, and torchrun stops it
#: (2.4 to 2.7 s from the kill to the job's end measured on 2 busy cores); torchrun's agent
#: would SIGKILL a rank that ignored its SIGTERM after 30 s.
DETECT_WITHIN = 30
#: The rank the test kills, and the checkpointed epoch it waits for first.
VICTIM, KILL_AFTER_EPOCH = 1, 2


def torchrun_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["RECSCOPE_THREADS"] = "1"
    return env


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of ``rank`` among the processes torchrun (pid ``launcher``) started."""
    for child in psutil.Process(launcher).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child.pid
        except psutil.Error:
            continue
    return None


def checkpoint_epoch(folder: Path) -> int:
    try:
        return int(json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def test_killed_rank_stops_the_job_with_a_message_and_training_resumes(tmp_path):
    inter, items = clustered_files(tmp_path / "data")
    ckpt, out = tmp_path / "checkpoint", tmp_path / "run"
    args = ["train", "--interactions", str(inter), "--items", str(items), "--out", str(out),
            "--epochs", "500", "--device", "cpu", "--checkpoint-dir", str(ckpt)]
    for param in [p for p in PARAMS if not p.startswith("patience=")] + ["patience=1000"]:
        args += ["--param", param]
    log = tmp_path / "torchrun.log"
    with log.open("w", encoding="utf-8") as stderr:
        job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                "--nproc-per-node=2", "-m", "recsys_core", *args],
                               stdout=subprocess.DEVNULL, stderr=stderr, env=torchrun_env())
        try:
            give_up = time.monotonic() + 120
            while checkpoint_epoch(ckpt) < KILL_AFTER_EPOCH:
                assert job.poll() is None, log.read_text(encoding="utf-8")[-3000:]
                assert time.monotonic() < give_up, "no checkpoint within 120 s"
                time.sleep(0.05)
            victim = rank_pid(job.pid, VICTIM)
            assert victim is not None
            os.kill(victim, signal.SIGKILL)  # part-way: 500 epochs were asked for
            killed = time.monotonic()
            code = job.wait(timeout=DETECT_WITHIN + 30)
            detected = time.monotonic() - killed
        finally:
            if job.poll() is None:
                job.kill()
    text = log.read_text(encoding="utf-8")
    print(f"killed rank {VICTIM}; the job ended {detected:.1f} s later")
    assert code != 0 and detected < DETECT_WITHIN, text[-3000:]
    # The surviving rank says what happened, without a traceback of its own ...
    assert re.search(r"error: rank 0 (lost contact with the other processes|was stopped by "
                     r"torchrun)", text), text[-3000:]
    assert "recsys_core/training.py" not in text and "recsys_core/cli" not in text, text[-3000:]
    # ... and torchrun's summary names the killed rank as the root cause.
    assert re.search(r"Root Cause.*?rank\s*: 1 \(local_rank: 1\).*?SIGKILL", text, re.S), \
        text[-3000:]

    # The last good checkpoint loads, and the message names it.
    tensors, meta = load_checkpoint(ckpt)
    epoch = int(meta["epoch"])
    assert epoch >= KILL_AFTER_EPOCH and any(k.startswith("model.") for k in tensors)
    assert f"The last good checkpoint (epoch {epoch}, validation NDCG" in text, text[-3000:]
    assert text.count("To resume from it: torchrun") == 2  # on stderr and in torchrun's summary
    command = re.search(r"To resume from it: (torchrun .*?--resume)$", text, re.M).group(1)
    argv = shlex.split(command)
    assert argv[:5] == ["torchrun", "--standalone", "--nproc-per-node=2", "-m", "recsys_core"]
    assert argv[5:] == [*args, "--resume"]

    # The printed command resumes (two more epochs than the checkpoint holds, to stay quick).
    argv[argv.index("--epochs") + 1] = str(epoch + 2)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", *argv[1:]],
                          capture_output=True, text=True, env=torchrun_env(), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Resuming from the checkpoint in '{ckpt}' (epoch {epoch}," in done.stderr
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    result = info["extra"]["train_result"]
    assert result["world_size"] == 2
    assert [h["epoch"] for h in result["history"]] == list(range(1, epoch + 3))
    model, _, _ = load_run(out)
    recs = model.recommend(["u0", "u3"], k=5)
    assert len(recs) == 10 and set(recs["user_id"]) == {"u0", "u3"}
    csv = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(out), "--k", "3", "--out", str(csv)]) == 0
    assert len(csv.read_text(encoding="utf-8").splitlines()) == 1 + 60 * 3


def test_cli_checkpoint_and_resume_in_one_process(tmp_path, capsys):
    inter, _ = clustered_files(tmp_path / "data")
    ckpt = tmp_path / "checkpoint"
    args = ["train", "--interactions", str(inter), "--model", "mf", "--device", "cpu",
            "--checkpoint-dir", str(ckpt), "--param", "embedding_dim=8",
            "--param", "patience=100", "--param", "lr=0.2"]
    assert main([*args, "--out", str(tmp_path / "first"), "--epochs", "4"]) == 0
    epoch = int(load_checkpoint(ckpt)[1]["epoch"])
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "resumed"), "--epochs", "6", "--resume"]) == 0
    assert f"Resuming from the checkpoint in '{ckpt}' (epoch {epoch}" in capsys.readouterr().err
    info = json.loads((tmp_path / "resumed" / "run.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in info["extra"]["train_result"]["history"]] == list(range(1, 7))


def test_resume_needs_a_checkpoint_dir(tmp_path, capsys):
    inter, items = clustered_files(tmp_path / "data")
    code = main(["train", "--interactions", str(inter), "--out", str(tmp_path / "run"),
                 "--model", "mf", "--resume"])
    assert code == 2
    assert "--resume needs --checkpoint-dir DIR" in capsys.readouterr().err


def test_resume_command_rebuilds_torchrun(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    line = distributed.resume_command(["train", "--out", "my run", "--checkpoint-dir", "c"], "c")
    assert line == ("torchrun --standalone --nproc-per-node=4 -m recsys_core train --out "
                    "'my run' --checkpoint-dir c --resume")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    assert distributed.resume_command(["train", "--resume"], "c").startswith(
        "torchrun --nnodes 2 --nproc-per-node 4 ...")


@pytest.mark.parametrize(("exc", "expected"), [
    (RuntimeError("[pair.cc:537] Read error [127.0.0.1]:1: Connection reset by peer. GLHF"),
     "rank 0 lost contact with the other processes (Connection reset by peer)"),
    (distributed.JobTerminated("SIGTERM"), "rank 0 was stopped by torchrun"),
    (ValueError("bad\nvalue"), "rank 0 failed: ValueError: bad value"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory."), "rank 0 failed: OutOfMemoryError: CUDA "
     "out of memory. (the GPU ran out of memory: resume with --param training_mode=minibatch"),
])
def test_describe_failure(exc, expected):
    assert distributed.describe_failure(exc, 0).startswith(expected)


# ------------------------------------------------------------------------ too large for the mode
def small_machine(monkeypatch, interactions: int) -> None:
    """A memory budget between what mini-batch and full-graph training of ``interactions``
    (at most; the validation split takes some) need."""
    per = TRAINING_BYTES_PER_INTERACTION
    between = (per["full"] + per["minibatch"]) / 2
    monkeypatch.setenv("RECSCOPE_MEMORY_GB", str((TRAINING_BASE_BYTES + between * interactions)
                                                 / 1e9))


def test_cli_refuses_full_graph_training_that_outgrows_memory(tmp_path, monkeypatch, capsys):
    inter, _ = clustered_files(tmp_path / "data")
    small_machine(monkeypatch, 480)
    args = ["train", "--interactions", str(inter), "--model", "lightgcn", "--epochs", "1",
            "--device", "cpu", "--param", "embedding_dim=8"]
    code = main([*args, "--out", str(tmp_path / "full"), "--param", "training_mode=full"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    message = err.split("error: ", 1)[1]
    assert re.match(r"Full-graph training of \d{3} interactions needs about 2\.00 GB of memory, "
                    r"more than the 2\.00 GB this process can use: this mode fits up to about "
                    r"\d{3} interactions here\. Use training_mode=minibatch \(about 2\.00 GB, fits",
                    message), message
    assert not (tmp_path / "full").exists()
    # The advice works: mini-batch training of the same data fits the same budget.
    assert main([*args, "--out", str(tmp_path / "mb"), "--param", "training_mode=minibatch"]) == 0
    info = json.loads((tmp_path / "mb" / "run.json").read_text(encoding="utf-8"))
    assert info["extra"]["training"]["mode"] == "minibatch"


def test_app_job_reports_a_data_set_too_large_for_any_mode(tmp_path, monkeypatch):
    from test_app_session import make_dataset, wait

    ws = prepare_workspace(make_dataset())
    monkeypatch.setenv("RECSCOPE_MEMORY_GB", str(TRAINING_BASE_BYTES / 1e9))  # nothing to spare
    job = TrainingJob(training_target(ws, [("lightgcn", {"epochs": 1, "embedding_dim": 8,
                                                         "device": "cpu"}, True)]), "lightgcn")
    ws.start_job(job)
    wait(job, 60)
    assert job.status == FAILED and job.error_details is None  # a message, not a crash
    assert job.error.startswith("Full-graph training of ")  # auto: small data, full graph
    for part in ("fits up to about 0 interactions here", "would not fit either",
                 "Train with the command line", "torchrun --nnodes N --nproc-per-node 1"):
        assert part in job.error
    assert ws.collect() == [] and ws.last_error == job.error


def test_memory_check_on_cuda_counts_the_host_side_only(monkeypatch):
    """On CUDA the steps live in the GPU's memory (its out-of-memory is handled by the loop):
    the host holds the graph and tables, the mini-batch figure, whatever the mode."""
    from recsys_core.errors import TrainingError
    from recsys_core.training import check_training_memory

    per = TRAINING_BYTES_PER_INTERACTION
    small_machine(monkeypatch, 100_000)
    check_training_memory("full", 100_000, torch.device("cuda"))  # no GPU needed: only the type
    check_training_memory("minibatch", 100_000)
    with pytest.raises(TrainingError, match=r"Full-graph training of 100,000 interactions needs "
                       rf"about {(TRAINING_BASE_BYTES + per['full'] * 100_000) / 1e9:.2f} GB"):
        check_training_memory("full", 100_000, torch.device("cpu"))
    with pytest.raises(TrainingError, match="of host memory"):
        check_training_memory("full", 300_000, torch.device("cuda"))


def test_memory_estimate_covers_every_measured_training_peak():
    """The guard's estimate is at least the peak RSS of every training run that
    ``benchmarks/bench_scale.py`` measured (``scale.json``, committed): a data set the guard
    lets through has fitted here before, at its size."""
    import json

    results = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                          / "scale.json").read_text(encoding="utf-8"))
    checked = 0
    for name, entry in results["sizes"].items():
        for stage, measured in entry["stages"].items():
            training = measured.get("training")
            if not stage.startswith("train") or not training or "peak_rss_gb" not in measured:
                continue
            interactions = int(re.match(r"([\d,]+) interactions", training["reason"])
                               .group(1).replace(",", ""))
            need = (TRAINING_BASE_BYTES
                    + TRAINING_BYTES_PER_INTERACTION[training["mode"]] * interactions)
            peak = measured["peak_rss_gb"] * 2**30  # ru_maxrss, in GiB in scale.json
            assert need >= peak, (name, stage, need / 1e9, peak / 1e9)
            checked += 1
    assert checked >= 5  # 100k (full graph, twice), 1m, 2m, 5m, 20m
