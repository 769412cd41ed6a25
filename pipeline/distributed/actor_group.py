"""ActorGroup: Ray actors called on all ranks at once, rebuilt when one dies or hangs.

N Ray actors in a PACK placement group, called on all ranks at once, torn down and rebuilt from
scratch when one dies or hangs. Nothing here knows torch or curvature (see ``torch_backend`` and
``group``), as Ray Train separates its worker group from its backends.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.exceptions import (
    GetTimeoutError,
    NodeDiedError,
    OutOfMemoryError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from pipeline.errors import InputError, OperationError

log = logging.getLogger("pipeline.distributed.group")


class WorkerDied(RuntimeError):
    """A worker process died (killed, OOM, node lost); the group must be rebuilt."""


class WorkerHung(WorkerDied):
    """A call was not answered within the hang bound; the group is rebuilt as after a death."""


DEATHS = (RayActorError, OutOfMemoryError, NodeDiedError, WorkerCrashedError)
HANG_FACTOR = 10.0  # a call slower than this many times the slowest one answered is hung
# the first call on new actors (imports, product-mode timing) is hung past this many times the
# slowest first call seen: a replacement group repeats that one-off work
COLD_HANG_FACTOR = 3.0
PROBE = "probe"  # the actors' concurrency group for ``phase``, which answers while a call runs
PROBE_TIMEOUT_S = 5.0
QUEUED_LOG_S = 60.0  # while waiting for resources other jobs hold, a line this often


class PeerFailed(RuntimeError):
    """Raised on a rank whose peer failed first; the peer's own error is the one reported."""


def default_num_workers() -> int:
    """One worker per GPU of the cluster, or one per node on a CPU-only cluster."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    return gpus or max(
        1, sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0)
    )


def resources_per_worker(
    num_workers: int, cpus: float | None, gpus: float | None
) -> tuple[float, float]:
    """(CPUs, GPUs) per worker, filling in None from the cluster's resources."""
    available = ray.cluster_resources()
    if gpus is None:
        gpus = 1.0 if available.get("GPU", 0) >= num_workers else 0.0
    if cpus is None:
        cpus = max(1.0, float(int(available.get("CPU", 1) // num_workers)))
    return cpus, gpus


class ActorGroup:
    """A group of Ray actors, one per rank, restarted when one dies or hangs.

    ``num_workers`` actors of ``actor_class``, ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs
    each, one placement-group bundle per rank; ``actor_args(rank)`` gives each its constructor's
    (args, kwargs). Subclasses set the actors up after they start (``setup``) and before they are
    killed (``teardown``). ``run`` calls a method on every rank; if an actor dies, or the call is
    not answered within ``hang_bound_s`` (a hang), the group is killed, restarted (setup again) and
    the call redone, up to ``max_failures`` times in a row; the same call killing workers twice
    stops at once (a block that does not fit in memory kills every replacement). An actor class may
    answer ``phase() -> (what it is doing, seconds)`` in the ``PROBE`` concurrency group, so that a
    hang report says which rank is stuck.
    """

    def __init__(
        self,
        actor_class: type,
        num_workers: int,
        cpus_per_worker: float,
        gpus_per_worker: float,
        actor_args: Callable[[int], tuple[tuple, dict]],
        max_failures: int = 3,
        placement_timeout_s: float = 120.0,
        call_timeout_s: float = 1800.0,
    ):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers <= 0:
            raise InputError(
                "num_workers must be a positive integer (or None: sized from the cluster), got "
                f"{num_workers!r}"
            )
        if max_failures < 0:
            raise InputError(f"max_failures must be >= 0, got {max_failures}")
        if call_timeout_s <= 0:
            raise InputError(f"call_timeout_s must be positive, got {call_timeout_s}")
        self.actor_class, self.actor_args = actor_class, actor_args
        self.num_workers, self.cpus_per_worker, self.gpus_per_worker = (
            num_workers,
            cpus_per_worker,
            gpus_per_worker,
        )
        self.max_failures, self.placement_timeout_s, self.call_timeout_s = (
            max_failures,
            placement_timeout_s,
            call_timeout_s,
        )
        self.failures = 0  # deaths and hangs survived over the group's life
        # of the calls after the first on each set of actors (which pays one-off costs)
        self.slowest_call_s = 0.0
        self.slowest_first_call_s = 0.0
        self._warm = False
        self.actors: list[Any] = []
        self._placement = None

    def setup(self) -> None:
        """Called once the actors exist (and after every restart)."""

    def teardown(self, timeout_s: float) -> None:
        """Called before the actors are killed, bounded by ``timeout_s``."""

    def describe(self, rank: int) -> str:
        """How messages name the actor of ``rank``."""
        return f"rank {rank}"

    def repeated_death(self, deaths: list[WorkerDied]) -> str:
        """The stop message when one call killed workers twice.

        The stop message when one call killed workers twice (subclasses name the settings to lower).
        """
        return (
            f"the same call killed workers {len(deaths)} times (last: {deaths[-1]}): it does not "
            "fit in the workers' "
            "memory or crashes them; lower its size"
        )

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Place and start the actors, then ``setup``; on any failure nothing is left running."""
        bundle = {
            "CPU": self.cpus_per_worker,
            **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {}),
        }
        self._placement = placement_group([bundle] * self.num_workers, strategy="PACK")
        try:
            self._wait_for_placement(bundle)
        except BaseException:
            self.shutdown()
            raise
        remote_cls = ray.remote(concurrency_groups={PROBE: 1})(self.actor_class)
        self.actors, self._warm = [], False
        for rank in range(self.num_workers):
            args, kwargs = self.actor_args(rank)
            strategy = PlacementGroupSchedulingStrategy(
                self._placement, placement_group_bundle_index=rank
            )
            self.actors.append(
                remote_cls.options(
                    num_cpus=self.cpus_per_worker,
                    num_gpus=self.gpus_per_worker,
                    scheduling_strategy=strategy,
                ).remote(*args, **kwargs)
            )
        try:
            self.setup()
        except BaseException:
            self.shutdown()
            raise

    def _wait_for_placement(self, bundle: dict[str, float]) -> None:
        """Wait for the placement group.

        For as long as it takes while the cluster has the resources in all but other jobs hold them
        (a sweep of jobs queues, logging every ``QUEUED_LOG_S``); at most ``placement_timeout_s``
        where it has not (an autoscaler may add nodes), then OperationError.
        """
        need = {key: amount * self.num_workers for key, amount in bundle.items()}
        total = ray.cluster_resources()
        fits = all(total.get(key, 0) >= amount for key, amount in need.items())
        deadline = None if fits else time.monotonic() + self.placement_timeout_s
        ready = self._placement.ready()
        while not ray.wait(
            [ready],
            timeout=QUEUED_LOG_S if deadline is None else max(0.0, deadline - time.monotonic()),
        )[0]:
            if deadline is not None:
                raise OperationError(
                    f"cannot place {self.num_workers} workers of {bundle} within "
                    f"{self.placement_timeout_s:.0f} s: "
                    f"they need {need} and the cluster has "
                    f"{ ({key: total.get(key, 0) for key in need}) } in all; "
                    "use fewer workers or fewer CPUs/GPUs per worker"
                )
            log.info(
                "waiting for %s for %d workers: other jobs hold them (free now: %s)",
                need,
                self.num_workers,
                {key: ray.available_resources().get(key, 0) for key in need},
            )

    def shutdown(self, teardown_timeout_s: float = 10.0, teardown: bool = True) -> None:
        """Tear down and kill the actors and release the placement group (idempotent).

        ``teardown`` on the live actors (bounded; skipped with ``teardown=False``: after a death or
        a hang the survivors may be blocked in a call that the teardown would queue behind), then
        kill them and release the placement group (idempotent).
        """
        if self.actors and teardown:
            try:
                self.teardown(teardown_timeout_s)
            except Exception:  # noqa: BLE001  (dead or stuck actors are killed below regardless)
                log.debug(
                    "some workers did not tear down in %s s; killing them", teardown_timeout_s
                )
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._placement is not None:
            placement, self._placement = self._placement, None
            if not finished_within(teardown_timeout_s, remove_placement_group, placement):
                log.debug(
                    "the placement group was not released in %s s (Ray is stopping?); leaving it "
                    "to ray.shutdown",
                    teardown_timeout_s,
                )

    def restart(self) -> None:
        """Kill every actor without a teardown and start afresh."""
        self.shutdown(teardown=False)
        self.start()

    # ---- calls ------------------------------------------------------------------------------
    def hang_bound_s(self) -> float:
        """A call not answered within this is hung.

        ``HANG_FACTOR`` x the slowest call answered so far (not counting the first on new actors:
        lazy imports, mode choice), at least ``call_timeout_s``; for the first call on new actors
        (a replacement group's), at least ``COLD_HANG_FACTOR`` x the slowest first call too.
        """
        cold = 0.0 if self._warm else COLD_HANG_FACTOR * self.slowest_first_call_s
        return max(self.call_timeout_s, HANG_FACTOR * self.slowest_call_s, cold)

    def run(self, method: Callable[..., Any], *args: Any) -> list[Any]:
        """Call the actor method ``method`` (e.g.

        ``CurvatureWorker.matmat``) with ``args`` on every rank and return the results in rank
        order, rebuilding the group and redoing the call after a death or a hang.
        """
        failures: list[WorkerDied] = []  # of this call: failures in a row
        while True:
            started = time.perf_counter()
            try:
                results = self.gather(self._submit(method, *args), self.hang_bound_s())
            except WorkerDied as failure:
                failures.append(failure)
                self.failures += 1
                self._stop_if_hopeless(failures)
                log.warning(
                    "%s; killing the workers and redoing the call on new ones (failure %d in a row "
                    "of at most %d)",
                    failure,
                    len(failures),
                    self.max_failures,
                )
                self.restart()
                continue
            took = time.perf_counter() - started
            if self._warm:
                self.slowest_call_s = max(self.slowest_call_s, took)
            else:
                self.slowest_first_call_s = max(self.slowest_first_call_s, took)
            self._warm = True
            return results

    def _stop_if_hopeless(self, failures: list[WorkerDied]) -> None:
        """Shut down and raise OperationError when retrying cannot help.

        The same call killed workers twice, or more than ``max_failures`` failures in a row.
        """
        deaths = [failure for failure in failures if not isinstance(failure, WorkerHung)]
        if len(deaths) >= 2:
            message = self.repeated_death(deaths)
        elif len(failures) <= self.max_failures:
            return
        elif isinstance(failures[-1], WorkerHung):
            message = (
                f"workers hung {len(failures)} times in a row (max_failures={self.max_failures}); "
                f"last: {failures[-1]}. "
                "Likely causes: a data loader or file system that stalls, a deadlocked GPU or "
                "network; if a product "
                "legitimately takes that long, raise cluster.call_timeout_s. Measured results in "
                "the store are kept"
            )
        else:
            message = (
                f"workers died {len(failures)} times in a row (max_failures={self.max_failures}); "
                f"last: {failures[-1]}. "
                "Check the workers' memory (OOM kills) and node health; measured results in the "
                "store are kept"
            )
        self.shutdown(teardown=False)
        raise OperationError(message) from failures[-1]

    def call_all(
        self, method: Callable[..., Any], *args: Any, timeout_s: float | None = None
    ) -> list[Any]:
        """Call ``method`` on every rank once, without the restart (setup and teardown use this)."""
        refs = self._submit(method, *args)
        return ray.get(refs, timeout=timeout_s) if timeout_s is not None else self.gather(refs)

    def _submit(self, method: Callable[..., Any], *args: Any) -> list[Any]:
        """``method`` submitted to every rank, or to none.

        A SIGTERM / SIGINT arriving meanwhile is raised after the last submission. A call given to
        some ranks only would leave them waiting in its collective for ever, and every later call
        (the flush of pending writes on the way out) queued behind it.
        """
        with _interrupts_deferred():
            return [getattr(actor, method.__name__).remote(*args) for actor in self.actors]

    def gather(self, refs: list[Any], hang_bound_s: float | None = None) -> list[Any]:
        """ray.get in completion order, raising the root cause of any failure.

        ray.get in completion order, so that a dead worker is noticed while others block in a
        collective (WorkerDied); nothing answered for ``hang_bound_s`` is a hang (WorkerHung). Task
        errors are collected until every rank has answered, then the root cause is raised: a rank's
        own error rather than its peers' PeerFailed, and a communication error where a worker is
        dead counts as a death.
        """
        results: dict[Any, Any] = {}
        errors: list[RayTaskError] = []
        pending = list(refs)
        deadline = None if hang_bound_s is None else time.monotonic() + hang_bound_s
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=timeout)
            if not ready:
                raise WorkerHung(
                    self._hang_report([refs.index(ref) for ref in pending], hang_bound_s)
                )
            rank = refs.index(ready[0])
            try:
                results[ready[0]] = ray.get(ready[0])
            except DEATHS as error:
                raise WorkerDied(
                    f"{self.describe(rank)} died: {str(error).splitlines()[0]}"
                ) from error
            except RayTaskError as error:
                errors.append(error)
        if errors:
            own = [e for e in errors if not isinstance(e.cause, PeerFailed)] or errors
            if not self._all_alive():
                raise WorkerDied(f"a peer died during a collective: {own[0].cause!r}") from own[0]
            raise own[0].cause from None
        return [results[ref] for ref in refs]

    def _hang_report(self, waiting: list[int], bound_s: float) -> str:
        """Which ranks did not answer within ``bound_s`` and what each was doing.

        Which ranks did not answer within ``bound_s`` and what each was doing (``phase``), e.g. one
        computing while its peers wait in a collective: the one computing is stuck.
        """
        phases = self._phases()
        doing = "; ".join(
            f"{self.describe(rank)}: {phases[rank]}" for rank in range(len(self.actors))
        )
        return (
            f"{', '.join(self.describe(rank) for rank in waiting)} did not answer within "
            f"{bound_s:.0f} s "
            f"(max of call_timeout_s, {HANG_FACTOR:g}x the slowest call and, on new workers, "
            f"{COLD_HANG_FACTOR:g}x the slowest first call); {doing}"
        )

    def _phases(self) -> list[str]:
        """Each rank's ``phase`` as words.

        Each rank's ``phase`` as words ("no answer" where it answers nothing in
        ``PROBE_TIMEOUT_S``).
        """
        if not hasattr(self.actor_class, "phase"):
            return ["no phase reported"] * len(self.actors)
        refs = [actor.phase.remote() for actor in self.actors]
        ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        phases = []
        for ref in refs:
            try:
                what, seconds = ray.get(ref, timeout=0)
                phases.append(f"{what} for {seconds:.0f} s")
            except Exception:  # noqa: BLE001  (a dead or blocked actor: that is the report)
                phases.append(
                    f"no answer in {PROBE_TIMEOUT_S:g} s (blocked in native code, or its node is "
                    "lost)"
                )
        return phases

    def _all_alive(self, timeout_s: float = 10.0) -> bool:
        try:
            ray.get([actor.__ray_ready__.remote() for actor in self.actors], timeout=timeout_s)
            return True
        except (RayActorError, GetTimeoutError):
            return False


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGTERM / SIGINT while the body runs, then raise each one received.

    Hold SIGTERM / SIGINT while the body runs (in the main thread; elsewhere Python runs no
    handlers), then raise each one received through the handler that was in place.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    # None: not Python's to replace
    held = {number: handler for number, handler in previous.items() if handler is not None}
    for number in held:
        signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
        for number in received:
            signal.raise_signal(number)


def finished_within(timeout_s: float, call: Callable[..., Any], *args: Any) -> bool:
    """Run ``call(*args)`` in a daemon thread and wait at most ``timeout_s``: whether it returned.

    For Ray calls that block for ever once Ray's own processes are stopping (a signal sent to the
    whole process group: Ctrl-C in a terminal, a scheduler's cancel).
    """
    worker = threading.Thread(
        target=call, args=args, daemon=True, name=f"bounded {getattr(call, '__name__', 'call')}"
    )
    worker.start()
    worker.join(timeout_s)
    return not worker.is_alive()
