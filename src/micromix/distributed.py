"""torchrun support: one process per device, gloo on CPU and nccl on CUDA, rank 0 writes."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes in the environment; no-op for one process.

    Returns the device this rank should use (cuda:LOCAL_RANK on CUDA).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return device


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum scalars over ranks (for accuracy counts)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        # Every rank reaches this point before any tears down: rank 0 hosts the rendezvous
        # store, and a rank still talking to it when rank 0 exits aborts (seen once in CI with
        # gloo: "terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()
