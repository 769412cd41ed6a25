"""Thick-restart (block) Lanczos with full reorthogonalisation.

Thick-restart (block) Lanczos with full reorthogonalisation, converged to a residual tolerance.
"""

from __future__ import annotations

import logging
import time

import torch

from pipeline import tracking
from pipeline.errors import InputError
from pipeline.linalg.block_width import choose_block_width
from pipeline.linalg.krylov import KrylovBasis
from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.result import EigResult
from pipeline.linalg.validation import check_k, check_positive, check_tol, check_which

log = logging.getLogger(__name__)


def order_by(theta: torch.Tensor, which: str) -> torch.Tensor:
    """Indices sorting eigenvalues by ``which``: LM |lambda| desc, LA lambda desc, SA lambda asc."""
    key = {"LM": -theta.abs(), "LA": -theta, "SA": theta}[which]
    return torch.argsort(key, stable=True)


def lanczos(
    op: Operator,
    k: int,
    tol: float = 1e-3,
    which: str = "LM",
    ncv: int | None = None,
    block_size: int | str = "auto",
    max_matvecs: int | None = None,
    seed: int = 0,
    start: torch.Tensor | None = None,
) -> EigResult:
    """Top-k eigenpairs of the symmetric operator ``op`` by thick-restart block Lanczos.

    The basis is kept orthonormal in float64 by two Gram-Schmidt passes; the projected matrix
    T = V^T H V comes from the coefficients, so the Ritz residuals ||H v - theta v|| are exact up to
    rounding and need no extra products. They are checked after every block product, so no product
    is spent once every requested pair has ||H v - lambda v|| / |lambda| <= tol; when the basis is
    full, a restart keeps the best k + (ncv - k)/2 Ritz vectors.

    Args:
        op: The symmetric operator H (D, D).
        k: How many eigenpairs, 1 <= k < D.
        tol: Relative residual ||H v - lambda v|| / |lambda| every pair must meet.
        which: ``"LM"`` (largest magnitude), ``"LA"`` (largest) or ``"SA"`` (smallest algebraic).
        ncv: Basis size before a restart (default max(2k + 2b, k + 20)).
        block_size: Products b per pass over the data; ``"auto"`` picks b where the operator's
            timed block products repay the extra products a block needs
            (``pipeline.linalg.block_width``), else 1 (or the width of ``start``).
        max_matvecs: Product budget (default: unbounded up to the basis limits).
        seed: Seed of the Gaussian starting block.
        start: Starting vector (D,) or block (D, b) in place of the seeded one.

    Returns:
        EigResult: eigenvalues (k,) in ``which`` order, eigenvectors (D, k), residuals (k,),
        matvecs and ``converged`` per pair (False where the budget ran out first).

    Raises:
        InputError: k, tol, which or block_size out of range.

    Over 60 lines: the settings, then the restart loop with its stopping rule, read as the
    algorithm.
    """
    check_k(op, k)
    check_tol(tol)
    check_which(which)
    dim = op.shape[0]
    # about what the top k take to tol 1e-3 (BENCHMARKS.md): a low estimate, so one-off costs stay
    # rare
    op.expect(3 * k)
    if block_size == "auto":
        block_size = (
            start.reshape(dim, -1).shape[1] if start is not None else choose_block_width(op, k)
        )
    check_positive(block_size, "block_size")
    ncv = min(dim, ncv if ncv is not None else max(2 * k + 2 * block_size, k + 20))
    if ncv < k + block_size and ncv < dim:
        raise InputError(f"ncv={ncv} must be at least k + block_size = {k + block_size}")
    max_matvecs = max_matvecs if max_matvecs is not None else max(50 * ncv, 1000)
    if start is None:
        start = random_columns("gaussian", seed, dim, range(block_size), device=op.device)
    basis = KrylovBasis(op, start.reshape(dim, -1), capacity=min(dim, ncv + block_size), seed=seed)

    matvecs_before = op.matvecs
    started = time.monotonic()
    restarts = 0
    history = []
    while True:
        theta, S, relative, order = _expand_until_converged(
            basis, ncv, k, which, tol, budget=matvecs_before + max_matvecs
        )
        wanted = order[:k]
        spent = op.matvecs - matvecs_before
        converged = relative[wanted] <= tol
        history.append((spent, float(relative[wanted].max())))
        elapsed = time.monotonic() - started
        log.info(
            "lanczos restart %d: %d of at most %d products (%.3g/s, %.0f s), %d of %d pairs "
            "converged, worst residual %.2e "
            "(tol %.0e)",
            restarts,
            spent,
            max_matvecs,
            spent / max(elapsed, 1e-9),
            elapsed,
            int(converged.sum()),
            k,
            history[-1][1],
            tol,
        )
        tracking.scalar("lanczos/worst_residual", history[-1][1], step=spent)
        tracking.scalar("lanczos/converged_pairs", int(converged.sum()), step=spent)
        if bool(converged.all()) or basis.n >= dim or spent >= max_matvecs:
            break
        keep = order[: max(k, min(basis.n - block_size, k + (ncv - k) // 2))]
        basis.restart(theta[keep], S[:, keep])
        restarts += 1

    result = EigResult(
        eigenvalues=theta[wanted].clone(),
        eigenvectors=basis.vectors(S[:, wanted]),
        residuals=relative[wanted].clone(),
        matvecs=spent,
        converged=converged,
        info={
            "history": history,
            "restarts": restarts,
            "ncv": ncv,
            "block_size": block_size,
            "which": which,
            "tol": tol,
        },
    )
    result.warn_unconverged(
        "lanczos", tol, f"the budget of {spent} products was spent: raise max_matvecs or ncv"
    )
    return result


def _expand_until_converged(
    basis: KrylovBasis, ncv: int, k: int, which: str, tol: float, budget: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expand ``basis`` block by block until the top k pairs converge.

    Expand ``basis`` block by block up to ``ncv`` vectors, checking the Ritz residuals after every
    block (an eigh of the small projected matrix), and stop as soon as the top k pairs in ``which``
    order meet ``tol`` or the operator's product count reaches ``budget``.

    Returns (theta, S, relative residuals, order) of the last Rayleigh-Ritz step.
    """
    op = basis.op
    while True:
        columns = basis.next_block(ncv)
        if columns is not None and op.matvecs < budget:
            basis.accept(columns, op @ basis.rows[columns].T.to(op.dtype))
            if basis.n < min(k, basis.capacity) and basis.next_block(ncv) is not None:
                continue
        theta, S, residual_norms = basis.ritz()
        order = order_by(theta, which)
        scale = torch.clamp(
            theta.abs(), min=max(torch.finfo(torch.float64).eps * float(theta.abs().max()), 1e-300)
        )
        relative = residual_norms / scale
        if columns is None or op.matvecs >= budget or bool((relative[order[:k]] <= tol).all()):
            return theta, S, relative, order
