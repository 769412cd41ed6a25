"""hessian-pipeline: top eigenpairs, trace and spectral density of neural-network curvature.

Subpackages: ``curvature`` (Hessian/GGN/Fisher operators, pure torch), ``linalg`` (Krylov and
sketched algorithms on any operator), ``distributed`` (Ray workers), ``store`` (Zarr run store),
``models``, ``data``, ``analysis``; ``app`` is the Hydra entry point; ``load_run(run_dir)``
reads any run directory back (``pipeline.run_dir``).
"""

from __future__ import annotations

import time
from typing import Any

IMPORTED_AT = time.perf_counter()  # the command line's start, as near as the package sees it
__version__ = "0.1.0"
__all__ = ["load_run"]


def __getattr__(name: str) -> Any:
    """``pipeline.load_run`` without importing numpy, zarr and torch for ``import pipeline``."""
    if name == "load_run":
        from pipeline.run_dir import load_run

        return load_run
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
