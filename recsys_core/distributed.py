"""Data-parallel training with :mod:`torch.distributed` (one process per rank).

``torchrun --standalone --nproc-per-node=N -m recsys_core train ...`` starts ``N`` processes
with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init_from_env` joins them into one process group (NCCL when CUDA is available, gloo
otherwise). :func:`~recsys_core.training.train_model` then wraps the module in
:class:`~torch.nn.parallel.DistributedDataParallel`, gives each rank a shard of the positive
edges (:class:`~torch.utils.data.DistributedSampler`), evaluates on rank 0 and broadcasts
the result, so every rank takes the same early-stopping decisions. Rank 0 alone runs the
closed-form selection steps and writes the run.

Nothing here runs in a single process: :func:`current` is ``None`` there, and every helper is
then the identity.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

#: Seconds a rank waits for the others in a collective before the job fails (a dead rank
#: ends the job with a message rather than hanging); ``RECSCOPE_DIST_TIMEOUT`` overrides it.
DEFAULT_TIMEOUT = 1800


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job.

    Attributes:
        rank (int): Global rank (0 writes the run).
        world_size (int): Number of processes.
        local_rank (int): Rank on this node (its CUDA device).
        backend (str): ``"nccl"`` or ``"gloo"``.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(backend: str | None = None, timeout: float | None = None) -> DistContext | None:
    """Join the process group described by torchrun's environment variables.

    Returns ``None`` (and does nothing) when ``WORLD_SIZE`` is unset or 1. With CUDA each rank
    uses ``cuda:LOCAL_RANK``.

    Args:
        backend (str, optional): ``"gloo"`` or ``"nccl"``. (default: NCCL when CUDA is
            available, else gloo)
        timeout (float, optional): Seconds before a collective that some rank never joins
            fails. (default: ``RECSCOPE_DIST_TIMEOUT`` or :data:`DEFAULT_TIMEOUT`)
    """
    if env_world_size() <= 1:
        return None
    if not dist.is_available():
        raise RuntimeError("This torch build has no torch.distributed; run one process.")
    if dist.is_initialized():
        return current()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if timeout is None:
        timeout = float(os.environ.get("RECSCOPE_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
    return current()


def current() -> DistContext | None:
    """The process group this process belongs to, or ``None`` (single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    return DistContext(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_backend())


def is_main() -> bool:
    """Whether this process writes results (rank 0, or a single process)."""
    ctx = current()
    return ctx is None or ctx.is_main


def shutdown() -> None:
    """Leave the process group (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _device(ctx: DistContext) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" \
        else torch.device("cpu")


def broadcast_float(value: float, src: int = 0) -> float:
    """Rank ``src``'s ``value`` on every rank."""
    ctx = current()
    if ctx is None:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_device(ctx))
    dist.broadcast(t, src)
    return float(t.item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (picklable, produced by this job itself) on every rank."""
    ctx = current()
    if ctx is None:
        return obj
    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src, device=_device(ctx))
    return box[0]


def any_rank(flag: bool) -> bool:
    """``True`` on every rank when ``flag`` is true on at least one."""
    ctx = current()
    if ctx is None:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(total: float, count: int) -> float:
    """``sum(total) / sum(count)`` over the ranks (a NaN anywhere gives NaN everywhere)."""
    ctx = current()
    if ctx is None:
        return total / max(count, 1)
    t = torch.tensor([float(total), float(count)], dtype=torch.float64, device=_device(ctx))
    dist.all_reduce(t)
    return float(t[0] / max(t[1].item(), 1.0))


def barrier() -> None:
    if current() is not None:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. filling a disk cache), then the others."""
    ctx = current()
    if ctx is not None and not ctx.is_main:
        dist.barrier()
    try:
        yield
    finally:
        if ctx is not None and ctx.is_main:
            dist.barrier()


def shard(num: int, epoch: int, seed: int, ctx: DistContext) -> Tensor:
    """This rank's positions of ``num`` positives for ``epoch``: a
    :class:`~torch.utils.data.DistributedSampler` shard (shuffled with ``seed + epoch``, padded
    so every rank takes the same number of steps)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(num), num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


__all__ = ["DEFAULT_TIMEOUT", "DistContext", "any_rank", "barrier", "broadcast_float",
           "broadcast_object", "current", "env_world_size", "init_from_env", "is_main",
           "main_first", "mean_over_ranks", "shard", "shutdown"]
