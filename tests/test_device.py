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
