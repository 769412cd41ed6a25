"""Power iteration with deflation: the PyHessian baseline (not the recommended path)."""

from __future__ import annotations

import torch

from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.result import EigResult
from pipeline.linalg.validation import check_k, check_positive, check_tol


def power_iteration(
    op: Operator, k: int = 1, tol: float = 1e-3, max_iter: int = 100, seed: int = 0
) -> EigResult:
    """Top-k eigenpairs by |lambda|, one at a time, as PyHessian computes them.

    Each pair iterates v <- H v / ||H v|| with v kept orthogonal to the pairs already found,
    stopping when the Rayleigh quotient changes by less than ``tol`` relatively (PyHessian's
    criterion) or after ``max_iter`` products.

    Args:
        op: The symmetric operator H (D, D).
        k: How many eigenpairs.
        tol: Relative change of the Rayleigh quotient that stops a pair's iteration.
        max_iter: Products per pair at most.
        seed: Seed of the Gaussian starting vectors.

    Returns:
        EigResult: eigenvalues (k,), eigenvectors (D, k), the last iterates' residuals
        ||H v - lambda v|| / |lambda| (k,) and ``converged`` comparing them with ``tol`` (the
        stopping rule says little: the Rayleigh quotient settles long before the vector does).

    Raises:
        InputError: k, tol or max_iter out of range.
    """
    check_k(op, k)
    check_tol(tol)
    check_positive(max_iter, "max_iter")
    dim = op.shape[0]
    found = torch.zeros(dim, 0, dtype=torch.float64, device=op.device)
    values, residuals = [], []
    before = op.matvecs
    for index in range(k):
        v = random_columns("gaussian", seed, dim, [index], device=op.device)[:, 0]
        previous = None
        for iteration in range(max_iter):
            v -= found @ (found.T @ v)
            v /= v.norm()
            Hv = (op @ v.to(op.dtype)).to(torch.float64)
            value = float(v @ Hv)
            done = previous is not None and abs(value - previous) <= tol * (abs(previous) + 1e-6)
            if done or iteration == max_iter - 1:
                break
            previous = value
            v = Hv.clone()
        residuals.append(float((Hv - value * v).norm()) / max(abs(value), 1e-300))
        values.append(value)
        found = torch.cat([found, v[:, None]], dim=1)
    residuals = torch.tensor(residuals, dtype=torch.float64)
    result = EigResult(
        eigenvalues=torch.tensor(values, dtype=torch.float64),
        eigenvectors=found,
        residuals=residuals,
        matvecs=op.matvecs - before,
        converged=residuals <= tol,
        info={
            "tol": tol,
            "criterion": "relative change of the Rayleigh quotient; converged: residual <= tol",
        },
    )
    result.warn_unconverged(
        "power iteration",
        tol,
        "use algorithm=lanczos (converges to tol in far fewer products) or raise max_iter",
    )
    return result
