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

Faults. When a rank fails or is killed, torchrun's elastic agent stops the others (SIGTERM,
then SIGKILL after its grace period) and prints a failure summary naming the first rank that
failed and how. A surviving rank learns of it either from a collective (gloo reports the closed
connection at once; a rank that never joins makes the collective fail after the process
group's timeout) or from the agent's SIGTERM, which :func:`terminate_raises` turns into
:class:`JobTerminated`. Either way it reports, exits non-zero and writes the report to
``TORCHELASTIC_ERROR_FILE`` (:func:`record_failure`), which torchrun's summary shows.
:func:`resume_command` gives the command that continues from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shlex
import signal
import time
import traceback
from collections.abc import Iterator, Sequence
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


# ---------------------------------------------------------------------------------- faults
class JobTerminated(Exception):
    """torchrun's agent asked this rank to stop (SIGTERM): another rank of the job failed, or
    the job itself was stopped. Raised by :func:`terminate_raises`."""


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`JobTerminated` inside the block, so a rank that torchrun
    stops reports where the job stands instead of vanishing without a word. Once the block
    fails (or the first SIGTERM came), SIGTERM is blocked: the rank is reporting and exiting,
    and a later SIGTERM waits for :func:`record_failure` (torchrun's agent still kills the
    rank after its grace period).

    Python runs the handler between bytecodes, so a rank blocked inside a collective raises once
    the collective returns or fails (gloo fails it as soon as the failed rank's connection
    closes). Outside the main thread, or in a single process, the block runs unchanged.
    """
    import threading

    if current() is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _block_terminate()  # once: the rank is now reporting
        raise JobTerminated(f"torchrun stopped this rank ({signal.Signals(signum).name})")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except BaseException:
        _block_terminate()
        raise
    else:
        signal.signal(signal.SIGTERM, previous)


def _block_terminate() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _await_terminate(timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for a SIGTERM (blocked, so it is taken here, not
    delivered); whether one came."""
    import threading

    if current() is None or threading.current_thread() is not threading.main_thread():
        return False
    _block_terminate()
    return signal.sigtimedwait({signal.SIGTERM}, timeout) is not None


#: What a collective's error says when another rank is gone (gloo, NCCL, the store).
_PEER_GONE = re.compile(r"Connection (?:reset|closed) by peer|Broken pipe|[Tt]imed out"
                        r"|[Tt]imeout|NCCL (?:error|communicator was aborted)")


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says that another rank is gone (a collective failed or timed out, the
    agent stopped this rank), rather than a fault of this rank's own."""
    if isinstance(exc, JobTerminated):
        return True
    if dist.is_available() and isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and bool(_PEER_GONE.search(str(exc)))


def describe_failure(exc: BaseException, rank: int) -> str:
    """One sentence: what stopped rank ``rank`` (another rank's failure, or its own fault)."""
    if isinstance(exc, JobTerminated):
        return (f"rank {rank} was stopped by torchrun (SIGTERM): another process of the job "
                "failed or was killed (torchrun's summary names it), or the job itself was "
                "stopped")
    if is_peer_failure(exc):
        found = _PEER_GONE.search(str(exc))
        how = found.group(0) if found else type(exc).__name__
        return (f"rank {rank} lost contact with the other processes ({how}): another process "
                "of the job failed, was killed or stopped answering (torchrun's summary names "
                "the first to fail)")
    detail = " ".join(str(exc).split())[:300]
    advice = ""
    if isinstance(exc, torch.cuda.OutOfMemoryError):  # ranks cannot fall back one by one
        advice = (" (the GPU ran out of memory: resume with --param training_mode=minibatch, "
                  "or start again with a smaller --param batch_size; a resumed run keeps the "
                  "checkpoint's)")
    return f"rank {rank} failed: {type(exc).__name__}: {detail}{advice}"


def resume_command(argv: Sequence[str], checkpoint_dir: str | None) -> str:
    """The command that continues this torchrun job from ``checkpoint_dir``.

    ``argv`` are the arguments after ``python -m recsys_core`` (``train ...``); ``--resume``
    is added when missing. On one node the torchrun options are rebuilt exactly
    (``--standalone --nproc-per-node=N``); on several, the rendezvous options cannot be read
    back, so they are left as ``...`` (the ones the job was started with).
    """
    args = list(argv)
    if checkpoint_dir is not None and "--resume" not in args:
        args.append("--resume")
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1") or 1)
    per_node = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    launcher = (f"torchrun --standalone --nproc-per-node={per_node}" if nodes <= 1 else
                f"torchrun --nnodes {nodes} --nproc-per-node {per_node} ... (on every node, "
                "the rendezvous options as before)")
    return f"{launcher} -m recsys_core {shlex.join(args)}"


#: Seconds a rank that saw another rank fail waits for torchrun's SIGTERM before it exits.
AGENT_WAIT = 5.0


def record_failure(message: str, exc: BaseException | None = None) -> None:
    """Write ``message`` to ``TORCHELASTIC_ERROR_FILE`` in the format of torchrun's
    :class:`~torch.distributed.elastic.multiprocessing.errors.ErrorHandler`, so the agent's
    failure summary shows it for this rank. No-op outside torchrun.

    A fault of this rank's own gets its traceback appended there. When ``exc`` says that
    another rank failed (a collective broke, not yet torchrun's SIGTERM), the file is written
    only once torchrun has stopped this rank, or after :data:`AGENT_WAIT` seconds: the agent
    takes the earliest failure as the root cause, and this rank, which often notices before
    the agent's next poll, must not pass for it.
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    shown = message
    if exc is not None and not is_peer_failure(exc):
        shown += "\n" + "".join(traceback.format_exception(exc))
    elif exc is not None and not isinstance(exc, JobTerminated):
        _await_terminate(AGENT_WAIT)
    data = {"message": {"message": message,
                        "extraInfo": {"py_callstack": shown, "timestamp": str(int(time.time()))}}}
    with contextlib.suppress(OSError):
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)


__all__ = ["AGENT_WAIT", "DEFAULT_TIMEOUT", "DistContext", "JobTerminated", "any_rank",
           "barrier", "broadcast_float", "broadcast_object", "current", "describe_failure",
           "env_world_size", "init_from_env", "is_main", "is_peer_failure", "main_first",
           "mean_over_ranks", "record_failure", "resume_command", "shard", "shutdown",
           "terminate_raises"]
