"""What every solver module exports (a ``Solver``) and the fields all eigensolvers share."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from pipeline.linalg.validation import check_k
from pipeline.solvers.outcomes import Outcome

log = logging.getLogger("pipeline.solvers")


@dataclass(frozen=True)
class Solver:
    """One entry of the algorithm registry.

    ``config``: the dataclass schema registered in Hydra's algorithm group as ``<name>_schema``
    (a foreign or ill-typed key fails at composition); ``run(a, op, seed=, store=, problem=)``
    returns its ``Outcome`` (``pipeline.solvers.outcomes``); ``matvecs(a, D)`` the products it will
    spend and what that
    figure means (for the plan); ``check(a)`` refuses bad values before anything starts;
    ``needs_store``: the run keeps its measurements in the Zarr run store; ``cost(a, D, itemsize)``
    its post-processing seconds, store and driver bytes (None: no post-processing, no store);
    ``preflight(a, shape, seed=, store=, problem=)`` the checks that need D (and the store), run
    before any worker starts (default: 1 <= k < D).
    """

    name: str
    config: type
    run: Callable[..., Outcome]
    matvecs: Callable[[Any, int], tuple[int, str]]
    check: Callable[[Any], None] = lambda a: None
    needs_store: bool = False
    cost: Callable[[Any, int, int], dict[str, float]] | None = None
    preflight: Callable[..., None] = lambda a, shape, **_: (
        check_k(shape, a.k) if hasattr(a, "k") else None
    )


@dataclass(frozen=True)
class OperatorShape:
    """Stand-in for the operator in checks that need only its shape (D, D) and dtype."""

    shape: tuple[int, int]
    dtype: Any


def default_of(function: Callable, parameter: str) -> Any:
    """The default of ``function``'s ``parameter``.

    A config field taking a library argument takes its default from the signature, so the two cannot
    disagree.
    """
    return inspect.signature(function).parameters[parameter].default


@dataclass
class EigenConfig:
    """Fields every eigensolver takes: k pairs to relative residual ``tol``."""

    name: str = MISSING
    k: int = 10
    tol: float = 1e-3


def block_width(a: Any) -> int:
    """The product width a solver config asks for.

    ``product_width`` where set (SEIGH's products split its store blocks), else ``block_size``
    (``"auto"`` plans as 1).
    """
    width = getattr(a, "product_width", None) or getattr(a, "block_size", 1)
    return 1 if width == "auto" else width
