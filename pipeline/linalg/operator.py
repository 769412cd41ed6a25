"""The operator protocol every algorithm in ``pipeline.linalg`` runs on.

An operator is a symmetric D x D matrix known only through products: ``op.shape == (D, D)``,
``op.dtype``, ``op.device``, ``op @ v`` for a torch tensor v of shape (D,) or (D, b) (a block of
b vectors, done in one pass), and ``op.to_scipy()`` for scipy.sparse.linalg.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from pipeline.basics import numpy_dtype
from pipeline.errors import InputError


class Operator(ABC):
    """Base class: validates inputs of ``op @ v`` and counts matrix-vector products.

    Subclasses implement ``_matmat(V)`` for V of shape (D, b) with the operator's dtype and
    device, returning H V of the same shape.
    """

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device | str = "cpu"):
        if dim <= 0:
            raise InputError(f"operator dimension must be positive, got {dim}")
        self.shape = (int(dim), int(dim))
        self.dtype = dtype
        self.device = torch.device(device)
        self.matvecs = 0
        self.expected_products: int | None = None

    def expect(self, products: int) -> None:
        """Tell the operator how many products the work ahead needs.

        Tell the operator about how many products the work ahead needs (an algorithm's estimate), so
        that one-off costs (a compiled product) are paid only where they repay.
        """
        self.expected_products = int(products)

    @abstractmethod
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        """H V for V of shape (D, b)."""

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        V = self._check_vectors(v)
        out = self._counted(V.shape[1], self._matmat, V)
        return out[:, 0] if v.ndim == 1 else out

    def _counted(self, products: int, compute: Callable[..., Any], *args: Any) -> Any:
        """Run ``compute(*args)`` and count its ``products`` in ``matvecs``.

        ``compute(*args)``, which makes ``products`` matrix-vector products, counted in ``matvecs``
        once it returns (the one place products are counted).
        """
        out = compute(*args)
        self.matvecs += products
        return out

    def pass_seconds(self, width: int) -> float | None:
        """Seconds one product of a (D, ``width``) block takes, or None.

        Seconds one product of a (D, ``width``) block takes, where the operator can time itself
        cheaply (``probe_share``); None where it cannot (then solvers assume blocks do not pay).
        """
        return None

    def probe_share(self) -> float:
        """What one ``pass_seconds`` call at a new width costs, in products.

        What one ``pass_seconds`` call at a new width costs, as a share of a product at that width.
        """
        return 0.0

    def _check_vectors(self, v: torch.Tensor) -> torch.Tensor:
        """Validate v of shape (D,) or (D, b); return it as a (D, b) block."""
        if not isinstance(v, torch.Tensor):
            raise InputError(f"operator expects a torch.Tensor, got {type(v).__name__}")
        dim = self.shape[0]
        if v.ndim not in (1, 2) or v.shape[0] != dim or (v.ndim == 2 and v.shape[1] == 0):
            raise InputError(
                f"vector shape {tuple(v.shape)} does not match the operator: expected ({dim},) or "
                f"({dim}, b) with b >= 1"
            )
        if v.dtype != self.dtype:
            raise InputError(
                f"vector dtype {v.dtype} does not match the operator dtype {self.dtype}; cast with "
                f"v.to({self.dtype})"
            )
        if v.device.type != self.device.type:
            raise InputError(f"vector is on {v.device}, the operator on {self.device}")
        return v if v.ndim == 2 else v[:, None]

    def to_scipy(self) -> LinearOperator:
        """A scipy LinearOperator applying this operator to numpy arrays (copies via the host)."""
        np_dtype = numpy_dtype(self.dtype)

        def matmat(X: np.ndarray) -> np.ndarray:
            V = torch.as_tensor(np.ascontiguousarray(X), dtype=self.dtype, device=self.device)
            return (self @ V.reshape(self.shape[0], -1)).cpu().numpy()

        return LinearOperator(
            self.shape,
            dtype=np_dtype,
            matvec=lambda x: matmat(x.reshape(-1, 1)).reshape(-1),
            matmat=matmat,
            rmatvec=lambda x: matmat(x.reshape(-1, 1)).reshape(-1),
        )


class DenseOperator(Operator):
    """A symmetric matrix held in memory (ground truth in tests, synthetic spectra)."""

    def __init__(self, matrix: torch.Tensor):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise InputError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V


class LowRankPlusDiagonalOperator(Operator):
    """H = U diag(s) U^T + diag(d): a synthetic operator of any size with a known spectrum.

    U (D, r) has orthonormal columns and d is a small tail; used for large-D benchmarks and
    SEIGH tests where a dense D x D matrix would not fit.
    """

    def __init__(self, U: torch.Tensor, s: torch.Tensor, d: torch.Tensor | None = None):
        super().__init__(U.shape[0], U.dtype, U.device)
        self.U, self.s, self.d = U, s.to(U.dtype), None if d is None else d.to(U.dtype)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.U @ (self.s[:, None] * (self.U.T @ V))
        return out if self.d is None else out + self.d[:, None] * V
