"""SEIGH: sketched symmetric eigendecomposition from outer and inner measurements.

Tropp, Yurtsever, Udell, Cevher (2019), symmetric case: Y = H Omega (D x nO), W = H Psi^T
(D x nI), Z = Psi W; Q = orth(Y) in float64; C = (Psi Q)^+ Z ((Psi Q)^+)^T by QR solves,
symmetrised; C = U L U^T; V = Q U (top k by |lambda|). Measurement is here; the streamed
recovery (Cholesky QR / TSQR, Psi Q, core, V) is ``pipeline.linalg.recovery``. Every pass over
D-sized data reads row blocks, so peak memory is a few row blocks whatever nO x D is; the same
code runs on in-memory arrays and on a Zarr store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from pipeline.errors import InputError, OperationError
from pipeline.linalg.aposteriori import as_dict, frobenius_error, pair_residuals
from pipeline.linalg.lanczos import lanczos, order_by
from pipeline.linalg.measurements import BlockedColumns, MemoryStore
from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import GENERATOR_VERSION, KINDS, ROW_ACCESSIBLE
from pipeline.linalg.recovery import DamagedMeasurements, Measurements, recover, write_eigenvectors
from pipeline.linalg.result import EigResult
from pipeline.linalg.streaming import compute_device
from pipeline.linalg.validation import check_k, check_positive, check_tol
from pipeline.progress import tracked

log = logging.getLogger(__name__)
_MEASURE_ROUNDS = 3


def derived_seed(seed: int, stream: int) -> int:
    """Independent seeds for Omega (0), Psi (1) and the error probes (2)."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seigh(
    op: Operator,
    k: int,
    outer: int,
    inner: int,
    seed: int = 0,
    store=None,
    block_size: int = 32,
    outer_kind: str = "rademacher",
    inner_kind: str = "rademacher",
    recycled: bool = False,
    residuals: bool = True,
    error_test_vectors: int = 8,
    refine_tol: float | None = None,
    tol: float = 1e-3,
    memory_bytes: int = 2**30,
    problem: dict | None = None,
    progress: bool | None = None,
    on_block: Callable[[str, range], None] | None = None,
    device: str | torch.device | None = None,
    warn: bool = True,
) -> EigResult:
    """Top-k eigenpairs (by |lambda|) of ``op`` from ``outer`` + ``inner`` measurements.

    ``store``: None (in memory) or a ``pipeline.store.RunStore``; measurements already in the
    store are reused (resume), a store of another configuration is refused. ``recycled`` uses
    the first nO columns of Psi^T as Omega (nI products instead of nO + nI). ``residuals``
    spends k more products on ||H v - lambda v|| / |lambda|; ``error_test_vectors`` q more on the
    Frobenius error estimate. ``refine_tol`` runs block Lanczos started from the SEIGH vectors
    until every residual is below it; ``converged`` compares the residuals with ``refine_tol``, else
    ``tol`` (pairs whose residual was not computed count as not converged), and unconverged
    pairs are named in a WARNING (``warn=False``: left to the caller). ``memory_bytes`` bounds the row blocks of post-processing.
    ``problem`` (a dict) names the operator in the store's fingerprint. The a-posteriori figures
    and refinement hold the D x k eigenvectors in memory; post-processing itself streams (see
    ``pipeline.linalg.recovery``) on ``device`` (default: CUDA when available, else the CPU).
    """
    dim = op.shape[0]
    check_k(op, k)
    check_positive(block_size, "block_size")
    check_tol(tol)
    if refine_tol is not None:
        check_tol(refine_tol, "refine_tol")
    if not k <= outer < dim:
        raise InputError(f"outer must satisfy k={k} <= outer < D={dim}, got {outer}")
    if not 2 * outer <= inner <= dim:
        raise InputError(f"inner must satisfy 2 * outer = {2 * outer} <= inner <= D = {dim}, got {inner}")
    if outer_kind not in KINDS:
        raise InputError(f"unknown outer test matrix {outer_kind!r}; choose one of {KINDS}")
    if inner_kind not in ROW_ACCESSIBLE:
        raise InputError(f"inner test matrix must be one of {ROW_ACCESSIBLE} (Psi is streamed by rows), got {inner_kind!r}")
    store = store if store is not None else MemoryStore()
    outer_kind = inner_kind if recycled else outer_kind
    seeds = {name: derived_seed(seed, i) for i, name in enumerate(("outer", "inner", "error"))}
    if recycled:
        seeds["outer"] = seeds["inner"]
    store.bind({  # outer / inner are not part of it: a store grows to larger sketches and serves smaller ones
        "dim": dim, "dtype": str(op.dtype), "seed": seed, "block_size": block_size,
        "outer_kind": outer_kind, "inner_kind": inner_kind, "recycled": recycled, "problem": problem or {},
        "test_matrices": GENERATOR_VERSION,
    })

    rows = _row_blocks(dim, outer, memory_bytes // (8 * (3 * outer + 5 * inner)))
    if store.row_chunk is None:
        store.row_chunk = len(rows[0])  # measurement chunks line up with the row blocks read later
    settings = {"k": k, "outer": outer, "inner": inner, "residuals": residuals, "error_test_vectors": error_test_vectors,
                "refine_tol": refine_tol, "tol": tol}
    reused = _stored_result(store, settings)
    if reused is not None:
        return reused
    store.forget_result()
    before = op.matvecs
    W = store.columns("inner", dim, inner, block_size, op.dtype)
    Y = W if recycled else store.columns("outer", dim, outer, block_size, op.dtype)
    arrays = [("inner", W, inner_kind, seeds["inner"])] + ([] if recycled else [("outer", Y, outer_kind, seeds["outer"])])
    device = compute_device(device)
    meas = Measurements(Y, W, outer, inner_kind, seeds["inner"], recycled)
    for attempt in range(_MEASURE_ROUNDS):
        for name, array, kind, kind_seed in arrays:
            _measure(op, store, array, kind, kind_seed, name, progress, on_block)
        try:
            recovered = recover(meas, rows, store, device, progress)
            break
        except DamagedMeasurements as damage:  # checksum mismatch, truncated or lost chunks: unmarked, remeasure now
            log.warning("%s; remeasuring them now", damage)
            if attempt == _MEASURE_ROUNDS - 1:
                raise
    measured = op.matvecs - before
    values = recovered.values.cpu()
    order = order_by(values, "LM")
    V_store = store.matrix("eigenvectors", (dim, k), rows[0].stop, np.float64)
    write_eigenvectors(rows, recovered, order[:k].to(device), V_store, device, progress)
    eigenvalues = values[order[:k]].clone()
    store.save("sketch_eigenvalues", values[order].numpy())
    info = {"outer": outer, "inner": inner, "recycled": recycled, "measured_now": measured, "row_blocks": len(rows),
            "qr": recovered.method, "cholesky_steps": recovered.cholesky_steps, "device": str(device)}
    result = _finish(op, store, V_store, eigenvalues, info, before, k, block_size, residuals, error_test_vectors,
                     seeds["error"], refine_tol, tol, warn)
    store.save_result({"settings": settings, "info": info, "matvecs": result.matvecs})
    return result


def _stored_result(store, settings: dict) -> EigResult | None:
    """The saved result of a completed run with the same settings, if its arrays read back
    intact (checksums verified); else None (and the result is recomputed)."""
    saved = store.saved_result()
    if saved is None or saved["settings"] != settings:
        return None
    try:
        eigenvalues, residuals = (torch.from_numpy(store.load(name)) for name in ("eigenvalues", "residuals"))
        vectors = store.stored_matrix("eigenvectors")
        rows = max(1, (64 << 20) // (8 * vectors.shape[1]))
        for start in range(0, vectors.shape[0], rows):  # every chunk's checksum, a bounded slab at a time
            np.asarray(vectors[start : start + rows])
    except (ValueError, KeyError, OSError) as error:
        log.warning("the stored results of the completed run are damaged (%s); recomputing them", str(error).splitlines()[0])
        return None
    log.info("reusing the stored results of a completed run with the same settings (no products); use a new "
             "output directory to recompute")
    tol = settings["refine_tol"] if settings["refine_tol"] is not None else settings["tol"]
    return EigResult(eigenvalues=eigenvalues, eigenvectors=store.eigenvectors(vectors), residuals=residuals, matvecs=0,
                     converged=residuals <= tol, info={**saved["info"], "measured_now": 0, "reused": True})


def _measure(op: Operator, store, array: BlockedColumns, kind: str, seed: int, name: str, progress, on_block) -> None:
    """Measure every unmarked block. Writes run behind the products (``op.wait_for_writes``); a
    block whose write was lost (a worker died with it pending) is still unmarked afterwards and
    measured again, so the loop ends only when every block is marked."""
    missing = array.missing_blocks()
    done = len(array.blocks()) - len(missing)
    adopted = done > 0
    if done:
        log.info("%s measurements: %d of %d blocks already in the store, measuring %d", name, done, len(array.blocks()), len(missing))
    for attempt in range(_MEASURE_ROUNDS):
        if not missing:
            return
        if attempt:
            log.warning("%s measurements: %d blocks were not written (a worker died?); measuring them again", name, len(missing))
        try:
            for columns in tracked(missing, total=len(missing), desc=f"{name} measurements", unit="blocks", progress=progress):
                block = op.measure(kind, seed, columns, writer=array.writer)
                if block is not None:
                    array.write(columns, block)
                if not adopted:  # the store's fingerprint is written once a block is complete
                    op.wait_for_writes()
                    store.adopt()
                    adopted = True
                if on_block is not None:
                    on_block(name, columns)
        finally:
            op.wait_for_writes()  # products already made are kept, also when the loop is interrupted
        missing = array.missing_blocks()
    if missing:
        raise OperationError(f"{name} measurements: blocks {[c.start for c in missing]} are still not marked after "
                           f"{_MEASURE_ROUNDS} rounds; check the store's disk and permissions")


def _row_blocks(dim: int, min_rows: int, target_rows: int) -> list[range]:
    """Row blocks of about ``target_rows`` rows, each with at least ``min_rows`` (for the QR)."""
    height = max(min_rows, target_rows, 1)
    count = max(1, dim // height)
    edges = np.linspace(0, dim, count + 1).round().astype(int)
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _finish(op, store, V_store, eigenvalues, info, before, k, block_size, residuals, error_test_vectors, error_seed, refine_tol, tol,
            warn) -> EigResult:
    V = torch.from_numpy(np.asarray(V_store[:])) if refine_tol is not None or residuals or error_test_vectors else None
    res = torch.full((k,), float("nan"), dtype=torch.float64)
    if refine_tol is not None:
        refined = lanczos(op, k, tol=refine_tol, start=V.to(op.device), block_size=k, ncv=3 * k)
        order = order_by(refined.eigenvalues, "LM")
        eigenvalues, V, res = refined.eigenvalues[order], refined.eigenvectors[:, order].cpu(), refined.residuals[order]
        V_store[:] = V.numpy()
        info["refine_matvecs"] = refined.matvecs
    elif residuals:
        res = pair_residuals(op, eigenvalues, V.to(op.device), block_size)
    if error_test_vectors:
        info["frobenius_error"] = as_dict(frobenius_error(op, eigenvalues, V.to(op.device), error_test_vectors, error_seed, block_size))
    store.save("eigenvalues", eigenvalues.numpy())
    store.save("residuals", res.numpy())
    tol = refine_tol if refine_tol is not None else tol
    result = EigResult(
        eigenvalues=eigenvalues,
        eigenvectors=store.eigenvectors(V_store),
        residuals=res,
        matvecs=op.matvecs - before,
        converged=res <= tol,
        info=info,
    )
    advice = ("refinement stopped at its budget: raise refine_tol or the sketch size" if refine_tol is not None else
              "these eigenvalues may be far off: set refine_tol (e.g. 1e-3) to refine them with Lanczos, or use larger "
              "outer/inner" + ("" if residuals else " (residuals=False: convergence was not checked)"))
    if warn:
        result.warn_unconverged("seigh", tol, advice)
    return result
