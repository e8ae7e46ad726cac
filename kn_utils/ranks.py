"""The ranks torchrun starts (torch.distributed): who this process is, its device, its share of the work, and the
collectives the sharded stages need (barrier, summed values, rows gathered back in order).

One process (no process group, no WORLD_SIZE in the environment) is the default: rank 0 of 1, every collective a
no-op. `distributed` builds the sharded scoring and sweep on these; `training` and `pretraining` the
DistributedDataParallel steps.
"""
from __future__ import annotations

import atexit
import os

import numpy as np
import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of this process: from the process group when one is up, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT), when WORLD_SIZE > 1: nccl
    with one GPU per rank (LOCAL_RANK) where CUDA is present, else gloo, left at exit; (rank, world size)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        atexit.register(leave)
    return world()


def leave() -> None:
    """Destroy the process group, if one is up: a process that exits with it alive can abort in the backend's threads
    at interpreter shutdown (SIGABRT, "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """Whether this process writes the results (rank 0, or the only process)."""
    return world()[0] == 0


def barrier() -> None:
    """Wait for every rank (nothing with one process): what rank 0 wrote is there for the others to read."""
    if world()[1] > 1:
        dist.barrier()


def local_device(preferred: str = "auto") -> torch.device:
    """The device of this rank: its GPU (LOCAL_RANK) when torchrun started several ranks on CUDA, else `preferred`."""
    from .model import select_device

    device = select_device(preferred)
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def rank_share(batch: np.ndarray, rank: int, size: int) -> tuple[np.ndarray, float]:
    """This rank's rows of a global batch and the factor that makes the ranks' averaged gradients the whole batch's
    mean: each rank's mean loss times (its rows x ranks / the batch's rows). A rank left without a row takes the
    batch's first at factor 0, so that it still joins the gradients' all-reduce."""
    local = batch[rank::size]
    return (local, len(local) * size / len(batch)) if len(local) else (batch[:1], 0.0)


def summed(value: float) -> float:
    """`value` summed over the ranks (itself with one process)."""
    if world()[1] == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item())


def shard(lengths: np.ndarray, rank: int, size: int) -> np.ndarray:
    """This rank's example indices: the examples sorted by length and dealt round-robin, so ranks get equal work."""
    return np.sort(np.argsort(np.asarray(lengths), kind="stable")[rank::size])


def gather_rows(local: np.ndarray | None, mine: np.ndarray, count: int) -> np.ndarray | None:
    """Every rank's rows (first axis: its examples `mine`) in the original order of `count` examples, on every rank."""
    parts = [None] * world()[1]
    dist.all_gather_object(parts, (mine, local))
    if any(rows is None for _, rows in parts):
        return None
    first = next(rows for _, rows in parts)
    whole = np.empty((count, *first.shape[1:]), dtype=first.dtype)
    for indices, rows in parts:
        whole[indices] = rows
    return whole
