"""Process-group helpers for DDP training: the torchrun environment, backend choice, init with a timeout,
barriers, broadcasts, the DDP wrapper and shutdown. Every helper is a no-op (or the identity) when no process
group is initialised, so single-process code can call them unconditionally. See docs/distributed.md.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
import torch.nn as nn

from ultralytics.errors import ConfigError
from ultralytics.utils import LOGGER

ENV_TIMEOUT = "ULTRALYTICS_DDP_TIMEOUT"  # seconds a collective may wait for the other ranks
DEFAULT_TIMEOUT_S = 1800.0  # long enough for rank 0 to validate a large val set while the others wait


@dataclass(frozen=True)
class DistEnv:
    """What torchrun told this process: global rank, rank on this node, world size, processes on this node."""

    rank: int = -1
    local_rank: int = -1
    world_size: int = 1
    local_world_size: int = 1

    @property
    def launched(self) -> bool:
        """True inside a torchrun worker (RANK is set), even with a world size of 1."""
        return self.rank >= 0

    @property
    def distributed(self) -> bool:
        """True when training needs a process group (more than one process)."""
        return self.world_size > 1


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {key}={value!r} must be an integer (torchrun sets it)") from None


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Parse RANK, LOCAL_RANK, WORLD_SIZE and LOCAL_WORLD_SIZE (as torchrun sets them) from `environ`."""
    env = os.environ if environ is None else environ
    rank = _env_int(env, "RANK", -1)
    world = _env_int(env, "WORLD_SIZE", 1 if rank < 0 else rank + 1)
    local_rank = _env_int(env, "LOCAL_RANK", -1 if rank < 0 else rank)
    local_world = _env_int(env, "LOCAL_WORLD_SIZE", world)
    if world < 1 or (rank >= 0 and not 0 <= rank < world) or (rank >= 0 and local_rank < 0):
        raise ConfigError(f"inconsistent DDP environment RANK={rank} LOCAL_RANK={local_rank} WORLD_SIZE={world}; "
                         "start the workers with torchrun")
    return DistEnv(rank, local_rank, world, local_world)


def backend_for(device: torch.device) -> str:
    """nccl for CUDA devices, gloo for CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def ddp_timeout(environ: Mapping[str, str] | None = None) -> timedelta:
    """The process-group timeout: ULTRALYTICS_DDP_TIMEOUT seconds, else 30 minutes."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_TIMEOUT, "").strip()
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{ENV_TIMEOUT}={text!r} must be a positive number of seconds, e.g. {ENV_TIMEOUT}=1800")
    return timedelta(seconds=seconds)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the default group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def init_process_group(device: torch.device, env: DistEnv | None = None) -> bool:
    """Join the default process group (env:// rendezvous from torchrun) with the backend of `device`.

    Returns True when this call created the group (the caller then destroys it), False when one existed.
    """
    if is_initialized():
        return False
    env = env or dist_env()
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size, timeout=ddp_timeout())
    LOGGER.info(f"DDP: rank {env.rank}/{env.world_size} (local {env.local_rank}) on {device} with {backend}")
    return True


def destroy_process_group() -> None:
    """Leave the default process group; never raises (it runs in finally blocks of failing ranks)."""
    if not is_initialized():
        return
    try:
        dist.destroy_process_group()
    except Exception as e:  # a peer that died can make the shutdown itself fail; the process exits anyway
        LOGGER.warning(f"WARNING ⚠️ DDP process group shutdown failed: {e}")


def barrier() -> None:
    """Wait for every rank (bounded by the process-group timeout)."""
    if not is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` of rank `src` on every rank (picklable plain values only: bools, numbers, strings)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy the buffers (BatchNorm statistics) of rank `src` to every rank, so all ranks hold the same state."""
    if not is_initialized():
        return
    for b in model.buffers():
        dist.broadcast(b, src=src)


def reduce_loss_items(loss: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """One all_reduce per batch: (loss items averaged over the ranks, whether every rank's loss is finite).

    All ranks must agree on skipping a non-finite batch: a rank that skipped backward would leave the
    others waiting in DDP's gradient all_reduce.
    """
    if not is_initialized():
        return items, bool(torch.isfinite(loss).all())
    bad = (~torch.isfinite(loss.detach())).any().to(items.dtype).view(1)
    stats = torch.cat([items.detach().to(bad.device), bad])
    dist.all_reduce(stats)
    return stats[:-1] / dist.get_world_size(), bool(stats[-1] == 0)


@contextmanager
def rank_zero_first(rank: int) -> Iterator[None]:
    """Rank 0 runs the block first (downloads, dataset generation, label caches), then the other ranks."""
    if rank > 0:
        barrier()
    yield
    if rank == 0:
        barrier()


def wrap_ddp(model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """DistributedDataParallel around `model`; sync_bn converts BatchNorm to SyncBatchNorm (CUDA only).

    find_unused_parameters stays False: every trainable parameter gets a gradient in every step (BRA's routing
    is detached by default and has no parameters; the frozen DFL conv does not require grad).
    """
    if sync_bn:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            LOGGER.info("DDP: BatchNorm converted to SyncBatchNorm (sync_bn=True)")
        else:
            LOGGER.warning("WARNING ⚠️ sync_bn=True needs CUDA (torch's SyncBatchNorm has no CPU kernels); "
                           "keeping per-process BatchNorm")
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                               find_unused_parameters=False)


__all__ = ["DEFAULT_TIMEOUT_S", "ENV_TIMEOUT", "DistEnv", "backend_for", "barrier", "broadcast_buffers",
           "broadcast_object", "ddp_timeout", "destroy_process_group", "dist_env", "init_process_group",
           "is_initialized", "rank_zero_first", "reduce_loss_items", "world_size", "wrap_ddp"]
