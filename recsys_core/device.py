"""Compute-device selection: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

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
