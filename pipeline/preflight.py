"""Checks of a composed config that need no model, data or Ray.

They run before anything starts, so a bad value costs no cluster start-up and gives a one-line
reason (exit 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import CLUSTER_MODES
from pipeline.curvature import CURVATURES
from pipeline.data import NAMES
from pipeline.errors import InputError, one_of
from pipeline.models import ZOO
from pipeline.problem import DTYPES
from pipeline.tracking import TRACKERS

if TYPE_CHECKING:
    from pipeline.job import Job

TASKS = ("eigen", "reproduce", "plan", "layerwise")


def check_job(job: Job) -> None:
    """Raise InputError naming the setting and its allowed values for the first bad one."""
    a, cluster, data = job.algorithm, job.cluster, job.data
    one_of("task", job.task, TASKS)
    one_of("cluster.mode", cluster.mode, CLUSTER_MODES)
    one_of("dtype", job.dtype, tuple(DTYPES))
    one_of("model.name", job.model.name, (*ZOO, "target"))
    one_of("data.name", data.name, NAMES)
    one_of("curvature.kind", job.curvature.kind, tuple(CURVATURES))
    if job.output.tracker is not None:
        one_of("output.tracker", job.output.tracker, TRACKERS)
    one_of(
        "curvature.product_mode",
        job.curvature.product_mode,
        ("auto", *CURVATURES[job.curvature.kind].PRODUCT_MODES),
    )
    for name in ("k", "block_size", "product_width"):
        value = getattr(a, name, 1)
        if isinstance(value, int) and value < 1:  # "auto" and other strings: the solver's check
            raise InputError(f"algorithm.{name} must be a positive integer, got {value}")
    batch = data.batch_size
    if batch != "auto" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise InputError(f"data.batch_size must be a positive integer or 'auto', got {batch!r}")
    if data.subset is not None and data.subset < 1:
        raise InputError(
            "data.subset must be a positive sample count (or null for all samples), got "
            f"{data.subset}"
        )
    if getattr(a, "tol", None) is not None and not a.tol > 0:
        raise InputError(
            f"algorithm.tol must be a positive relative residual such as 1e-3, got {a.tol}"
        )
    job.solver.check(a)
    if cluster.mode != "none" and cluster.num_workers is not None and cluster.num_workers < 1:
        raise InputError(
            f"cluster.num_workers must be at least 1, got {cluster.num_workers} (cluster=none runs "
            "in this process)"
        )
    for key in ("connect_timeout_s", "call_timeout_s"):
        if getattr(cluster, key) <= 0:
            raise InputError(f"cluster.{key} must be positive, got {getattr(cluster, key)}")
