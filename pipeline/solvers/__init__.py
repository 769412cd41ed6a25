"""The algorithm registry: one module per solver, each exporting a ``Solver`` (its typed Hydra
schema, run function, product count, checks and whether it needs the run store)."""

from __future__ import annotations

from typing import Any

from pipeline.errors import InputError
from pipeline.linalg.operator import Operator
from pipeline.solvers import density, lanczos, power, seigh, sketch, trace
from pipeline.solvers.base import Solver

SOLVERS: dict[str, Solver] = {module.SOLVER.name: module.SOLVER for module in (lanczos, power, trace, density, sketch, seigh)}
ALGORITHMS = tuple(SOLVERS)


def solver_for(name: str) -> Solver:
    """The registered solver ``name`` (InputError listing the registered ones otherwise)."""
    if name not in SOLVERS:
        raise InputError(f"algorithm.name must be one of {', '.join(ALGORITHMS)}; got {name!r}")
    return SOLVERS[name]


def run_algorithm(cfg: Any, op: Operator, store: Any = None, problem: dict | None = None) -> dict[str, Any]:
    """The configured algorithm's results record: eigenvalues/residuals (eigensolvers), estimates
    (trace, sketch) or a density, ``matvecs``, plus ``eigenvectors`` (not serialised) and ``extra``."""
    return solver_for(cfg.algorithm.name).run(cfg.algorithm, op, seed=cfg.seed, store=store, problem=problem)


__all__ = ["ALGORITHMS", "SOLVERS", "Solver", "run_algorithm", "solver_for"]
