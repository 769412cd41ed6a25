"""Checks of a composed config that need no model, data or Ray: they run before anything
starts, so a bad value costs no cluster start-up and gives a one-line reason (exit 2)."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.curvature import CURVATURES
from pipeline.data import NAMES
from pipeline.errors import InputError
from pipeline.linalg.random_matrices import KINDS, ROW_ACCESSIBLE
from pipeline.linalg.validation import WHICH
from pipeline.models import ZOO
from pipeline.problem import DTYPES, MODES
from pipeline.solvers import ALGORITHMS

TASKS = ("eigen", "reproduce", "plan")


def check_config(cfg: DictConfig) -> None:
    """Raise ValueError naming the setting and its allowed values for the first bad one."""
    a, cluster = cfg.algorithm, cfg.cluster
    _one_of("task", cfg.task, TASKS)
    _one_of("algorithm.name", a.name, ALGORITHMS)
    _one_of("cluster.mode", cluster.mode, MODES)
    _one_of("dtype", cfg.dtype, tuple(DTYPES))
    _one_of("model.name", cfg.model.name, (*ZOO, "target"))
    _one_of("data.name", cfg.data.name, NAMES)
    _one_of("curvature.kind", cfg.curvature.kind, tuple(CURVATURES))
    _one_of("curvature.hvp_mode", cfg.curvature.hvp_mode, ("auto", *CURVATURES[cfg.curvature.kind].PRODUCT_MODES))
    for name, allowed in (("which", WHICH), ("outer_kind", KINDS), ("inner_kind", ROW_ACCESSIBLE), ("method", ("hutchinson", "hutchpp"))):
        if name in a:
            _one_of(f"algorithm.{name}", a[name], allowed)
    for name in ("k", "block_size"):
        if a.get(name, 1) < 1:
            raise InputError(f"algorithm.{name} must be a positive integer, got {a[name]}")
    for name in ("tol", "refine_tol", "target_tol"):
        if a.get(name) is not None and not a[name] > 0:
            raise InputError(f"algorithm.{name} must be a positive relative residual such as 1e-3, got {a[name]}")
    if not a.get("growth", 2) > 1:
        raise InputError(f"algorithm.growth (adaptive SEIGH's size factor per step) must be above 1, e.g. 1.5; got {a.growth}")
    if a.get("max_products") is not None and a.max_products < 1:
        raise InputError(f"algorithm.max_products must be a positive product budget (or null), got {a.max_products}")
    if not a.get("memory_gb", 1) > 0:
        raise InputError(f"algorithm.memory_gb (row-block budget of SEIGH's post-processing) must be positive, got {a.memory_gb}")
    if cluster.mode != "none" and cluster.num_workers is not None and cluster.num_workers < 1:
        raise InputError(f"cluster.num_workers must be at least 1, got {cluster.num_workers} (cluster=none runs in this process)")
    if cluster.connect_timeout_s <= 0:
        raise InputError(f"cluster.connect_timeout_s must be positive, got {cluster.connect_timeout_s}")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
