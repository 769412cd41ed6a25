"""WorkerGroup: the curvature workers, one data shard per rank.

The curvature workers, an ``ActorGroup`` of ``CurvatureWorker`` actors with the torch backend (one
process group), rebuilt from scratch when a worker dies.
"""

from __future__ import annotations

from typing import Any

import ray

from pipeline.distributed.actor_group import (
    ActorGroup,
    WorkerDied,
    default_num_workers,
    resources_per_worker,
)
from pipeline.distributed.torch_backend import TorchBackend
from pipeline.distributed.worker import CurvatureWorker
from pipeline.errors import InputError, OperationError
from pipeline.sharding.spec import ProblemSpec


class WorkerGroup(ActorGroup):
    """The curvature workers on Ray: one data shard and operator per rank.

    Start ``num_workers`` curvature workers (``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs
    each, torch threads = CPUs; None means automatic: one worker per GPU, or per node without GPUs;
    one GPU per worker when the cluster has a GPU for every worker, else none; the cluster's CPUs
    divided among the workers), build each shard's operator, check that every replica has the same
    weights, and join the process group. ``run`` (``ActorGroup``) calls a ``CurvatureWorker`` method
    on all ranks, rebuilding the group when a worker dies.
    """

    def __init__(
        self,
        spec: ProblemSpec,
        num_workers: int | None,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float | None = None,
        max_failures: int = 3,
        collective_timeout_s: float = 1800.0,
        placement_timeout_s: float = 120.0,
        call_timeout_s: float = 1800.0,
    ):
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers <= 0
        ):
            raise InputError(
                "num_workers must be a positive integer (or None: sized from the cluster), got "
                f"{num_workers!r}"
            )
        if not ray.is_initialized():
            raise RuntimeError(
                "Ray is not running: call pipeline.distributed.init_ray(...) (or ray.init) first"
            )
        num_samples = spec.num_samples()
        if num_workers is None:
            num_workers = min(default_num_workers(), num_samples)
        if num_workers > num_samples:
            raise InputError(
                f"cannot split {num_samples} samples into {num_workers} non-empty shards; use at "
                f"most {num_samples} workers"
            )
        cpus, gpus = resources_per_worker(num_workers, cpus_per_worker, gpus_per_worker)
        self.spec = spec
        self.torch = TorchBackend(gpus, collective_timeout_s)
        self.info: list[dict[str, Any]] = []
        super().__init__(
            CurvatureWorker,
            num_workers,
            cpus,
            gpus,
            self._actor_args,
            max_failures,
            placement_timeout_s,
            call_timeout_s,
        )
        self.start()

    @property
    def device(self) -> str:
        """The workers' torch device."""
        return self.torch.device

    @property
    def backend(self) -> str:
        """The process group's backend (nccl or gloo)."""
        return self.torch.backend

    def _actor_args(self, rank: int) -> tuple[tuple, dict]:
        return (self.spec, rank, self.num_workers), {
            "threads": max(1, int(self.cpus_per_worker)),
            "device": self.device,
        }

    def setup(self) -> None:
        """Build every rank's operator, check the replicas agree, join the process group."""
        self.info = self.call_all(CurvatureWorker.build)
        if len({(info["dim"], info["weights"]) for info in self.info}) != 1:
            raise OperationError(
                "workers built different models: the model factory is not deterministic; seed the "
                "initialisation (model.init_seed) or load a checkpoint (model.checkpoint)"
            )
        self.torch.on_start(self)

    def teardown(self, timeout_s: float) -> None:
        """Leave the process group within ``timeout_s``."""
        self.torch.on_shutdown(self, timeout_s)

    def describe(self, rank: int) -> str:
        """A rank as "rank 1 (pid 4242 on node 5f3a9c01)", from what its worker reported."""
        if rank >= len(self.info):
            return f"rank {rank}"
        info = self.info[rank]
        return f"rank {rank} (pid {info['pid']} on node {info['node'][:8]})"

    def repeated_death(self, deaths: list[WorkerDied]) -> str:
        """A block that kills every worker that computes it: most likely out of memory."""
        available = (
            min(info["memory_available"] for info in self.info) / 2**30
            if self.info
            else float("nan")
        )
        return (
            f"the same block killed workers {len(deaths)} times (last: {deaths[-1]}): most likely "
            "out of memory "
            f"(the workers' nodes had {available:.1f} GiB available when they started). Lower "
            "data.batch_size "
            f"(now {self.spec.batch_size}) or algorithm.product_width (SEIGH: columns per "
            "product); the rerun resumes from the store; "
            "every block measured so far is kept"
        )
