"""The sketch S^T H S with trace-preserving Rademacher S (E[S S^T] = I)."""

from __future__ import annotations

import math

import torch

from pipeline.linalg.lanczos import order_by
from pipeline.linalg.operator import Operator
from pipeline.linalg.probes import apply_in_blocks
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.result import SketchResult
from pipeline.linalg.validation import check_k


def sketch_eigs(
    op: Operator, sketch_size: int, seed: int = 0, block_size: int = 32
) -> SketchResult:
    """Eigenvalues (by |lambda|) of the sketch M = S^T H S and its trace.

    S (D, d) has entries +-d^(-1/2), so E[S S^T] = I and tr(M) is an unbiased estimate of tr(H);
    the eigenvalues of M describe the spectrum as seen through d random directions.

    Args:
        op: The symmetric operator H (D, D).
        sketch_size: d, the random directions (d products), d < D.
        seed: Seed of S.
        block_size: Columns per block product.

    Returns:
        SketchResult: eigenvalues (d,) by |lambda|, the trace estimate tr(M) and matvecs.

    Raises:
        InputError: sketch_size out of range.
    """
    check_k(op, sketch_size, "sketch_size")
    before = op.matvecs
    S = random_columns(
        "rademacher", seed, op.shape[0], range(sketch_size), device=op.device
    ) / math.sqrt(sketch_size)
    M = (S.T @ apply_in_blocks(op, S, block_size)).cpu()
    eigenvalues = torch.linalg.eigvalsh((M + M.T) / 2)
    return SketchResult(
        eigenvalues[order_by(eigenvalues, "LM")], float(torch.trace(M)), op.matvecs - before
    )
