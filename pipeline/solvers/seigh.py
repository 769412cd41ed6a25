"""``algorithm=seigh``.

Sketched eigendecomposition on the run store, fixed-size or grown adaptively to a residual target
(``pipeline.linalg.seigh``, ``pipeline.linalg.adaptive``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import torch

from pipeline.basics import compute_device
from pipeline.errors import InputError, one_of
from pipeline.linalg.adaptive import adaptive_seigh
from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import KINDS, ROW_ACCESSIBLE, random_block
from pipeline.linalg.recovery import rows_within
from pipeline.linalg.seigh import SeighOptions, seigh
from pipeline.linalg.validation import check_k
from pipeline.solvers.base import EigenConfig, OperatorShape, Solver, default_of
from pipeline.solvers.outcomes import EigenOutcome
from pipeline.store.run_store import chunk_read_seconds


@dataclass
class SeighConfig(EigenConfig):
    """``algorithm=seigh``: sketch sizes, test matrices, store blocks and checks."""

    name: str = "seigh"
    tol: float = default_of(seigh, "tol")
    outer: int = 355
    inner: int = 710
    # the store's chunk width and completion unit (fingerprinted)
    block_size: int = default_of(seigh, "block_size")
    # columns per product (null: block_size; auto: the widest the workers' memory holds, measured
    # on the first batch); a resume may change it
    product_width: Any = default_of(seigh, "product_width")
    recycled: bool = default_of(seigh, "recycled")
    outer_kind: str = default_of(seigh, "outer_kind")
    inner_kind: str = default_of(seigh, "inner_kind")
    residuals: bool = default_of(seigh, "residuals")
    error_test_vectors: int = default_of(seigh, "error_test_vectors")
    # the default job (conf/algorithm/seigh.yaml) sets 1e-3
    refine_tol: Optional[float] = default_of(seigh, "refine_tol")
    memory_gb: float = default_of(seigh, "memory_bytes") / 2**30
    # adaptive: grow the sketch from outer/inner until the top-k residuals meet this
    target_tol: Optional[float] = None
    # adaptive: product budget (null: until the sketch cannot grow)
    max_matvecs: Optional[int] = default_of(adaptive_seigh, "max_matvecs")
    growth: float = default_of(adaptive_seigh, "growth")  # adaptive: size factor per step


def preflight(
    a: Any, shape: OperatorShape, *, seed: int, store: Any = None, problem: dict | None = None
) -> None:
    """Before any worker starts.

    The sketch sizes against D, and a store of another configuration refused.
    """
    options = SeighOptions(
        a.k,
        a.outer,
        a.inner,
        seed,
        a.block_size,
        a.outer_kind,
        a.inner_kind,
        a.recycled,
        product_width=None if a.product_width == "auto" else a.product_width,
    )
    if a.target_tol is None:
        options.validate(shape)
    else:  # adaptive SEIGH sizes its own sketches from outer
        check_k(shape, a.k)
    if store is not None:
        store.bind(options.fingerprint(shape, problem))


def run(
    a: Any, op: Operator, *, seed: int, store: Any = None, problem: dict | None = None
) -> EigenOutcome:
    """Top-k eigenpairs of ``op`` by SEIGH on ``store`` (adaptive where ``target_tol`` is set)."""
    options = dict(
        seed=seed,
        store=store,
        block_size=a.block_size,
        product_width=a.product_width,
        outer_kind=a.outer_kind,
        inner_kind=a.inner_kind,
        recycled=a.recycled,
        error_test_vectors=a.error_test_vectors,
        memory_bytes=int(a.memory_gb * 2**30),
        problem=problem,
    )
    # grow the sketch from outer until the top-k residuals meet target_tol
    if a.target_tol is not None:
        result = adaptive_seigh(
            op,
            a.k,
            a.target_tol,
            max_matvecs=a.max_matvecs,
            start_outer=a.outer,
            growth=a.growth,
            **options,
        )
    else:
        result = seigh(
            op,
            a.k,
            a.outer,
            a.inner,
            residuals=a.residuals,
            refine_tol=a.refine_tol,
            tol=a.tol,
            **options,
        )
    keys = ("frobenius_error", "measured_now", "refine_matvecs", "adaptive", "adaptive_matvecs")
    return EigenOutcome.of(result, {key: result.info[key] for key in keys if key in result.info})


def matvecs(a: Any, dim: int) -> tuple[int, str]:
    """The products the solver makes: measurements, residuals and error test vectors."""
    if a.target_tol is not None:
        return (
            a.max_matvecs or 3 * (a.outer + a.inner)
        ), "adaptive SEIGH: its product budget (max_matvecs), or 3x the start"
    count = (
        a.inner
        + (0 if a.recycled else a.outer)
        + (a.k if a.residuals and not a.refine_tol else 0)
        + a.error_test_vectors
    )
    if a.refine_tol:
        return (
            count + 10 * a.k,
            "measurements, test vectors and about 10k for the Lanczos refinement (seen: 3k-20k)",
        )
    return count, "measurements, residuals and test vectors"


def cost(a: Any, dim: int, itemsize: int) -> dict[str, float]:
    """Predicted post-processing seconds, store bytes and driver bytes.

    Predicted post-processing seconds, store bytes and driver bytes (without the process's own).
    """
    memory = int(a.memory_gb * 2**30)
    return {
        "postprocess_s": postprocess_seconds(
            dim, a.outer, a.inner, a.k, a.inner_kind, memory, a.recycled, a.block_size, itemsize
        ),
        "store_bytes": dim * (a.inner + (0 if a.recycled else a.outer)) * itemsize + dim * a.k * 8,
        "driver_bytes": memory + dim * a.k * 8,
    }


def postprocess_seconds(
    dim: int,
    outer: int,
    inner: int,
    k: int,
    inner_kind: str,
    memory_bytes: int,
    recycled: bool = False,
    block: int = 16,
    itemsize: int = 4,
    device=None,
) -> float:
    """Post-processing time.

    2 D (3 nO^2 + nO nI + nI^2 + nO k) flops at this device's measured float64 matmul rate, plus
    Psi's rows generated for every row block (timed on one), plus the measurements read from the
    store: W (and Y unless recycled) in the first pass, Y in the second and in V = Q U, chunk by
    chunk at the rate of one chunk decoded (``chunk_read_seconds``).
    """
    device = compute_device(device)
    rows = min(dim, max(outer, rows_within(memory_bytes, outer, inner)))
    a = torch.randn(rows, inner, dtype=torch.float64, device=device)
    start = time.perf_counter()
    a.T @ a
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = 2 * rows * inner * inner / max(time.perf_counter() - start, 1e-9)
    start = time.perf_counter()
    random_block(inner_kind, 0, range(rows), range(inner))
    psi = time.perf_counter() - start
    flops = 2 * dim * (3 * outer**2 + outer * inner + inner**2 + outer * k)
    columns_read = inner + (0 if recycled else outer) + 2 * outer
    dtype = torch.float32 if itemsize == 4 else torch.float64
    read = chunk_read_seconds(rows, block, dtype) * (dim / rows) * (columns_read / block)
    return flops / rate + psi * -(-dim // rows) + read


def check(a: Any) -> None:
    """Refuse unknown test matrices and non-positive tolerances."""
    one_of("algorithm.outer_kind", a.outer_kind, KINDS)
    one_of("algorithm.inner_kind", a.inner_kind, ROW_ACCESSIBLE)
    width = a.product_width
    if width not in (None, "auto") and (isinstance(width, bool) or not isinstance(width, int)):
        raise InputError(
            f"algorithm.product_width must be null, 'auto' or a positive integer, got {width!r}"
        )
    for name in ("refine_tol", "target_tol"):
        value = getattr(a, name)
        if value is not None and not value > 0:
            raise InputError(
                f"algorithm.{name} must be a positive relative residual such as 1e-3, got {value}"
            )
    if not a.growth > 1:
        raise InputError(
            "algorithm.growth (adaptive SEIGH's size factor per step) must be above 1, e.g. 1.5; "
            f"got {a.growth}"
        )
    if a.max_matvecs is not None and a.max_matvecs < 1:
        raise InputError(
            "algorithm.max_matvecs must be a positive product budget (or null), got "
            f"{a.max_matvecs}"
        )
    if not a.memory_gb > 0:
        raise InputError(
            "algorithm.memory_gb (row-block budget of SEIGH's post-processing) must be positive, "
            f"got {a.memory_gb}"
        )


SOLVER = Solver(
    "seigh", SeighConfig, run, matvecs, check, needs_store=True, cost=cost, preflight=preflight
)
