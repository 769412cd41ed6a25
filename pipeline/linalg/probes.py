"""Quadratic forms z^T H z of seeded probe vectors, computed block by block."""

from __future__ import annotations

import torch

from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns


def apply_in_blocks(op: Operator, X: torch.Tensor, block_size: int) -> torch.Tensor:
    """H X (D, m) in passes of ``block_size`` columns, in float64."""
    return torch.cat(
        [(op @ X[:, j : j + block_size].to(op.dtype)).to(torch.float64) for j in range(0, X.shape[1], block_size)],
        dim=1,
    )


def probe_quadratic_forms(
    op: Operator, columns: range, seed: int, kind: str, block_size: int, project_out: torch.Tensor | None = None
) -> torch.Tensor:
    """z_j^T H z_j for the seeded probes z_j (columns of ``random_columns``), optionally with
    z_j replaced by (I - Q Q^T) z_j for an orthonormal ``project_out`` = Q. Shape (len(columns),)."""
    out = []
    for start in range(columns.start, columns.stop, block_size):
        block = columns[start - columns.start : start - columns.start + block_size]
        Z = random_columns(kind, seed, op.shape[0], block, device=op.device)
        if project_out is not None:
            Z -= project_out @ (project_out.T @ Z)
        out.append((Z * apply_in_blocks(op, Z, block_size)).sum(dim=0))
    return torch.cat(out)
