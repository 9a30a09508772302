"""Compute-device selection: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def pick_device(preference: str | None = None) -> torch.device:
    """The device to train on.

    Args:
        preference (str, optional): ``"cuda"``, ``"mps"``, ``"cpu"`` or ``None``/``"auto"``
            for the best available (cuda > mps > cpu). (default: :obj:`None`)
    """
    if preference and preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """Human-readable device name, e.g. ``"NVIDIA H100 (cuda:0)"`` or ``"CPU (2 threads)"``."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    if device.type == "mps":
        return "Apple GPU (mps)"
    return f"CPU ({torch.get_num_threads()} threads)"


def configure_cpu_threads(reserve: int = 0) -> int:
    """Set torch's CPU thread count and return it.

    ``RECSCOPE_THREADS`` wins when set; otherwise ``os.cpu_count() - reserve`` (at least 1).
    The app reserves one core for its web server: on a 2-core machine a training thread pool
    that competes with the server (or with other processes) runs many times slower than a
    single thread, because this model's operations are small and hand-offs dominate.

    Args:
        reserve (int): Cores to leave for other work. (default: :obj:`0`)
    """
    wanted = os.environ.get("RECSCOPE_THREADS", "").strip()
    if wanted:
        try:
            threads = int(wanted)
        except ValueError:
            raise ValueError(f"RECSCOPE_THREADS must be a whole number, got {wanted!r}.") from None
    else:
        threads = (os.cpu_count() or 1) - reserve
    threads = max(1, threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def all_cpu_threads() -> Iterator[int]:
    """Use every core inside the block (e.g. for a batch of large transformer matrix products,
    which scale well, unlike training's small operations), then restore the thread count."""
    before = torch.get_num_threads()
    threads = max(before, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
