"""The algorithm registry.

One module per solver, each exporting a ``Solver`` as ``SOLVER`` (its typed Hydra schema, run
function, product count, checks and whether it needs the run store). A new solver is its module here
and its yaml in conf/algorithm/: the registry finds the module.
"""

from __future__ import annotations

import sys

from pipeline.errors import InputError
from pipeline.registry import modules_of
from pipeline.solvers.base import Solver


def discover() -> dict[str, Solver]:
    """Name -> ``SOLVER`` of every module of this package that defines one, in module-name order."""
    found = (getattr(module, "SOLVER", None) for module in modules_of(sys.modules[__name__]))
    return {solver.name: solver for solver in found if isinstance(solver, Solver)}


SOLVERS: dict[str, Solver] = discover()
ALGORITHMS = tuple(SOLVERS)


def solver_for(name: str) -> Solver:
    """The registered solver ``name`` (InputError listing the registered ones otherwise)."""
    if name not in SOLVERS:
        raise InputError(f"algorithm.name must be one of {', '.join(SOLVERS)}; got {name!r}")
    return SOLVERS[name]


__all__ = ["ALGORITHMS", "SOLVERS", "Solver", "discover", "solver_for"]
