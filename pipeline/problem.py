"""From a Job to its curvature operator: in process, or on Ray workers."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import torch

from pipeline.basics import compute_device
from pipeline.errors import InputError
from pipeline.solvers.base import block_width

if TYPE_CHECKING:
    from pipeline.curvature.memory_fit import MemoryFit
    from pipeline.job import Job

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ProblemOperator(Protocol):
    """What ``open_operator`` yields: an ``Operator`` over the job's problem.

    What ``open_operator`` yields (a ``CurvatureOperator`` in process, a ``RayOperator`` on
    workers): an ``Operator`` (``shape``, ``dtype``, ``device``, ``op @ V``, ``matvecs``) over
    ``num_samples`` samples, with the digest of its weights and the peak memory of its workers.
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    matvecs: int

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor: ...

    @property
    def num_samples(self) -> int:
        """N, the samples the operator averages over."""

    def weights_digest(self) -> str:
        """A digest of the model's weights (the same on every worker)."""

    def worker_peak_rss(self) -> int | None:
        """The largest peak resident memory of the workers in bytes.

        None where products run in this process.
        """

    def width_fit(self, widest: int, budget_bytes: int | None, fixed_bytes: int) -> MemoryFit:
        """The widest product (at most ``widest`` columns) every worker's memory holds."""

    def batch_fit(self, width: int, budget_bytes: int | None, fixed_bytes: int) -> MemoryFit:
        """The largest batch whose products of ``width`` columns every worker's memory holds."""

    def rebatch(self, batch_size: int) -> None:
        """Split every shard again into batches of ``batch_size`` samples."""


@contextlib.contextmanager
def open_operator(job: Job) -> Iterator[ProblemOperator]:
    """The operator of ``job.problem`` for ``cluster.mode``: ``none`` builds it here.

    ``local`` starts Ray with num_workers x cpus_per_worker CPUs (all of this machine's when
    cpus_per_worker is null); ``ray`` joins $RAY_ADDRESS (or cluster.address). A null num_workers /
    cpus_per_worker / gpus_per_worker is sized from the cluster's resources. Workers and a Ray
    instance started here are shut down on exit.
    """
    cluster, spec = job.cluster, job.problem
    if cluster.mode == "none":
        op = spec.build(1, 0, compute_device(job.device))
        if job.curvature.check_determinism:
            op.check_determinism()
        yield op
        return
    # the data fits the model: checked before Ray starts (the one build of the data on the driver)
    spec.preview()
    # Ray is imported only for cluster=local / ray
    from pipeline.distributed import RayOperator, init_ray, release_ray, watching_head

    watch = contextlib.nullcontext()
    if cluster.mode == "ray":
        address = cluster.address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise InputError(
                "cluster=ray joins an existing cluster: set RAY_ADDRESS or cluster.address (or use "
                "cluster=local)"
            )
        started = init_ray(address=address, connect_timeout_s=cluster.connect_timeout_s)
        watch = watching_head(address, cluster.connect_timeout_s)
    else:
        # None: all
        cpus = (
            round(cluster.num_workers * cluster.cpus_per_worker)
            if cluster.num_workers and cluster.cpus_per_worker
            else None
        )
        started = init_ray(num_cpus=cpus)
    with watch:
        try:
            with RayOperator(
                spec,
                cluster.num_workers,
                cluster.cpus_per_worker,
                cluster.gpus_per_worker,
                cluster.max_failures,
                call_timeout_s=cluster.call_timeout_s,
            ) as op:
                group = op.group
                log.info(
                    "%d Ray workers ready on %d nodes (%g CPUs, %g GPUs each), D=%d, dtype=%s",
                    group.num_workers,
                    len({info["node"] for info in group.info}),
                    group.cpus_per_worker,
                    group.gpus_per_worker,
                    op.shape[0],
                    op.dtype,
                )
                yield op
        finally:
            if started:
                release_ray()


def settle_auto_sizes(job: Job, op: ProblemOperator) -> tuple[Job, dict[str, dict]]:
    """``data.batch_size=auto`` and ``algorithm.product_width=auto`` settled on the workers, logged.

    The batch first, at the run's product width (1 when that is auto too): the largest batch whose
    products fit each worker's memory (``batch_fit``; the operator re-batched to it); then the
    widest product at that batch (``width_fit``). Both against ``cluster.worker_memory_gb`` or a
    share of the node's memory, with the two store blocks a measurement holds beside its
    products. The job with the settled numbers, and each fit (results.json: ``plan``).
    """
    a = job.algorithm
    itemsize = torch.empty((), dtype=op.dtype).element_size()
    memory_gb = job.cluster.worker_memory_gb
    budget = None if memory_gb is None else int(memory_gb * 2**30)
    fixed = 2 * op.shape[0] * getattr(a, "block_size", 1) * itemsize
    settled, fits = {}, {}
    if job.data.batch_size == "auto":
        fit = op.batch_fit(block_width(a), budget, fixed)
        op.rebatch(fit.size)
        log.info("data.batch_size=auto: %s", fit.describe())
        settled["data.batch_size"], fits["batch_size"] = fit.size, fit.as_dict()
    if getattr(a, "product_width", None) == "auto":
        fit = op.width_fit(a.block_size, budget, fixed)
        log.info("algorithm.product_width=auto: %s", fit.describe())
        settled["algorithm.product_width"], fits["product_width"] = fit.size, fit.as_dict()
    return (job.with_settings(settled) if settled else job), fits
