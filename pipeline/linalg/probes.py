"""Quadratic forms z^T H z of seeded probe vectors, computed block by block."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns


def even_blocks(count: int, block_size: int) -> list[slice]:
    """``count`` columns in blocks of nearly equal width (at most ``block_size``).

    ``count`` columns in ceil(count / block_size) blocks of nearly equal width (at most
    ``block_size``): no ragged one-off width at the end (33 in blocks of at most 8: 7, 6, 7, 6, 7).
    """
    blocks = -(-count // block_size)
    edges = [round(i * count / blocks) for i in range(blocks + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def products_by_block(
    op: Operator, X: torch.Tensor, block_size: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (columns, H X[:, columns] in float64) for blocks of ``even_blocks`` (one at a time)."""
    for block in even_blocks(X.shape[1], block_size):
        yield block, (op @ X[:, block].to(op.dtype)).to(torch.float64)


def apply_in_blocks(op: Operator, X: torch.Tensor, block_size: int) -> torch.Tensor:
    """H X (D, m) in passes of at most ``block_size`` columns (``even_blocks``), in float64."""
    out = torch.empty(X.shape[0], X.shape[1], dtype=torch.float64, device=op.device)
    for block, product in products_by_block(op, X, block_size):
        out[:, block] = product  # filled in place: no list of blocks and concatenated copy
    return out


def probe_quadratic_forms(
    op: Operator,
    columns: range,
    seed: int,
    kind: str,
    block_size: int,
    project_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """z_j^T H z_j for the seeded probes z_j: shape (len(columns),).

    z_j^T H z_j for the seeded probes z_j (columns of ``random_columns``), optionally with z_j
    replaced by (I - Q Q^T) z_j for an orthonormal ``project_out`` = Q. Shape (len(columns),).
    """
    out = []
    for block in even_blocks(len(columns), block_size):
        Z = random_columns(kind, seed, op.shape[0], columns[block], device=op.device)
        if project_out is not None:
            Z -= project_out @ (project_out.T @ Z)
        out.append((Z * apply_in_blocks(op, Z, block_size)).sum(dim=0))
    return torch.cat(out)
