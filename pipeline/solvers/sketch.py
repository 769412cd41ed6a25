"""``algorithm=sketch``: eigenvalues and trace of the sketch S^T H S.

``algorithm=sketch``: eigenvalues and trace of the sketch S^T H S (``pipeline.linalg.sketch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.linalg.operator import Operator
from pipeline.linalg.sketch import sketch_eigs
from pipeline.solvers.base import Solver, default_of
from pipeline.solvers.outcomes import SketchOutcome


@dataclass
class SketchConfig:
    """``algorithm=sketch``: the sketch size and block size."""

    name: str = "sketch"
    sketch_size: int = 64
    block_size: int = default_of(sketch_eigs, "block_size")


def run(
    a: Any, op: Operator, *, seed: int, store: Any = None, problem: dict | None = None
) -> SketchOutcome:
    """Eigenvalues and trace of the sketch S^T H S of ``op``."""
    sketch = sketch_eigs(op, a.sketch_size, seed=seed, block_size=a.block_size)
    return SketchOutcome(sketch.matvecs, sketch.eigenvalues.tolist(), sketch.trace)


def matvecs(a: Any, dim: int) -> tuple[int, str]:
    """The products the solver makes: sketch_size."""
    return a.sketch_size, "sketch_size"


SOLVER = Solver("sketch", SketchConfig, run, matvecs)
