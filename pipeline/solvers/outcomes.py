"""What a solver's run yields for the run directory: a typed outcome per kind of answer.

Each says what it adds to results.json (``record()``: JSON-able entries) and which arrays it
writes next to it (``artifacts()``: file name -> array, or -> dict of arrays for an ``.npz``);
``spectrum`` and ``curve`` are what the plots draw. ``pipeline.outputs`` writes what it is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.linalg.result import EigResult, SpectralDensity
from pipeline.store.protocol import StoredMatrix

log = logging.getLogger("pipeline.solvers")
# a stored (D, k) eigenvector matrix up to 1 GiB is also written as eigenvectors.npy
VECTORS_NPY_MAX_BYTES = 1 << 30


@dataclass
class Outcome:
    """Any solver's outcome: ``matvecs`` operator products spent."""

    matvecs: int

    def record(self) -> dict[str, Any]:
        """The entries this outcome adds to results.json."""
        return {"matvecs": self.matvecs}

    def artifacts(self) -> dict[str, Any]:
        """Arrays to write in the run dir: ``name.npy`` -> array, ``name.npz`` -> {key: array}.

        A ``StoredMatrix`` for a ``.npy`` is written by row blocks.
        """
        return {}

    @property
    def spectrum(self) -> tuple[list[float], list[float], Any] | None:
        """(eigenvalues, relative residuals, convergence history or None) to plot, or None."""
        return None

    @property
    def curve(self) -> SpectralDensity | None:
        """A spectral density to plot, or None."""
        return None


@dataclass
class EigenOutcome(Outcome):
    """Top-k eigenpairs.

    Eigenvalues (k,), relative residuals (k,), converged flags (k,), the eigenvectors (D, k) as a
    tensor or a stored matrix, and the solver's ``extra`` details.
    """

    eigenvalues: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)
    eigenvectors: torch.Tensor | StoredMatrix | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, result: EigResult, extra: dict[str, Any]) -> EigenOutcome:
        """The outcome of an eigensolver's result (its top eigenvalues and residuals logged)."""
        log.info("top eigenvalues %s", np.array2string(result.eigenvalues.numpy(), precision=5))
        log.info("relative residuals %s", np.array2string(result.residuals.numpy(), precision=2))
        return cls(
            result.matvecs,
            result.eigenvalues.tolist(),
            result.residuals.tolist(),
            result.converged.tolist(),
            result.eigenvectors,
            extra,
        )

    def record(self) -> dict[str, Any]:
        """The outcome's entries in results.json."""
        return {
            "eigenvalues": self.eigenvalues,
            "residuals": self.residuals,
            "converged": self.converged,
            "all_converged": all(self.converged),
            "matvecs": self.matvecs,
            "extra": self.extra,
        }

    def artifacts(self) -> dict[str, Any]:
        """The arrays written beside results.json (eigenvectors where they fit)."""
        arrays: dict[str, Any] = {"eigenvalues.npy": np.asarray(self.eigenvalues)}
        vectors = self.eigenvectors
        if isinstance(vectors, torch.Tensor):
            arrays["eigenvectors.npy"] = vectors.cpu().numpy()
        elif (
            isinstance(vectors, StoredMatrix)
            and int(np.prod(vectors.shape)) * vectors.dtype.itemsize <= VECTORS_NPY_MAX_BYTES
        ):
            arrays["eigenvectors.npy"] = vectors  # written by row blocks
        return arrays

    @property
    def spectrum(self) -> tuple[list[float], list[float], Any]:
        """Eigenvalues, residuals and the convergence history, for the plots."""
        return self.eigenvalues, self.residuals, self.extra.get("history")


@dataclass
class TraceOutcome(Outcome):
    """A trace estimate with its standard error."""

    trace: float = 0.0
    trace_stderr: float = 0.0

    def record(self) -> dict[str, Any]:
        """The outcome's entries in results.json."""
        return {"trace": self.trace, "trace_stderr": self.trace_stderr, "matvecs": self.matvecs}


@dataclass
class DensityOutcome(Outcome):
    """A spectral density (grid, density, quadrature nodes and weights) and the trace it implies."""

    density: SpectralDensity | None = None
    trace: float = 0.0

    def record(self) -> dict[str, Any]:
        """The outcome's entries in results.json."""
        return {"matvecs": self.matvecs, "trace": self.trace}

    def artifacts(self) -> dict[str, Any]:
        """density.npz: the grid and the density, and the nodes and weights."""
        d = self.density
        return {
            "density.npz": {
                "grid": d.grid,
                "density": d.density,
                "nodes": d.nodes,
                "weights": d.weights,
            }
        }

    @property
    def curve(self) -> SpectralDensity | None:
        """The density, for the plots."""
        return self.density


@dataclass
class SketchOutcome(Outcome):
    """Eigenvalues and trace of a sketch S^T H S (no eigenvectors, no residuals)."""

    eigenvalues: list[float] = field(default_factory=list)
    trace: float = 0.0

    def record(self) -> dict[str, Any]:
        """The outcome's entries in results.json."""
        return {"eigenvalues": self.eigenvalues, "trace": self.trace, "matvecs": self.matvecs}

    def artifacts(self) -> dict[str, Any]:
        """eigenvalues.npy: the sketch's eigenvalues."""
        return {"eigenvalues.npy": np.asarray(self.eigenvalues)}
