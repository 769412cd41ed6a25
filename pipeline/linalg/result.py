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

    eigenvalues (k,) float64, sorted in the requested order; eigenvectors (D, k): a torch tensor
    from the Krylov solvers, a ``StoredMatrix`` (read by row blocks, in memory or on disk) from
    SEIGH, whatever its store; residuals (k,) = ||H v - lambda v|| / |lambda|;
    matvecs: operator-vector products spent; converged (k,) bool; info: algorithm specifics.
    """

    eigenvalues: torch.Tensor
    eigenvectors: Any
    residuals: torch.Tensor
    matvecs: int
    converged: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def warn_unconverged(self, algorithm: str, tol: float, advice: str) -> None:
        """Log one WARNING sentence for the pairs whose residual misses ``tol``.

        Log one WARNING sentence for the pairs whose residual misses ``tol`` (or was not computed):
        how many, the worst, the cause and the fix (``advice``); the per-pair residuals at DEBUG.
        """
        residuals, converged = self.residuals.tolist(), self.converged.tolist()
        missed = [(i, r) for i, (r, ok) in enumerate(zip(residuals, converged)) if not ok]
        if not missed:
            return
        computed = [(r, i) for i, r in missed if r == r]
        worst = (
            f"worst {max(computed)[0]:.2g} at #{max(computed)[1]}"
            if computed
            else "residuals not computed"
        )
        unknown = len(missed) - len(computed)
        log.warning(
            "%s: %d of %d eigenpairs missed the relative residual tol=%g (%s%s); %s",
            algorithm,
            len(missed),
            len(converged),
            tol,
            worst,
            f", {unknown} not computed" if computed and unknown else "",
            advice,
        )
        log.debug(
            "%s residuals by pair: %s",
            algorithm,
            ", ".join(f"#{i} {r:.3g}" for i, r in enumerate(residuals)),
        )


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
    """Eigenvalues of the sketch S^T H S and its trace.

    Eigenvalues (sorted by |lambda|) of the sketch S^T H S and its trace (an estimate of tr H).
    """

    eigenvalues: torch.Tensor
    trace: float
    matvecs: int
