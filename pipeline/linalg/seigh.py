"""SEIGH: sketched symmetric eigendecomposition from outer and inner measurements.

Tropp, Yurtsever, Udell, Cevher (2019), symmetric case: Y = H Omega (D x nO), W = H Psi^T
(D x nI), Z = Psi W; Q = orth(Y) in float64; C = (Psi Q)^+ Z ((Psi Q)^+)^T by QR solves,
symmetrised; C = U L U^T; V = Q U (top k by |lambda|). Three stages, as skerch separates them:
measurement (``sketch_measurement``), the streamed recovery on any ``MeasurementStore``
(``recovery``: TSQR, Psi Q and Z, core, V) and the a-posteriori checks or refinement
(``seigh_checks``). This module validates the options, binds the store and runs the stages;
every pass over D-sized data reads row blocks, so peak memory is a few row blocks whatever nO x D
is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from pipeline.basics import compute_device
from pipeline.errors import InputError
from pipeline.linalg.lanczos import order_by
from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import GENERATOR_VERSION, KINDS, ROW_ACCESSIBLE
from pipeline.linalg.recovery import row_blocks, rows_within, write_eigenvectors
from pipeline.linalg.result import EigResult
from pipeline.linalg.seigh_checks import check_and_refine, unconverged_advice
from pipeline.linalg.sketch_measurement import SketchSpec, measure_and_recover
from pipeline.linalg.validation import check_k, check_positive, check_tol
from pipeline.store.memory import MemoryStore
from pipeline.store.protocol import MeasurementStore, StoredMatrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeighOptions:
    """What determines a SEIGH result (see ``seigh`` for each field)."""

    k: int
    outer: int
    inner: int
    seed: int = 0
    block_size: int = 32
    outer_kind: str = "rademacher"
    inner_kind: str = "rademacher"
    recycled: bool = False
    residuals: bool = True
    error_test_vectors: int = 8
    refine_tol: float | None = None
    tol: float = 1e-3
    memory_bytes: int = 2**30
    product_width: int | None = None

    def validate(self, op: Operator) -> None:
        """InputError naming the first option ``op`` cannot take."""
        dim = op.shape[0]
        check_k(op, self.k)
        check_positive(self.block_size, "block_size")
        if self.product_width is not None:
            check_positive(self.product_width, "product_width")
        check_tol(self.tol)
        if self.refine_tol is not None:
            check_tol(self.refine_tol, "refine_tol")
        if not self.k <= self.outer < dim:
            raise InputError(f"outer must satisfy k={self.k} <= outer < D={dim}, got {self.outer}")
        if not 2 * self.outer <= self.inner <= dim:
            raise InputError(
                f"inner must satisfy 2 * outer = {2 * self.outer} <= inner <= D = {dim}, got "
                f"{self.inner}"
            )
        if self.outer_kind not in KINDS:
            raise InputError(
                f"unknown outer test matrix {self.outer_kind!r}; choose one of {KINDS}"
            )
        if self.inner_kind not in ROW_ACCESSIBLE:
            raise InputError(
                f"inner test matrix must be one of {ROW_ACCESSIBLE} (Psi is streamed by rows), got "
                f"{self.inner_kind!r}"
            )

    def sketch(self, dim: int) -> SketchSpec:
        """The measurements these options ask of an operator of dimension ``dim``."""
        return SketchSpec(
            dim,
            self.outer,
            self.inner,
            self.seed,
            self.block_size,
            self.inner_kind if self.recycled else self.outer_kind,
            self.inner_kind,
            self.recycled,
            self.product_width,
        )

    def fingerprint(self, op: Operator, problem: dict | None) -> dict[str, Any]:
        """What the measurements depend on; outer / inner are not part of it.

        A store grows to larger sketches and serves smaller ones.
        """
        sketch = self.sketch(op.shape[0])
        return {
            "dim": sketch.dim,
            "dtype": str(op.dtype),
            "seed": self.seed,
            "block_size": self.block_size,
            "outer_kind": sketch.outer_kind,
            "inner_kind": self.inner_kind,
            "recycled": self.recycled,
            "problem": problem or {},
            "test_matrices": GENERATOR_VERSION,
        }

    def settings(self) -> dict[str, Any]:
        """What a completed run's result depends on beyond the fingerprint.

        What a completed run's result depends on beyond the fingerprint (a rerun with the same
        reuses it).
        """
        keys = ("k", "outer", "inner", "residuals", "error_test_vectors", "refine_tol", "tol")
        return {key: value for key, value in asdict(self).items() if key in keys}

    def converged_tol(self) -> float:
        """The tolerance a pair is converged at: ``refine_tol`` where set, else ``tol``."""
        return self.refine_tol if self.refine_tol is not None else self.tol


def seigh(
    op: Operator,
    k: int,
    outer: int,
    inner: int,
    seed: int = 0,
    *,
    block_size: int = 32,
    outer_kind: str = "rademacher",
    inner_kind: str = "rademacher",
    recycled: bool = False,
    residuals: bool = True,
    error_test_vectors: int = 8,
    refine_tol: float | None = None,
    tol: float = 1e-3,
    memory_bytes: int = 2**30,
    product_width: int | None = None,
    store: MeasurementStore | None = None,
    problem: dict | None = None,
    progress: bool | None = None,
    on_block: Callable[[str, range], None] | None = None,
    device: str | torch.device | None = None,
    warn: bool = True,
) -> EigResult:
    """Top-k eigenpairs (by |lambda|) of ``op`` from ``outer`` + ``inner`` measurements.

    Y = H Omega and W = H Psi^T are measured block by block into ``store`` (measurements already
    in it are reused: a rerun resumes); Q = orth(Y), the core C = (Psi Q)^+ (Psi W) ((Psi Q)^+)^T
    is eigendecomposed and V = Q U streamed back to the store, reading D-sized data by row blocks.

    Args:
        op: The symmetric operator H (D, D).
        k: How many eigenpairs, k <= outer.
        outer: nO, the outer sketch size (k <= nO < D).
        inner: nI, the inner sketch size (2 nO <= nI <= D).
        seed: Seed of the test matrices (a column depends only on the seed and its index).
        block_size: The store's unit (chunk width and completion mark; part of its fingerprint).
        outer_kind: Omega's distribution: ``rademacher``, ``gaussian`` or ``ssrft``.
        inner_kind: Psi's distribution: ``rademacher`` or ``gaussian`` (streamed by rows).
        recycled: Use the first nO columns of Psi^T as Omega (nI products instead of nO + nI).
        residuals: Spend k more products on ||H v - lambda v|| / |lambda|.
        error_test_vectors: q more products on the Frobenius error estimate (0: none).
        refine_tol: Run block Lanczos from the SEIGH vectors until every residual is below it.
        tol: The residual a pair is converged at when ``refine_tol`` is not set.
        memory_bytes: Bound on the row blocks of post-processing.
        product_width: Columns of one product, measurements and checks alike (default
            ``block_size``); free to change between a run and its resume (smaller: less memory
            per product).
        store: A ``MeasurementStore`` (default: a fresh ``MemoryStore``; ``RunStore`` on disk).
        problem: Names the operator in the store's fingerprint.
        progress: Log progress lines (default: when the work is long).
        on_block: Called with (array name, columns) after each measured block.
        device: Where post-processing runs (default: CUDA when available, else the CPU).
        warn: Log a WARNING naming unconverged pairs (False: left to the caller).

    Returns:
        EigResult: eigenvalues (k,) by |lambda|, eigenvectors as a ``StoredMatrix`` (D, k) in the
        store, residuals (k,; NaN where not computed), matvecs, ``converged`` (residual <=
        refine_tol, else tol) and ``info`` (sketch sizes, products measured now, the QR path, the
    Frobenius error estimate).

    Raises:
        InputError: Sketch sizes out of range or unknown test matrices.
        StoreMismatchError: ``store`` holds measurements of another configuration.

    Over 60 lines: the algorithm's outline (bind the store, measure and recover, write the
    eigenvectors, check and refine, record) reads top to bottom in one place.
    """
    options = SeighOptions(
        k,
        outer,
        inner,
        seed,
        block_size,
        outer_kind,
        inner_kind,
        recycled,
        residuals,
        error_test_vectors,
        refine_tol,
        tol,
        memory_bytes,
        product_width,
    )
    options.validate(op)
    store = store if store is not None else MemoryStore()
    store.bind(options.fingerprint(op, problem))
    reused = _stored_result(store, options)
    if reused is not None:
        return reused
    store.forget_result()

    dim = op.shape[0]
    sketch = options.sketch(dim)
    rows = row_blocks(dim, outer, rows_within(memory_bytes, outer, inner))
    device = compute_device(device)
    op.expect(inner if recycled else outer + inner)
    before = op.matvecs
    recovered = measure_and_recover(op, store, sketch, rows, device, progress, on_block)
    measured = op.matvecs - before
    values = recovered.values.cpu()
    order = order_by(values, "LM")
    V_store = store.matrix("eigenvectors", (dim, k), rows[0].stop, np.float64)
    write_eigenvectors(rows, recovered, order[:k].to(device), V_store, device, progress)
    store.save("sketch_eigenvalues", values[order].numpy())
    info = {
        "outer": outer,
        "inner": inner,
        "recycled": recycled,
        "measured_now": measured,
        "row_blocks": len(rows),
        "qr": recovered.method,
        "cholesky_steps": recovered.cholesky_steps,
        "device": str(device),
    }
    del recovered  # with it the row blocks' buffers (up to memory_bytes): the checks need none
    result = check_and_refine(
        op,
        V_store,
        values[order[:k]].clone(),
        residuals=residuals,
        error_test_vectors=error_test_vectors,
        error_seed=sketch.seeds()["error"],
        refine_tol=refine_tol,
        tol=tol,
        block_size=product_width or block_size,  # the residuals' products as wide as the others
        info=info,
    )
    result.matvecs += measured
    store.save("eigenvalues", result.eigenvalues.numpy())
    store.save("residuals", result.residuals.numpy())
    store.save_result({"settings": options.settings(), "info": info, "matvecs": result.matvecs})
    # asked for: no WARNING, the flags say it (converged false, residual NaN)
    if warn and not residuals and refine_tol is None:
        log.info(
            "seigh: residuals=False, so the %d eigenpairs were not checked (residuals not "
            "computed; converged is false)",
            k,
        )
    elif warn:
        result.warn_unconverged("seigh", options.converged_tol(), unconverged_advice(refine_tol))
    return result


def _stored_result(store: MeasurementStore, options: SeighOptions) -> EigResult | None:
    """The saved result of a completed run with the same settings, if intact.

    The saved result of a completed run with the same settings, if its arrays read back intact
    (checksums verified); else None (and the result is recomputed).
    """
    saved = store.saved_result()
    if saved is None or saved["settings"] != options.settings():
        return None
    try:
        eigenvalues, residuals = (
            torch.from_numpy(store.load(name)) for name in ("eigenvalues", "residuals")
        )
        vectors = store.stored_matrix("eigenvectors")
        rows = max(1, (64 << 20) // (8 * vectors.shape[1]))
        # every chunk's checksum, a bounded slab at a time
        for start in range(0, vectors.shape[0], rows):
            np.asarray(vectors[start : start + rows])
    except (ValueError, KeyError, OSError) as error:
        log.warning(
            "the stored results of the completed run are damaged (%s); recomputing them",
            str(error).splitlines()[0],
        )
        return None
    log.info(
        "reusing the stored results of a completed run with the same settings (no products); use a "
        "new "
        "output directory to recompute"
    )
    return EigResult(
        eigenvalues=eigenvalues,
        eigenvectors=StoredMatrix(vectors),
        residuals=residuals,
        matvecs=0,
        converged=residuals <= options.converged_tol(),
        info={**saved["info"], "measured_now": 0, "reused": True},
    )
