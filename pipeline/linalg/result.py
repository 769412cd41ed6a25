"""Result records returned by the algorithms."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

log = logging.getLogger("pipeline.linalg")


@dataclass
class EigResult:
    """Eigenpairs of an operator.

    eigenvalues (k,) float64, sorted in the requested order; eigenvectors (D, k), a torch tensor
    or, for out-of-core SEIGH runs, a Zarr array; residuals (k,) = ||H v - lambda v|| / |lambda|;
    matvecs: operator-vector products spent; converged (k,) bool; info: algorithm specifics.
    """

    eigenvalues: torch.Tensor
    eigenvectors: Any
    residuals: torch.Tensor
    matvecs: int
    converged: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def warn_unconverged(self, algorithm: str, tol: float, advice: str) -> None:
        """Log a WARNING naming the pairs whose residual misses ``tol`` (or was not computed)."""
        missed = [(i, float(r)) for i, (r, ok) in enumerate(zip(self.residuals.tolist(), self.converged.tolist())) if not ok]
        if missed:
            pairs = ", ".join(f"#{i} ({'not computed' if r != r else f'{r:.2g}'})" for i, r in missed[:10])
            log.warning("%s: %d of %d eigenpairs did not reach the relative residual tol=%g: %s%s; %s", algorithm, len(missed),
                        len(self.converged), tol, pairs, " ..." if len(missed) > 10 else "", advice)


@dataclass
class TraceEstimate:
    """Stochastic trace estimate with its standard error and the per-probe samples."""

    estimate: float
    stderr: float
    matvecs: int
    samples: np.ndarray


@dataclass
class SpectralDensity:
    """Smoothed spectral density phi(x) = (1/D) sum_i delta(x - lambda_i) * N(0, sigma^2) on a grid.

    nodes and weights (P, m) are the per-probe Gauss quadrature rules it was built from.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    matvecs: int


@dataclass
class SketchResult:
    """Eigenvalues (sorted by |lambda|) of the sketch S^T H S and its trace (an estimate of tr H)."""

    eigenvalues: torch.Tensor
    trace: float
    matvecs: int
