"""WorkerGroup: N worker actors in a PACK placement group with one torch.distributed group,
rebuilt from scratch when a worker dies."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from pipeline.distributed.worker import CurvatureWorker, PeerFailed
from pipeline.errors import InputError, OperationError
from pipeline.sharding.spec import ProblemSpec

log = logging.getLogger(__name__)


class WorkerDied(RuntimeError):
    """A worker process died (killed, OOM, node lost); the group must be rebuilt."""


def default_num_workers() -> int:
    """One worker per GPU of the cluster, or one per node on a CPU-only cluster."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    return gpus or max(1, sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0))


def resources_per_worker(num_workers: int, cpus: float | None, gpus: float | None) -> tuple[float, float]:
    """(CPUs, GPUs) per worker, filling in None from the cluster's resources."""
    available = ray.cluster_resources()
    if gpus is None:
        gpus = 1.0 if available.get("GPU", 0) >= num_workers else 0.0
    if cpus is None:
        cpus = max(1.0, float(int(available.get("CPU", 1) // num_workers)))
    return cpus, gpus


class WorkerGroup:
    """Start ``num_workers`` actors (``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each,
    torch threads = CPUs; None means automatic: one worker per GPU, or per node without GPUs; one
    GPU per worker when the cluster has a GPU for every worker, else none; the cluster's CPUs
    divided among the workers), build each
    shard's operator and the process group. ``run`` calls a
    worker method on all ranks; if a worker dies the whole group is torn down, rebuilt on the
    same shards, and the call redone, up to ``max_failures`` times."""

    def __init__(
        self,
        spec: ProblemSpec,
        num_workers: int | None,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float | None = None,
        max_failures: int = 3,
        collective_timeout_s: float = 1800.0,
        placement_timeout_s: float = 120.0,
    ):
        if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers <= 0):
            raise InputError(f"num_workers must be a positive integer (or None: sized from the cluster), got {num_workers!r}")
        if max_failures < 0:
            raise InputError(f"max_failures must be >= 0, got {max_failures}")
        if not ray.is_initialized():
            raise RuntimeError("Ray is not running: call pipeline.distributed.init_ray(...) (or ray.init) first")
        num_samples = spec.num_samples()
        if num_workers is None:
            num_workers = min(default_num_workers(), num_samples)
        if num_workers > num_samples:
            raise InputError(f"cannot split {num_samples} samples into {num_workers} non-empty shards; use at most {num_samples} workers")
        self.spec = spec
        self.num_workers = num_workers
        self.cpus_per_worker, self.gpus_per_worker = resources_per_worker(num_workers, cpus_per_worker, gpus_per_worker)
        self.max_failures = max_failures
        self.collective_timeout_s = collective_timeout_s
        self.placement_timeout_s = placement_timeout_s
        self.failures = 0
        self.actors: list[Any] = []
        self._placement = None
        self.info: list[dict[str, Any]] = []
        self._start()

    # ---- lifecycle ----------------------------------------------------------------------------
    def _start(self) -> None:
        bundle = {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}
        self._placement = placement_group([bundle] * self.num_workers, strategy="PACK")
        try:
            ray.get(self._placement.ready(), timeout=self.placement_timeout_s)
        except GetTimeoutError:
            self.shutdown()
            raise OperationError(
                f"cannot place {self.num_workers} workers of {bundle} within {self.placement_timeout_s:.0f}s; "
                f"the cluster has {ray.cluster_resources()}: use fewer workers or fewer CPUs/GPUs per worker"
            ) from None
        remote_cls = ray.remote(CurvatureWorker)
        self.actors = [
            remote_cls.options(
                num_cpus=self.cpus_per_worker,
                num_gpus=self.gpus_per_worker,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._placement, placement_group_bundle_index=rank),
            ).remote(self.spec, rank, self.num_workers, threads=max(1, int(self.cpus_per_worker)), device=self.device)
            for rank in range(self.num_workers)
        ]
        try:
            self.info = self._gather([actor.build.remote() for actor in self.actors])
            if len({(info["dim"], info["weights"]) for info in self.info}) != 1:
                raise OperationError(
                    "workers built different models: the model factory is not deterministic; seed the "
                    "initialisation (model.init_seed) or load a checkpoint (model.checkpoint)"
                )
            address, port = ray.get(self.actors[0].rendezvous.remote())
            self._gather([actor.join.remote(address, port, self.collective_timeout_s, self.backend) for actor in self.actors])
        except BaseException:
            self.shutdown()
            raise

    @property
    def device(self) -> str:
        """The workers' device, from the resources they were given: cuda with (a share of) a GPU, else cpu."""
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    @property
    def backend(self) -> str:
        """NCCL when every worker has a whole GPU; gloo otherwise (CPU, or ranks sharing a GPU, which NCCL refuses)."""
        return "nccl" if self.gpus_per_worker >= 1 else "gloo"

    def shutdown(self, leave_timeout_s: float = 10.0) -> None:
        """Leave the process group on every live worker (bounded by ``leave_timeout_s``), then kill
        the actors and release the placement group (idempotent)."""
        if self.actors:
            try:
                ray.get([actor.leave.remote() for actor in self.actors], timeout=leave_timeout_s)  # CurvatureWorker.leave
            except Exception:  # noqa: BLE001  (dead or stuck workers are killed below regardless)
                log.debug("some workers did not leave the process group in %s s; killing them", leave_timeout_s)
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._placement is not None:
            remove_placement_group(self._placement)
            self._placement = None

    def restart(self) -> None:
        self.shutdown()
        self._start()

    # ---- calls ------------------------------------------------------------------------------
    def run(self, method: Callable[..., Any], *args: Any) -> list[Any]:
        """Call the worker method ``method`` (e.g. ``CurvatureWorker.matmat``) with ``args`` on every
        rank and return the results in rank order."""
        while True:
            try:
                return self._gather([getattr(actor, method.__name__).remote(*args) for actor in self.actors])
            except WorkerDied as death:
                self.failures += 1
                if self.failures > self.max_failures:
                    self.shutdown()
                    raise OperationError(
                        f"workers died {self.failures} times (max_failures={self.max_failures}); last: {death}. "
                        "Check the workers' memory (OOM kills) and node health; measured results in the store are kept"
                    ) from death
                log.warning("worker died (%s); rebuilding the group (failure %d of at most %d)", death, self.failures, self.max_failures)
                self.restart()

    def _gather(self, refs: list[Any]) -> list[Any]:
        """ray.get in completion order, so that a dead worker is noticed while others block in a
        collective (WorkerDied). Task errors are collected until every rank has answered, then
        the root cause is raised: a rank's own error rather than its peers' PeerFailed, and a
        communication error where a worker is dead counts as a death."""
        results: dict[Any, Any] = {}
        errors: list[RayTaskError] = []
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                results[ready[0]] = ray.get(ready[0])
            except RayActorError as error:
                raise WorkerDied(str(error).splitlines()[0]) from error
            except RayTaskError as error:
                errors.append(error)
        if errors:
            own = [e for e in errors if not isinstance(e.cause, PeerFailed)] or errors
            if not self._all_alive():
                raise WorkerDied(f"a peer died during a collective: {own[0].cause!r}") from own[0]
            raise own[0].cause from None
        return [results[ref] for ref in refs]

    def _all_alive(self, timeout_s: float = 10.0) -> bool:
        try:
            ray.get([actor.pid.remote() for actor in self.actors], timeout=timeout_s)
            return True
        except (RayActorError, GetTimeoutError):
            return False
