"""Device choice (cuda > mps > cpu) and the CPU thread policy."""

from __future__ import annotations

import os

import pytest
import torch

from recsys_core.device import configure_cpu_threads, describe_device, pick_device


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    assert pick_device("cpu").type == "cpu"


def test_thread_policy_reserves_cores_and_honours_the_environment(monkeypatch):
    monkeypatch.delenv("RECSCOPE_THREADS", raising=False)
    cores = os.cpu_count() or 1
    assert configure_cpu_threads(reserve=1) == max(1, cores - 1) == torch.get_num_threads()
    assert configure_cpu_threads(reserve=cores + 5) == 1
    monkeypatch.setenv("RECSCOPE_THREADS", "3")
    assert configure_cpu_threads(reserve=1) == 3 == torch.get_num_threads()
    assert describe_device(torch.device("cpu")) == "CPU (3 threads)"
    monkeypatch.setenv("RECSCOPE_THREADS", "many")
    with pytest.raises(ValueError, match="RECSCOPE_THREADS must be a whole number"):
        configure_cpu_threads()


def test_a_command_default_applies_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv("RECSCOPE_THREADS", raising=False)
    assert configure_cpu_threads(default=1) == 1 == torch.get_num_threads()
    monkeypatch.setenv("RECSCOPE_THREADS", "2")
    assert configure_cpu_threads(default=1) == 2 == torch.get_num_threads()


def test_the_cli_sets_the_thread_count_once_before_the_command_runs(monkeypatch):
    from recsys_core import cli

    monkeypatch.delenv("RECSCOPE_THREADS", raising=False)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 99)
    parser = cli.build_parser()
    args = parser.parse_args(["explain", "--run", "nowhere", "--user", "u", "--item", "i"])
    assert args.threads == 1  # explanations: many small operations, one thread
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    seen = []
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    args.run = lambda a: seen.append(list(calls)) or 0
    assert cli.main([]) == 0
    assert seen == [[1]] and calls == [1]
