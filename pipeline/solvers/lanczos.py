"""``algorithm=lanczos``: thick-restart block Lanczos (``pipeline.linalg.lanczos``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from pipeline.errors import InputError, one_of
from pipeline.linalg.lanczos import lanczos
from pipeline.linalg.operator import Operator
from pipeline.linalg.validation import WHICH
from pipeline.solvers.base import EigenConfig, Solver, block_width, default_of
from pipeline.solvers.outcomes import EigenOutcome


@dataclass
class LanczosConfig(EigenConfig):
    """``algorithm=lanczos``: k, tolerance, order, block size and basis size."""

    name: str = "lanczos"
    k: int = 20
    tol: float = default_of(lanczos, "tol")
    which: str = default_of(lanczos, "which")  # LM | LA | SA
    # "auto" (timed, see pipeline.linalg.block_width) or an integer
    block_size: Any = default_of(lanczos, "block_size")
    ncv: Optional[int] = None  # basis size; null: max(2k + 2 block_size, k + 20)
    max_matvecs: Optional[int] = None  # product budget; null: max(50 ncv, 1000)


def run(
    a: Any, op: Operator, *, seed: int, store: Any = None, problem: dict | None = None
) -> EigenOutcome:
    """Top-k eigenpairs of ``op`` by thick-restart Lanczos."""
    result = lanczos(
        op,
        a.k,
        tol=a.tol,
        which=a.which,
        ncv=a.ncv,
        block_size=a.block_size,
        max_matvecs=a.max_matvecs,
        seed=seed,
    )
    return EigenOutcome.of(
        result, {"history": result.info["history"], "restarts": result.info["restarts"]}
    )


def matvecs(a: Any, dim: int) -> tuple[int, str]:
    """The products the solver makes: about three restarts of ``ncv``."""
    ncv = a.ncv or max(2 * a.k + 2 * block_width(a), a.k + 20)
    return min(dim, 3 * ncv), f"about 3 restarts of ncv={ncv} (at most max_matvecs)"


def check(a: Any) -> None:
    """Refuse an unknown ``which`` or a block size that is neither auto nor an integer."""
    one_of("algorithm.which", a.which, WHICH)
    if a.block_size != "auto" and (
        isinstance(a.block_size, bool) or not isinstance(a.block_size, int)
    ):
        raise InputError(
            f"algorithm.block_size must be 'auto' or a positive integer, got {a.block_size!r}"
        )


SOLVER = Solver("lanczos", LanczosConfig, run, matvecs, check)
