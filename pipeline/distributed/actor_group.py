"""ActorGroup: N Ray actors in a PACK placement group, called on all ranks at once, torn down
and rebuilt from scratch when one dies. Nothing here knows torch or curvature (see
``torch_backend`` and ``group``), as Ray Train separates its worker group from its backends."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from pipeline.errors import InputError, OperationError

log = logging.getLogger("pipeline.distributed.group")


class WorkerDied(RuntimeError):
    """A worker process died (killed, OOM, node lost); the group must be rebuilt."""


class PeerFailed(RuntimeError):
    """Raised on a rank whose peer failed first; the peer's own error is the one reported."""


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


class ActorGroup:
    """``num_workers`` actors of ``actor_class``, ``cpus_per_worker`` CPUs and ``gpus_per_worker``
    GPUs each, one placement-group bundle per rank; ``actor_args(rank)`` gives each its
    constructor's (args, kwargs). Subclasses set the actors up after they start (``setup``) and
    before they are killed (``teardown``). ``run`` calls a method on every rank; if an actor dies
    the group is torn down, restarted (setup again) and the call redone, up to ``max_failures`` times."""

    def __init__(self, actor_class: type, num_workers: int, cpus_per_worker: float, gpus_per_worker: float,
                 actor_args: Callable[[int], tuple[tuple, dict]], max_failures: int = 3, placement_timeout_s: float = 120.0):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers <= 0:
            raise InputError(f"num_workers must be a positive integer (or None: sized from the cluster), got {num_workers!r}")
        if max_failures < 0:
            raise InputError(f"max_failures must be >= 0, got {max_failures}")
        self.actor_class, self.actor_args = actor_class, actor_args
        self.num_workers, self.cpus_per_worker, self.gpus_per_worker = num_workers, cpus_per_worker, gpus_per_worker
        self.max_failures, self.placement_timeout_s = max_failures, placement_timeout_s
        self.failures = 0
        self.actors: list[Any] = []
        self._placement = None

    def setup(self) -> None:
        """Called once the actors exist (and after every restart)."""

    def teardown(self, timeout_s: float) -> None:
        """Called before the actors are killed, bounded by ``timeout_s``."""

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Place and start the actors, then ``setup``; on any failure nothing is left running."""
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
        remote_cls = ray.remote(self.actor_class)
        self.actors = []
        for rank in range(self.num_workers):
            args, kwargs = self.actor_args(rank)
            strategy = PlacementGroupSchedulingStrategy(self._placement, placement_group_bundle_index=rank)
            self.actors.append(remote_cls.options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                                                  scheduling_strategy=strategy).remote(*args, **kwargs))
        try:
            self.setup()
        except BaseException:
            self.shutdown()
            raise

    def shutdown(self, teardown_timeout_s: float = 10.0) -> None:
        """``teardown`` on the live actors (bounded), then kill them and release the placement
        group (idempotent)."""
        if self.actors:
            try:
                self.teardown(teardown_timeout_s)
            except Exception:  # noqa: BLE001  (dead or stuck actors are killed below regardless)
                log.debug("some workers did not tear down in %s s; killing them", teardown_timeout_s)
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._placement is not None:
            placement, self._placement = self._placement, None
            if not finished_within(teardown_timeout_s, remove_placement_group, placement):
                log.debug("the placement group was not released in %s s (Ray is stopping?); leaving it to ray.shutdown", teardown_timeout_s)

    def restart(self) -> None:
        self.shutdown()
        self.start()

    # ---- calls ------------------------------------------------------------------------------
    def run(self, method: Callable[..., Any], *args: Any) -> list[Any]:
        """Call the actor method ``method`` (e.g. ``CurvatureWorker.matmat``) with ``args`` on every
        rank and return the results in rank order."""
        while True:
            try:
                return self.gather([getattr(actor, method.__name__).remote(*args) for actor in self.actors])
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

    def call_all(self, method: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> list[Any]:
        """Call ``method`` on every rank once, without the restart (setup and teardown use this)."""
        refs = [getattr(actor, method.__name__).remote(*args) for actor in self.actors]
        return ray.get(refs, timeout=timeout_s) if timeout_s is not None else self.gather(refs)

    def gather(self, refs: list[Any]) -> list[Any]:
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
            ray.get([actor.__ray_ready__.remote() for actor in self.actors], timeout=timeout_s)
            return True
        except (RayActorError, GetTimeoutError):
            return False


def finished_within(timeout_s: float, call: Callable[..., Any], *args: Any) -> bool:
    """Run ``call(*args)`` in a daemon thread and wait at most ``timeout_s``: whether it returned.
    For Ray calls that block for ever once Ray's own processes are stopping (a signal sent to the
    whole process group: Ctrl-C in a terminal, a scheduler's cancel)."""
    worker = threading.Thread(target=call, args=args, daemon=True, name=f"bounded {getattr(call, '__name__', 'call')}")
    worker.start()
    worker.join(timeout_s)
    return not worker.is_alive()
