"""Seeded random test matrices whose column j depends only on (seed, j).

Columns never depend on the block size or the worker count, so a sketch measured in any split
is identical. Every kind has E[omega omega^T] = I (entries of unit variance; columns of squared
norm about D).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import scipy.fft
import torch

KINDS = ("rademacher", "gaussian", "ssrft")


def column_generator(seed: int, column: int) -> torch.Generator:
    """A CPU torch generator determined by (seed, column) alone."""
    state = np.random.SeedSequence([int(seed), int(column)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def random_columns(
    kind: str,
    seed: int,
    dim: int,
    columns: Iterable[int],
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Columns ``columns`` of the (dim x inf) test matrix ``kind`` with ``seed``: shape (dim, len)."""
    columns = list(columns)
    if kind not in KINDS:
        raise ValueError(f"unknown test matrix kind {kind!r}; choose one of {KINDS}")
    if any(j < 0 for j in columns):
        raise ValueError("column indices must be non-negative")
    if kind == "ssrft":
        block = _ssrft_columns(seed, dim, columns)
    else:
        block = torch.empty(dim, len(columns), dtype=torch.float64)
        for i, j in enumerate(columns):
            gen = column_generator(seed, j)
            if kind == "rademacher":
                block[:, i] = torch.randint(0, 2, (dim,), generator=gen, dtype=torch.float64) * 2 - 1
            else:
                block[:, i] = torch.randn(dim, generator=gen, dtype=torch.float64)
    return block.to(device=device, dtype=dtype)


@lru_cache(maxsize=4)
def _ssrft_plan(seed: int, dim: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng([int(seed), dim, 0x55F7])
    return (
        rng.permutation(dim),  # which output row column j reads
        rng.permutation(dim),
        rng.choice([-1.0, 1.0], dim),
        rng.permutation(dim),
        rng.choice([-1.0, 1.0], dim),
    )


def _ssrft_columns(seed: int, dim: int, columns: list[int]) -> torch.Tensor:
    """Columns of Omega = sqrt(D) T^T R^T with T = F P2 S2 F P1 S1 (F orthonormal DCT-II, P
    permutations, S random signs) and R selecting rows; column j reads row perm0[j] of T."""
    if columns and max(columns) >= dim:
        raise ValueError(f"an SSRFT test matrix has at most D={dim} columns")
    rows, perm2, signs2, perm1, signs1 = _ssrft_plan(seed, dim)
    e = np.zeros((dim, len(columns)))
    e[rows[columns], np.arange(len(columns))] = 1.0
    x = scipy.fft.idct(e, norm="ortho", axis=0)  # F^T e_r
    x = _inverse_permute(x, perm2) * signs2[:, None]  # S2 P2^T
    x = scipy.fft.idct(x, norm="ortho", axis=0)  # F^T
    x = _inverse_permute(x, perm1) * signs1[:, None]  # S1 P1^T
    return torch.from_numpy(np.sqrt(dim) * x)


def _inverse_permute(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """P^T x for (P x)[i] = x[perm[i]]."""
    out = np.empty_like(x)
    out[perm] = x
    return out
