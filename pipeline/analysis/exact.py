"""Exact reference where D allows.

The dense operator and its full eigendecomposition in float64, and how far a sketched decomposition
is from it.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.linalg.operator import Operator


def dense_matrix(op: Operator, block: int = 256) -> torch.Tensor:
    """The dense operator A = op @ I (D, D) in float64, symmetrised.

    A = op @ I (D, D) in float64, built from blocks of ``block`` identity columns and symmetrised
    ((A + A^T) / 2 removes the rounding asymmetry of the products).
    """
    dim = op.shape[0]
    matrix = torch.empty(dim, dim, dtype=torch.float64)
    for start in range(0, dim, block):
        columns = torch.zeros(dim, min(block, dim - start), dtype=op.dtype, device=op.device)
        columns[start + torch.arange(columns.shape[1]), torch.arange(columns.shape[1])] = 1
        matrix[:, start : start + columns.shape[1]] = (op @ columns).to("cpu", torch.float64)
    return (matrix + matrix.T) / 2


def exact_eigenpairs(op: Operator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k eigenpairs of largest |lambda| of the dense operator.

    Eigenvalues (k,) sorted by |lambda| descending and eigenvectors (D, k), from torch.linalg.eigh
    in float64.
    """
    values, vectors = torch.linalg.eigh(dense_matrix(op))
    order = torch.argsort(values.abs(), descending=True)[:k]
    return values[order].numpy(), vectors[:, order].numpy()


def compare(
    exact_values: np.ndarray,
    exact_vectors: np.ndarray,
    values: np.ndarray,
    vectors: np.ndarray,
    top: int = 10,
) -> dict:
    """Errors of approximate eigenpairs against the exact ones, rank by rank.

    Errors of approximate eigenpairs (values (K,), vectors (D, K), sorted by |lambda|) against the
    exact ones, rank by rank: relative eigenvalue errors |lambda_hat - lambda| / |lambda| (all K,
    and the max and median of the top ``top``), |cos| between matched eigenvectors, and the sine of
    the largest principal angle between the top-``top`` subspaces, ||(I - U U^T) V_hat||_2.
    """
    count = min(len(values), len(exact_values))
    errors = np.abs(values[:count] - exact_values[:count]) / np.abs(exact_values[:count])
    top = min(top, count)
    exact_top, approx_top = exact_vectors[:, :top], np.asarray(vectors[:, :top], dtype=np.float64)
    cosines = np.abs(np.sum(exact_top * approx_top, axis=0)) / np.linalg.norm(approx_top, axis=0)
    outside = approx_top - exact_top @ (exact_top.T @ approx_top)
    return {
        "top": top,
        "eigenvalue_rel_errors": errors.tolist(),
        "top_max_rel_error": float(errors[:top].max()),
        "top_median_rel_error": float(np.median(errors[:top])),
        "median_rel_error": float(np.median(errors)),
        "top_vector_cosines": cosines.tolist(),
        "top_subspace_sine": float(np.linalg.norm(outside, 2)),
    }
