"""Overlap of Hessian eigenspaces with parameter-magnitude masks (Fernandez et al., TMLR 2025).

For eigenvectors V (D, K) sorted by |lambda| and the mask M_k of the k largest |theta_i|:
    overlap_k = ||V[M_k, :k]||_F^2 / k,
the fraction of the top-k eigenspace's energy on the top-k magnitude coordinates. Baselines: a
uniformly random mask gives k/D in expectation (chance); the best possible mask takes the k rows
of V[:, :k] with the largest norms (an upper bound for every mask of size k).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import InputError

BAND = (5, 95)  # percentiles of the random-mask overlaps


def magnitude_mask(theta: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k entries of largest |theta| (ties broken by index)."""
    if not 0 < k <= theta.shape[0]:
        raise InputError(f"mask size must be in 1..{theta.shape[0]}, got {k}")
    return np.argsort(-np.abs(theta), kind="stable")[:k]


def mask_overlap(vectors: Any, mask: np.ndarray, k: int) -> float:
    """||V[mask, :k]||_F^2 / k for V (D, >= k) with orthonormal columns.

    A numpy array, or a Zarr array of which only the masked rows are read.
    """
    if k > vectors.shape[1]:
        raise InputError(f"k={k} exceeds the {vectors.shape[1]} eigenvectors available")
    rows = np.sort(mask)
    if hasattr(vectors, "get_orthogonal_selection"):
        block = np.asarray(vectors.get_orthogonal_selection((rows, slice(0, k))), dtype=np.float64)
    else:
        block = np.asarray(vectors[rows, :k], dtype=np.float64)
    return float((block**2).sum() / k)


def overlap_table(
    vectors: Any,
    theta: np.ndarray,
    max_k: int,
    random_masks: int = 10,
    seed: int = 0,
    row_block: int = 65536,
) -> dict[str, np.ndarray]:
    """Overlaps and their baselines for every k in 1..max_k.

    The magnitude-mask overlap, the mean and 5-95% band of ``random_masks`` uniformly random masks,
    the best-mask upper bound and chance k/D; arrays of length max_k. ``vectors`` (D, >= max_k) is a
    numpy or Zarr array; masks read only their max_k rows, the best mask streams V in ``row_block``
    rows keeping the top max_k cumulative row norms per k.
    """
    dim = theta.shape[0]
    if not 0 < max_k <= min(vectors.shape[1], dim):
        raise InputError(f"max_k must be in 1..{min(vectors.shape[1], dim)}, got {max_k}")
    rng = np.random.default_rng(seed)
    random = (
        np.stack(
            [
                _nested_mask_overlaps(vectors, rng.permutation(dim)[:max_k], max_k)
                for _ in range(random_masks)
            ]
        )
        if random_masks
        else np.full((1, max_k), np.nan)
    )
    ks = np.arange(1, max_k + 1)
    return {
        "k": ks,
        "magnitude": _nested_mask_overlaps(vectors, magnitude_mask(theta, max_k), max_k),
        "random_mean": random.mean(axis=0),
        "random_p05": np.percentile(random, BAND[0], axis=0),
        "random_p95": np.percentile(random, BAND[1], axis=0),
        "best": _best_mask_overlaps(vectors, max_k, row_block),
        "chance": ks / dim,
    }


def _nested_mask_overlaps(vectors: Any, ranked_rows: np.ndarray, max_k: int) -> np.ndarray:
    """overlap_k for the masks {ranked_rows[:k]}, k = 1..max_k.

    With S = V[ranked_rows, :max_k]**2, k overlap_k = sum_{i<k} sum_{j<k} S_ij, the k-th diagonal
    entry of S's 2-D cumulative sum.
    """
    order = np.argsort(ranked_rows, kind="stable")  # Zarr reads rows in increasing order
    rows = ranked_rows[order]
    # numpy, Zarr and StoredMatrix alike
    block = np.asarray(vectors[rows, :max_k], dtype=np.float64)
    squares = np.empty_like(block)
    squares[order] = block**2  # back to rank order
    return np.diagonal(squares.cumsum(axis=0).cumsum(axis=1)) / np.arange(1, max_k + 1)


def _best_mask_overlaps(vectors: Any, max_k: int, row_block: int) -> np.ndarray:
    """Max over masks of size k of overlap_k, k = 1..max_k: the k largest row norms of V[:, :k]."""
    dim = vectors.shape[0]
    top = np.zeros((0, max_k))
    for start in range(0, dim, row_block):
        norms = (
            np.asarray(vectors[start : start + row_block, :max_k], dtype=np.float64) ** 2
        ).cumsum(axis=1)
        stacked = np.vstack([top, norms])
        keep = min(max_k, stacked.shape[0])
        top = -np.partition(-stacked, keep - 1, axis=0)[:keep]
    top = -np.sort(-top, axis=0)
    sums = np.cumsum(top, axis=0)  # sums[i, j]: the i+1 largest norms of V[:, :j+1]
    ks = np.arange(1, max_k + 1)
    return sums[np.minimum(ks, top.shape[0]) - 1, ks - 1] / ks
