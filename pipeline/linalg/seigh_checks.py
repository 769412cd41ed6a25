"""SEIGH's last stage.

A-posteriori residuals and Frobenius error estimate of the recovered pairs, or their refinement by
block Lanczos started from them, and the honest convergence flags.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.linalg.aposteriori import as_dict, frobenius_error, pair_residuals
from pipeline.linalg.lanczos import lanczos, order_by
from pipeline.linalg.operator import Operator
from pipeline.linalg.result import EigResult
from pipeline.store.protocol import StoredMatrix


def check_and_refine(
    op: Operator,
    V_store: Any,
    eigenvalues: torch.Tensor,
    *,
    residuals: bool,
    error_test_vectors: int,
    error_seed: int,
    refine_tol: float | None,
    tol: float,
    block_size: int,
    info: dict[str, Any],
) -> EigResult:
    """The pairs with their relative residuals, refined to ``refine_tol`` when set.

    The pairs (eigenvalues (k,), V_store (D, k), rewritten when refined) with their relative
    residuals ||H v - lambda v|| / |lambda| (k products, NaN when not computed), refined until every
    residual is below ``refine_tol`` when it is set, and q = ``error_test_vectors`` more products on
    the Frobenius error estimate. ``converged``: residual <= refine_tol (else tol). These checks
    hold the D x k eigenvectors in memory (at the products' precision; float64 to refine).
    ``matvecs`` counts the products made here.
    """
    before = op.matvecs
    k = len(eigenvalues)
    if refine_tol is not None:
        V = torch.from_numpy(np.asarray(V_store[:]))  # Lanczos's float64 start
    elif residuals or error_test_vectors:
        V = read_at(V_store, op.dtype)  # the products' precision: half the memory for float32
    res = torch.full((k,), float("nan"), dtype=torch.float64)
    if refine_tol is not None:
        refined = lanczos(op, k, tol=refine_tol, start=V.to(op.device), block_size=k, ncv=3 * k)
        order = order_by(refined.eigenvalues, "LM")
        eigenvalues, V, res = (
            refined.eigenvalues[order],
            refined.eigenvectors[:, order].cpu(),
            refined.residuals[order],
        )
        V_store[:] = V.numpy()
        info["refine_matvecs"] = refined.matvecs
    elif residuals:
        res = pair_residuals(op, eigenvalues, V.to(op.device), block_size)
    if error_test_vectors:
        info["frobenius_error"] = as_dict(
            frobenius_error(
                op, eigenvalues, V.to(op.device), error_test_vectors, error_seed, block_size
            )
        )
    tol = refine_tol if refine_tol is not None else tol
    return EigResult(
        eigenvalues=eigenvalues,
        eigenvectors=StoredMatrix(V_store),
        residuals=res,
        matvecs=op.matvecs - before,
        converged=res <= tol,
        info=info,
    )


def read_at(stored: Any, dtype: torch.dtype) -> torch.Tensor:
    """The (D, k) array ``stored`` as one tensor of ``dtype``, read a chunk of rows at a time.

    No float64 copy of the whole is made on the way (4 GB at D = 50M, k = 10); a Zarr array is read
    by its own chunks (each decoded once), anything else in blocks of 2^18 rows.
    """
    rows = getattr(stored, "chunks", (1 << 18,))[0]
    out = torch.empty(stored.shape, dtype=dtype)
    for start in range(0, stored.shape[0], rows):
        out[start : start + rows] = torch.from_numpy(np.asarray(stored[start : start + rows]))
    return out


def unconverged_advice(refine_tol: float | None) -> str:
    """What to do about pairs that missed the tolerance."""
    if refine_tol is not None:
        return (
            "refinement stopped at its budget: raise algorithm.refine_tol or the sketch size "
            "(algorithm.outer/inner)"
        )
    return (
        "these eigenvalues may be far off: set algorithm.refine_tol (e.g. 1e-3) to refine them "
        "with Lanczos, or raise "
        "algorithm.outer/inner"
    )
