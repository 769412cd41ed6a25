"""The torch backend of an actor group, as Ray Train runs it.

The driver picks the device and the collective backend from the resources the workers were given
(NCCL only with a whole GPU each, gloo otherwise), rank 0 publishes an address and port, every rank
joins; before the actors are killed each leaves the process group (bounded wait). NCCL runs with
asynchronous error handling.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from pipeline.distributed import process_group
from pipeline.distributed.actor_group import ActorGroup


class TorchRank:
    """Actor side: ``rank`` of ``world_size`` in a torch.distributed group.

    Actor side: ``rank`` of ``world_size`` in a torch.distributed group (mixed into the worker).
    """

    rank: int
    world_size: int

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port (asked of rank 0)."""
        return process_group.node_address(), process_group.free_port()

    def join(self, address: str, port: int, timeout_s: float, backend: str) -> None:
        """Join the process group with the driver's choice of backend."""
        process_group.init_process_group(
            address, port, self.rank, self.world_size, backend, timeout_s
        )

    def leave(self) -> bool:
        """Destroy the process group (before the actor is killed); whether one was left."""
        return process_group.destroy()


@dataclass(frozen=True)
class TorchBackend:
    """Driver side: the process group's device and backend.

    The group's device and backend, set up and torn down on a group of ``TorchRank`` actors.
    """

    gpus_per_worker: float
    collective_timeout_s: float = 1800.0

    @property
    def device(self) -> str:
        """Cuda with (a share of) a GPU per worker, else cpu."""
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    @property
    def backend(self) -> str:
        """NCCL when every worker has a whole GPU.

        Gloo otherwise (CPU, or ranks sharing a GPU, which NCCL refuses).
        """
        return "nccl" if self.gpus_per_worker >= 1 else "gloo"

    def on_start(self, group: ActorGroup) -> None:
        """Rendezvous at rank 0's address and join every rank to the process group."""
        address, port = ray.get(group.actors[0].rendezvous.remote())
        group.call_all(TorchRank.join, address, port, self.collective_timeout_s, self.backend)

    def on_shutdown(self, group: ActorGroup, timeout_s: float) -> None:
        """Destroy the process group on every rank within ``timeout_s``."""
        group.call_all(TorchRank.leave, timeout_s=timeout_s)
