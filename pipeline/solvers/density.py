"""``algorithm=density``.

Spectral density by stochastic Lanczos quadrature (``pipeline.linalg.density``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scipy.integrate import trapezoid  # np.trapezoid needs numpy >= 2.0

from pipeline.linalg.density import slq_density
from pipeline.linalg.operator import Operator
from pipeline.solvers.base import Solver, default_of
from pipeline.solvers.outcomes import DensityOutcome


@dataclass
class DensityConfig:
    """``algorithm=density``: SLQ probes and Lanczos steps."""

    name: str = "density"
    num_probes: int = default_of(slq_density, "num_probes")
    num_steps: int = default_of(slq_density, "num_steps")


def run(
    a: Any, op: Operator, *, seed: int, store: Any = None, problem: dict | None = None
) -> DensityOutcome:
    """The density, and tr H = D * integral of x phi(x) dx from it."""
    density = slq_density(op, a.num_probes, a.num_steps, seed=seed)
    trace = float(trapezoid(density.grid * density.density, density.grid)) * op.shape[0]
    return DensityOutcome(density.matvecs, density, trace)


def matvecs(a: Any, dim: int) -> tuple[int, str]:
    """The products the solver makes: probes x steps."""
    return a.num_probes * a.num_steps, "num_probes x num_steps"


SOLVER = Solver("density", DensityConfig, run, matvecs)
