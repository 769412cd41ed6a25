"""torch.distributed setup inside Ray actors (rank 0 publishes address and a free port)."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist


def free_port() -> int:
    """A TCP port that was free on this host a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def node_address() -> str:
    """This node's IP address as Ray sees it."""
    import ray

    return ray.util.get_node_ip_address()


def init_process_group(
    address: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float
) -> None:
    """Join the group at tcp://address:port (NCCL on GPU, gloo on CPU).

    NCCL gets asynchronous error handling, so a collective that times out aborts instead of hanging.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{address}:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )


def destroy() -> bool:
    """Leave the process group if in one; True if there was one."""
    if not dist.is_initialized():
        return False
    dist.destroy_process_group()
    return True


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over the group."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
