"""Argument checks shared by the algorithms (clear ValueErrors before any product is spent)."""

from __future__ import annotations

from pipeline.errors import InputError
from pipeline.linalg.operator import Operator

WHICH = ("LM", "LA", "SA")


def check_k(op: Operator, k: int, name: str = "k") -> int:
    """1 <= k < D."""
    dim = op.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < dim:
        raise InputError(
            f"{name} must be an integer with 1 <= {name} < D = {dim} (the operator dimension), got "
            f"{k!r}"
        )
    return k


def check_positive(value: int, name: str) -> int:
    """``value`` if it is a positive integer, else InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_which(which: str) -> str:
    """``which`` if it is one of ``WHICH``, else InputError."""
    if which not in WHICH:
        raise InputError(
            f"which must be one of {WHICH} (largest magnitude, largest, smallest algebraic), got "
            f"{which!r}"
        )
    return which


def check_tol(tol: float, name: str = "tol") -> float:
    """A finite tolerance > 0 (a relative residual target)."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < float("inf"):
        raise InputError(f"{name} must be a positive relative residual such as 1e-3, got {tol!r}")
    return float(tol)
