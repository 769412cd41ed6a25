"""Seeded random test matrices whose entry (i, j) depends only on (seed, i, j).

A counter-based generator (SplitMix64 finaliser of (seed, column, row)) makes any block of
rows and columns computable on its own: columns never depend on the block size or worker
count, and post-processing can stream row blocks of Psi. Every kind has E[omega omega^T] = I.
Rademacher entry (i, j) is bit j mod 64 of the hash of (seed, j // 64, i), so one hash gives 64
entries (generating Psi's rows is a small part of post-processing); Gaussian entries use one
hash each (Box-Muller). SSRFT (structured; Woolfe et al. 2008) is column-accessible only.
``GENERATOR_VERSION`` goes into every store's fingerprint: measurements made with another
generator are refused, never mixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import scipy.fft
import torch

from pipeline.basics import numpy_dtype
from pipeline.errors import InputError

KINDS = ("rademacher", "gaussian", "ssrft")
ROW_ACCESSIBLE = ("rademacher", "gaussian")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_ENTRIES = 1 << 20
GENERATOR_VERSION = 2  # 1: one hash per Rademacher entry


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (a bijection on uint64 with good avalanche)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _bits(seed: int, rows: range, columns: np.ndarray, stream: int = 0) -> np.ndarray:
    """(len(rows), len(columns)) uint64 random bits for entry (i, j) of ``seed``."""
    with np.errstate(over="ignore"):
        base = _mix(
            np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
            + np.uint64(stream) * _GOLDEN
        )
        keys = _mix(base + columns.astype(np.uint64) * _GOLDEN)
        row_ids = np.arange(rows.start, rows.stop, dtype=np.uint64)
        return _mix(keys[None, :] ^ _mix(row_ids * _GOLDEN + np.uint64(1))[:, None])


def random_block(
    kind: str, seed: int, rows: range, columns: Iterable[int], out: np.ndarray | None = None
) -> np.ndarray:
    """Entries rows x columns of the test matrix ``kind`` (rademacher or gaussian), float64.

    Written into ``out`` ((len(rows), len(columns)), float64 or float32) where given: computed in
    float64 and rounded once on the way in, the same values as a float64 block cast after.
    """
    columns = np.asarray(list(columns), dtype=np.int64)
    if kind not in ROW_ACCESSIBLE:
        raise InputError(f"row blocks exist only for {ROW_ACCESSIBLE} test matrices, not {kind!r}")
    if columns.size and columns.min() < 0:
        raise InputError("column indices must be non-negative")
    out = np.empty((len(rows), columns.size)) if out is None else out
    if kind == "rademacher":
        return _rademacher(seed, rows, columns, out)
    step = max(1, _CHUNK_ENTRIES // max(columns.size, 1))  # bound the uint64 temporaries
    for start in range(0, len(rows), step):
        bits = _bits(seed, rows[start : start + step], columns)
        # Box-Muller on the two 32-bit halves
        u1 = ((bits >> np.uint64(32)).astype(np.float64) + 1.0) * 2.0**-32
        u2 = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
        out[start : start + len(bits)] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return out


def _rademacher(seed: int, rows: range, columns: np.ndarray, out: np.ndarray) -> np.ndarray:
    """+-1 entries: bit (j mod 64) of the 64-bit hash of word j // 64 (little-endian bit order)."""
    if columns.size == 0:
        return out
    first_word = int(columns.min()) // 64
    words = np.arange(first_word, int(columns.max()) // 64 + 1, dtype=np.int64)
    offsets = columns - 64 * first_word
    if np.array_equal(offsets, np.arange(offsets[0], offsets[0] + offsets.size)):
        # contiguous columns: a view, no gather
        offsets = slice(int(offsets[0]), int(offsets[0]) + offsets.size)
    step = max(1, _CHUNK_ENTRIES // (64 * words.size))
    for start in range(0, len(rows), step):
        bits = _bits(seed, rows[start : start + step], words)  # (m, words) uint64
        # (m, 64 words)
        unpacked = np.unpackbits(bits.astype("<u8").view(np.uint8), axis=1, bitorder="little")
        # 1 - 2 bit, in place: 2.7x faster than indexing a sign table with the bits
        signs = out[start : start + len(bits)]
        np.multiply(unpacked[:, offsets], -2.0, out=signs)
        signs += 1.0
    return out


def random_columns(
    kind: str,
    seed: int,
    dim: int,
    columns: Iterable[int],
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Columns ``columns`` of the seeded test matrix ``kind``: shape (dim, len).

    Columns ``columns`` of the (dim x inf) test matrix ``kind`` with ``seed``: shape (dim, len).
    """
    columns = list(columns)
    if kind not in KINDS:
        raise InputError(f"unknown test matrix kind {kind!r}; choose one of {KINDS}")
    if kind == "ssrft":
        block = _ssrft_columns(seed, dim, columns)
    else:  # straight into the target precision: no float64 block to convert (ResNet-18's D,
        # 4 Rademacher columns: 0.26 s against 0.8-1.3 s generated in float64 and cast)
        precision = dtype if dtype in (torch.float32, torch.float64) else torch.float64
        out = np.empty((dim, len(columns)), dtype=numpy_dtype(precision))
        block = random_block(kind, seed, range(dim), columns, out=out)
    return torch.from_numpy(block).to(device=device, dtype=dtype)


@lru_cache(maxsize=4)
def _ssrft_plan(seed: int, dim: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, dim, 0x55F7])
    return (
        rng.permutation(dim),  # which row of T column j reads
        rng.permutation(dim),
        rng.choice([-1.0, 1.0], dim),
        rng.permutation(dim),
        rng.choice([-1.0, 1.0], dim),
    )


def _ssrft_columns(seed: int, dim: int, columns: list[int]) -> np.ndarray:
    """Columns of the SSRFT test matrix Omega = sqrt(D) T^T R^T.

    Columns of Omega = sqrt(D) T^T R^T with T = F P2 S2 F P1 S1 (F orthonormal DCT-II, P
    permutations, S random signs) and R selecting rows; column j reads row rows[j] of T.
    """
    if columns and (min(columns) < 0 or max(columns) >= dim):
        raise InputError(f"an SSRFT test matrix has columns 0..{dim - 1}")
    rows, perm2, signs2, perm1, signs1 = _ssrft_plan(seed, dim)
    e = np.zeros((dim, len(columns)))
    e[rows[columns], np.arange(len(columns))] = 1.0
    x = scipy.fft.idct(e, norm="ortho", axis=0)  # F^T e_r
    x = _inverse_permute(x, perm2) * signs2[:, None]  # S2 P2^T
    x = scipy.fft.idct(x, norm="ortho", axis=0)  # F^T
    x = _inverse_permute(x, perm1) * signs1[:, None]  # S1 P1^T
    return np.sqrt(dim) * x


def _inverse_permute(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """P^T x for (P x)[i] = x[perm[i]]."""
    out = np.empty_like(x)
    out[perm] = x
    return out
