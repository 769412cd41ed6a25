"""Checks of a composed config that need no model, data or Ray: they run before anything
starts, so a bad value costs no cluster start-up and gives a one-line reason (exit 2)."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.curvature import CURVATURES
from pipeline.data import NAMES
from pipeline.errors import InputError, one_of
from pipeline.models import ZOO
from pipeline.problem import DTYPES, MODES
from pipeline.solvers import solver_for
from pipeline.tracking import TRACKERS

TASKS = ("eigen", "reproduce", "plan")


def check_config(cfg: DictConfig) -> None:
    """Raise ValueError naming the setting and its allowed values for the first bad one."""
    a, cluster = cfg.algorithm, cfg.cluster
    one_of("task", cfg.task, TASKS)
    one_of("cluster.mode", cluster.mode, MODES)
    one_of("dtype", cfg.dtype, tuple(DTYPES))
    one_of("model.name", cfg.model.name, (*ZOO, "target"))
    one_of("data.name", cfg.data.name, NAMES)
    one_of("curvature.kind", cfg.curvature.kind, tuple(CURVATURES))
    if cfg.output.tracker is not None:
        one_of("output.tracker", cfg.output.tracker, TRACKERS)
    one_of("curvature.hvp_mode", cfg.curvature.hvp_mode, ("auto", *CURVATURES[cfg.curvature.kind].PRODUCT_MODES))
    for name in ("k", "block_size"):
        if isinstance(a.get(name, 1), int) and a.get(name, 1) < 1:  # "auto" and other strings: the solver's check
            raise InputError(f"algorithm.{name} must be a positive integer, got {a[name]}")
    if cfg.data.batch_size < 1:
        raise InputError(f"data.batch_size must be a positive integer, got {cfg.data.batch_size}")
    if cfg.data.subset is not None and cfg.data.subset < 1:
        raise InputError(f"data.subset must be a positive sample count (or null for all samples), got {cfg.data.subset}")
    if a.get("tol") is not None and not a.tol > 0:
        raise InputError(f"algorithm.tol must be a positive relative residual such as 1e-3, got {a.tol}")
    solver_for(a.name).check(a)
    if cluster.mode != "none" and cluster.num_workers is not None and cluster.num_workers < 1:
        raise InputError(f"cluster.num_workers must be at least 1, got {cluster.num_workers} (cluster=none runs in this process)")
    for key in ("connect_timeout_s", "call_timeout_s"):
        if cluster[key] <= 0:
            raise InputError(f"cluster.{key} must be positive, got {cluster[key]}")

