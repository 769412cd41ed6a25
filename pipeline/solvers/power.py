"""``algorithm=power``.

Deflated power iteration, the PyHessian baseline (``pipeline.linalg.power``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.linalg.operator import Operator
from pipeline.linalg.power import power_iteration
from pipeline.solvers.base import EigenConfig, Solver, default_of
from pipeline.solvers.outcomes import EigenOutcome


@dataclass
class PowerConfig(EigenConfig):
    """``algorithm=power``: k, tolerance and iterations per pair."""

    name: str = "power"
    k: int = 5
    tol: float = default_of(power_iteration, "tol")
    max_iter: int = default_of(power_iteration, "max_iter")


def run(
    a: Any, op: Operator, *, seed: int, store: Any = None, problem: dict | None = None
) -> EigenOutcome:
    """Top-k eigenpairs of ``op`` by deflated power iteration."""
    return EigenOutcome.of(power_iteration(op, a.k, tol=a.tol, max_iter=a.max_iter, seed=seed), {})


def matvecs(a: Any, dim: int) -> tuple[int, str]:
    """The products the solver makes at most: k x max_iter."""
    return a.k * a.max_iter, "upper bound: k x max_iter"


SOLVER = Solver("power", PowerConfig, run, matvecs)
