"""``algorithm=trace``: Hutch++ or Hutchinson trace estimates (``pipeline.linalg.trace``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline.errors import one_of
from pipeline.linalg.operator import Operator
from pipeline.linalg.trace import hutchinson_trace, hutchpp_trace
from pipeline.solvers.base import Solver, default_of
from pipeline.solvers.outcomes import TraceOutcome

log = logging.getLogger("pipeline.solvers")
METHODS = {"hutchpp": hutchpp_trace, "hutchinson": hutchinson_trace}


@dataclass
class TraceConfig:
    """``algorithm=trace``: the estimator and its product budget."""

    name: str = "trace"
    method: str = "hutchpp"  # hutchpp | hutchinson
    num_matvecs: int = 96
    block_size: int = default_of(hutchpp_trace, "block_size")


def run(
    a: Any, op: Operator, *, seed: int, store: Any = None, problem: dict | None = None
) -> TraceOutcome:
    """tr(op) by Hutch++ or Hutchinson, with its standard error."""
    estimate = METHODS[a.method](op, a.num_matvecs, seed=seed, block_size=a.block_size)
    log.info(
        "trace estimate %.6g +- %.2g (%s, %d products)",
        estimate.estimate,
        estimate.stderr,
        a.method,
        estimate.matvecs,
    )
    return TraceOutcome(estimate.matvecs, estimate.estimate, estimate.stderr)


def matvecs(a: Any, dim: int) -> tuple[int, str]:
    """The products the solver makes: num_matvecs."""
    return a.num_matvecs, "num_matvecs"


def check(a: Any) -> None:
    """Refuse an unknown estimator."""
    one_of("algorithm.method", a.method, tuple(METHODS))


SOLVER = Solver("trace", TraceConfig, run, matvecs, check)
