"""Compute-device selection: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import os

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


def configure_cpu_threads(reserve: int = 0, default: int | None = None) -> int:
    """Set torch's CPU thread count and return it. Call it once per process, at start-up,
    from the main thread (never from a job thread: the count is shared by every session).

    ``RECSCOPE_THREADS`` wins when set; otherwise ``default`` when given, else
    ``os.cpu_count() - reserve`` (at least 1), shared out between the processes torchrun
    started on this node (``LOCAL_WORLD_SIZE``).
    The app reserves one core for its web server: on a 2-core machine a training thread pool
    that competes with the server (or with other processes) runs many times slower than a
    single thread, because this model's operations are small and hand-offs dominate.

    Args:
        reserve (int): Cores to leave for other work. (default: :obj:`0`)
        default (int, optional): Thread count when ``RECSCOPE_THREADS`` is not set (e.g. 1
            for a command whose operations are too small to share). (default: :obj:`None`)
    """
    wanted = os.environ.get("RECSCOPE_THREADS", "").strip()
    if wanted:
        try:
            threads = int(wanted)
        except ValueError:
            raise ValueError(f"RECSCOPE_THREADS must be a whole number, got {wanted!r}.") from None
    elif default is not None:
        threads = int(default)
    else:
        # torchrun's ranks on one node share its cores (LOCAL_WORLD_SIZE processes).
        threads = ((os.cpu_count() or 1) - reserve) // max(1, _local_world_size())
    threads = max(1, threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _local_world_size() -> int:
    try:
        return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        return 1
