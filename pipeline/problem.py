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

if TYPE_CHECKING:
    from pipeline.curvature.memory_fit import WidthFit
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

    def width_fit(self, widest: int, budget_bytes: int | None, fixed_bytes: int) -> WidthFit:
        """The widest product (at most ``widest`` columns) every worker's memory holds."""


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
