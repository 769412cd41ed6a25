"""RayOperator: the operator protocol backed by Ray workers.

The operator protocol backed by a WorkerGroup (and ``Measurer``: test matrices are generated and
measured blocks written on the workers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ray
import torch

from pipeline.curvature.memory_fit import MemoryFit
from pipeline.distributed.group import WorkerGroup
from pipeline.distributed.worker import CurvatureWorker
from pipeline.linalg.operator import Operator
from pipeline.sharding.spec import ProblemSpec
from pipeline.store.protocol import ColumnWriter


class RayOperator(Operator):
    """H of the mean loss over the union of the workers' shards.

    ``op @ V`` ships V once through the object store, every worker computes its sample-weighted
    partial product, and the all-reduced result comes back from rank 0. Equal to the in-process
    operator on all samples. ``last_timings`` holds each rank's compute / all-reduce seconds of
    the latest call.

    Args:
        spec: The problem (model, loss, data, curvature) each worker builds its shard of.
        num_workers: Ranks, one data shard each.
        cpus_per_worker: CPUs per worker (None: the cluster's CPUs divided among them).
        gpus_per_worker: GPUs per worker (None: one each when the cluster has a GPU for every
            worker, else none).
        max_failures: Worker deaths or hangs in a row survived by restarting the group.
        **group_options: Passed to ``WorkerGroup`` (placement and call timeouts).

    Raises:
        OperationError: The workers cannot be placed or built, or fail ``max_failures`` times.
    """

    def __init__(
        self,
        spec: ProblemSpec,
        num_workers: int = 2,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float | None = None,
        max_failures: int = 3,
        **group_options,
    ):
        self.group = WorkerGroup(
            spec, num_workers, cpus_per_worker, gpus_per_worker, max_failures, **group_options
        )
        info = self.group.info[0]
        super().__init__(info["dim"], getattr(torch, info["dtype"]), "cpu")
        self.last_timings: list[dict[str, float]] = []

    def expect(self, products: int) -> None:
        """Announced on every worker too.

        Their ``product_mode=auto`` weighs it (a one-off width is not timed).
        """
        super().expect(products)
        self.group.run(CurvatureWorker.expect, int(products))

    def pass_seconds(self, width: int) -> float:
        """Seconds of one product of a (D, ``width``) block on the workers.

        The slowest rank's share, timed on its first batch and scaled by its samples, plus a timed
        all-reduce of the block: a few batches of work, not a pass over the data.
        """
        return max(self.group.run(CurvatureWorker.pass_seconds, int(width)))

    def width_fit(self, widest: int, budget_bytes: int | None, fixed_bytes: int) -> MemoryFit:
        """The widest product every worker can hold (``CurvatureOperator.width_fit`` per rank).

        Each worker measures its own shard's first batch; a node's memory (or a GPU's) is shared
        by the workers on it. The narrowest rank's fit.
        """
        return self._smallest_fit(CurvatureWorker.width_fit, widest, budget_bytes, fixed_bytes)

    def batch_fit(self, width: int, budget_bytes: int | None, fixed_bytes: int) -> MemoryFit:
        """The largest batch every worker can hold (``CurvatureOperator.batch_fit`` per rank).

        Measured as ``width_fit``; the smallest rank's fit.
        """
        return self._smallest_fit(CurvatureWorker.batch_fit, width, budget_bytes, fixed_bytes)

    def rebatch(self, batch_size: int) -> None:
        """Every rank's shard split again into batches of ``batch_size``.

        Workers started after a failure build theirs so.
        """
        self.group.spec = replace(self.group.spec, batch_size=int(batch_size))
        self.group.run(CurvatureWorker.rebatch, int(batch_size))

    def _smallest_fit(
        self, method: Callable[..., Any], limit: int, budget_bytes: int | None, fixed_bytes: int
    ) -> MemoryFit:
        """The smallest of every rank's ``method`` fit, a node's memory shared by its workers."""
        sharing = dict(Counter(info["node"] for info in self.group.info))
        fits = self.group.run(method, int(limit), budget_bytes, int(fixed_bytes), sharing)
        return MemoryFit(**min(fits, key=lambda fit: fit["size"]))

    def probe_share(self) -> float:
        """What one ``pass_seconds`` call at a new width costs, in products (the largest share)."""
        return max(self.group.run(CurvatureWorker.probe_share))

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        block = ray.put(V.detach().cpu().contiguous().numpy())  # zero-copy reads on the workers
        return self._reduced(CurvatureWorker.matmat, block)

    def measure(
        self,
        kind: str,
        seed: int,
        columns: range,
        writer: ColumnWriter | None = None,
        width: int | None = None,
    ) -> torch.Tensor | None:
        """H Omega[:, columns] with Omega generated on the workers.

        H Omega[:, columns] with Omega generated on the workers, in products of at most ``width``
        columns (no D-sized vector passes through the driver when a ``writer`` stores the block from
        rank 0).
        """
        return self._counted(
            len(columns), self._reduced, CurvatureWorker.measure, kind, seed, columns, writer, width
        )

    @property
    def num_samples(self) -> int:
        """N, the samples of all the workers' shards together."""
        return sum(info["samples"] for info in self.group.info)

    def weights_digest(self) -> str:
        """SHA-1 of the workers' flat parameters (they verified at start that they agree)."""
        return self.group.info[0]["weights"]

    def worker_peak_rss(self) -> int:
        """The largest peak resident memory of the workers, in bytes."""
        return max(self.group.run(CurvatureWorker.peak_rss))

    def wait_for_writes(self) -> None:
        """Wait until rank 0 has written every measured block."""
        self.group.run(CurvatureWorker.wait_for_writes)

    def _reduced(self, method: Callable[..., Any], *args) -> torch.Tensor | None:
        results = self.group.run(method, *args)
        self.last_timings = [timings for _, timings in results]
        return results[0][0]

    @property
    def failures(self) -> int:
        """Worker failures survived so far (deaths and hangs)."""
        return self.group.failures

    def close(self, teardown_timeout_s: float = 10.0) -> None:
        """Shut the workers down (teardown bounded by ``teardown_timeout_s``)."""
        self.group.shutdown(teardown_timeout_s)

    def __enter__(self) -> "RayOperator":
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc) -> None:
        """A signal or an exit (not an Exception) is leaving.

        Ray's own processes may be stopping too, so the workers get 2 s to tear down instead of 10.
        """
        self.close(10.0 if kind is None or issubclass(kind, Exception) else 2.0)
