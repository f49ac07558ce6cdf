"""torchrun / DistributedDataParallel helpers: one process per device, rank 0 writes every file.

``torchrun --nproc-per-node 4 -m grounding.cli.main train --config ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in each process; :func:`init_distributed` reads them, joins the process group (NCCL on CUDA, gloo
on CPU) and picks the device (``cuda:LOCAL_RANK``). ``torchrun --nproc-per-node 1`` joins a group of one and
trains through DistributedDataParallel too, which is how the distributed path is checked on a single device.
Without those variables everything here is a no-op for a single process, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from grounding.errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands.

    Attributes:
        rank: global rank (0 .. world_size-1); rank 0 writes logs and checkpoints.
        local_rank: rank on this machine; selects ``cuda:local_rank``.
        world_size: number of processes (1 without torchrun).
        device: the device this process computes on.
        joined: whether this process joined a process group (every process torchrun starts, even alone).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    joined: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True under torchrun: gradients, metrics and objects then go through the process group."""
        return self.joined


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not an integer; torchrun sets it, do not edit it"
        ) from None


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; ``cuda`` without CUDA is a ConfigError."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device is 'cuda' but torch sees no CUDA device; use train.device=cpu (or auto)")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Read torchrun's environment, join the process group when torchrun started this process (it sets
    ``WORLD_SIZE`` and ``MASTER_ADDR``) or ``WORLD_SIZE > 1``, and choose the device.

    Args:
        device_preference: ``train.device`` (``auto``, ``cpu`` or ``cuda``).

    Returns:
        The :class:`DistributedContext` of this process (rank 0 of 1 without torchrun).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_preference, local_rank)
    launched = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    joined = world_size > 1 or launched
    if joined:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device, joined=joined)


def barrier(context: DistributedContext) -> None:
    """Wait for every process (no-op for one process)."""
    if context.is_distributed and dist.is_initialized():
        if context.device.type == "cuda":
            dist.barrier(device_ids=[context.device.index or 0])
        else:
            dist.barrier()


def all_reduce_mean(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The mean of ``values`` over processes (the tensor itself for one process)."""
    if not context.is_distributed:
        return values
    reduced = values.detach().clone().to(context.device)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / context.world_size


def gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every process's ``obj`` (picklable, in memory only), in rank order; ``[obj]`` for one process."""
    if not context.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, context: DistributedContext) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not context.is_distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def cleanup(context: DistributedContext) -> None:
    """Leave the process group (no-op for one process)."""
    if context.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
