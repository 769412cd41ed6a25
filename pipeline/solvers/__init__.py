"""The algorithm registry: one module per solver, each exporting a ``Solver`` (its typed Hydra
schema, run function, product count, checks and whether it needs the run store)."""

from __future__ import annotations

from pipeline.errors import InputError
from pipeline.solvers import density, lanczos, power, seigh, sketch, trace
from pipeline.solvers.base import Solver

SOLVERS: dict[str, Solver] = {module.SOLVER.name: module.SOLVER for module in (lanczos, power, trace, density, sketch, seigh)}
ALGORITHMS = tuple(SOLVERS)


def solver_for(name: str) -> Solver:
    """The registered solver ``name`` (InputError listing the registered ones otherwise)."""
    if name not in SOLVERS:
        raise InputError(f"algorithm.name must be one of {', '.join(ALGORITHMS)}; got {name!r}")
    return SOLVERS[name]


__all__ = ["ALGORITHMS", "SOLVERS", "Solver", "solver_for"]
