"""Checks of a composed config that need no model, data or Ray: they run before anything
starts, so a bad value costs no cluster start-up and gives a one-line reason (exit 2)."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.algorithms import ALGORITHMS
from pipeline.problem import DTYPES, MODES

TASKS = ("eigen", "reproduce")


def check_config(cfg: DictConfig) -> None:
    """Raise ValueError naming the setting and its allowed values for the first bad one."""
    a, cluster = cfg.algorithm, cfg.cluster
    _one_of("task", cfg.task, TASKS)
    _one_of("algorithm.name", a.name, ALGORITHMS)
    _one_of("cluster.mode", cluster.mode, MODES)
    _one_of("dtype", cfg.dtype, tuple(DTYPES))
    for name in ("k", "block_size"):
        if a.get(name, 1) < 1:
            raise ValueError(f"algorithm.{name} must be a positive integer, got {a[name]}")
    for name in ("tol", "refine_tol"):
        if a.get(name) is not None and not a[name] > 0:
            raise ValueError(f"algorithm.{name} must be a positive relative residual such as 1e-3, got {a[name]}")
    if not a.get("memory_gb", 1) > 0:
        raise ValueError(f"algorithm.memory_gb (row-block budget of SEIGH's post-processing) must be positive, got {a.memory_gb}")
    if cluster.mode != "none" and cluster.num_workers < 1:
        raise ValueError(f"cluster.num_workers must be at least 1, got {cluster.num_workers} (cluster=none runs in this process)")
    if cluster.connect_timeout_s <= 0:
        raise ValueError(f"cluster.connect_timeout_s must be positive, got {cluster.connect_timeout_s}")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
