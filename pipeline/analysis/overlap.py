"""Overlap of Hessian eigenspaces with parameter-magnitude masks (Fernandez et al., TMLR 2025).

For eigenvectors V (D, K) sorted by |lambda| and the mask M_k of the k largest |theta_i|:
    overlap_k = ||V[M_k, :k]||_F^2 / k,
the fraction of the top-k eigenspace's energy on the top-k magnitude coordinates. A random
mask gives k/D in expectation (the chance baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def magnitude_mask(theta: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k entries of largest |theta| (ties broken by index)."""
    if not 0 < k <= theta.shape[0]:
        raise ValueError(f"mask size must be in 1..{theta.shape[0]}, got {k}")
    return np.argsort(-np.abs(theta), kind="stable")[:k]


def mask_overlap(vectors: Any, mask: np.ndarray, k: int) -> float:
    """||V[mask, :k]||_F^2 / k for V (D, >= k) with orthonormal columns: a numpy array, or a Zarr
    array of which only the masked rows are read."""
    if k > vectors.shape[1]:
        raise ValueError(f"k={k} exceeds the {vectors.shape[1]} eigenvectors available")
    rows = np.sort(mask)
    if hasattr(vectors, "get_orthogonal_selection"):
        block = np.asarray(vectors.get_orthogonal_selection((rows, slice(0, k))), dtype=np.float64)
    else:
        block = np.asarray(vectors[rows, :k], dtype=np.float64)
    return float((block**2).sum() / k)


def overlap_curve(vectors: Any, theta: np.ndarray, ks: Sequence[int]) -> dict[str, list[float]]:
    """overlap_k with the magnitude mask M_k and the chance baseline k/D for each k in ks."""
    dim = theta.shape[0]
    return {
        "k": [int(k) for k in ks],
        "overlap": [mask_overlap(vectors, magnitude_mask(theta, k), k) for k in ks],
        "chance": [k / dim for k in ks],
    }


def random_mask_overlap(vectors: np.ndarray, k: int, draws: int, seed: int = 0) -> np.ndarray:
    """overlap_k for ``draws`` uniformly random masks of size k (mean k/D)."""
    rng = np.random.default_rng(seed)
    dim = vectors.shape[0]
    return np.array([mask_overlap(vectors, rng.choice(dim, k, replace=False), k) for _ in range(draws)])
