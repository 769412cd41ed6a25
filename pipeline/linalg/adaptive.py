"""Adaptive SEIGH: grow the sketch until the top-k pairs are accurate enough.

Test matrices are generated column by column from (seed, row, column), so a larger sketch with
the same seed contains the smaller one and a store grows in place: each step measures only the
new columns. Starting from ``start_outer`` (nI = 2 nO; sizes in whole measurement blocks), the sizes
grow by ``growth`` until the
worst relative residual ||H v - lambda v|| / |lambda| of the top-k pairs is at most
``target_tol``, or the next step would exceed ``max_matvecs``. Every step is kept in the store
(with its estimate), so a killed run resumes at the step it was in.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from pipeline.errors import InputError
from pipeline.linalg.operator import Operator
from pipeline.linalg.result import EigResult
from pipeline.linalg.seigh import seigh
from pipeline.linalg.validation import check_k, check_tol
from pipeline.store.memory import MemoryStore
from pipeline.store.protocol import MeasurementStore

log = logging.getLogger(__name__)
_HISTORY, _CURRENT = "adaptive_history", "adaptive_outer"


def adaptive_seigh(
    op: Operator,
    k: int,
    target_tol: float,
    *,
    max_matvecs: int | None = None,
    start_outer: int | None = None,
    growth: float = 1.5,
    block_size: int = 32,
    store=None,
    **options,
) -> EigResult:
    """Top-k eigenpairs from the smallest grown sketch that meets ``target_tol``.

    Top-k eigenpairs from the smallest grown sketch whose top-k residuals meet ``target_tol``
    (``options`` go to ``seigh``: seed, kinds, memory_bytes, problem, ...). The result's
    ``info["adaptive"]`` lists every step: outer, inner, products so far (new columns, residuals and
    test vectors of every step, however many runs it took), worst residual; ``matvecs`` counts this
    call's products; ``converged`` is against ``target_tol``, and a budget stop says so in a
    WARNING.
    """
    dim = op.shape[0]
    check_k(op, k)
    check_tol(target_tol, "target_tol")
    if growth <= 1:
        raise InputError(f"growth must be above 1 (e.g. 1.5), got {growth}")
    store = store if store is not None else MemoryStore()
    largest = (dim - 1) // 2  # inner = 2 outer <= D - 1 keeps outer < D
    history = [_noted_step(step) for step in store.noted(_HISTORY) or []]
    outer = _first_outer(store, len(history)) or max(
        k, min(_whole_blocks(start_outer or 2 * k, block_size), largest)
    )
    spent = history[-1]["matvecs"] if history else 0
    spent_now = 0
    while True:
        inner = min(2 * outer, dim)
        store.note(_CURRENT, outer)
        result = seigh(
            op,
            k,
            outer,
            inner,
            store=store,
            block_size=block_size,
            residuals=True,
            tol=target_tol,
            warn=False,
            **options,
        )
        spent_now += result.matvecs
        history = _noted_history(store, history, result, bool(options.get("recycled")), target_tol)
        spent, worst = history[-1]["matvecs"], history[-1]["worst_residual"]
        next_outer = min(_whole_blocks(math.ceil(outer * growth), block_size), largest)
        # new columns + residuals
        next_cost = (next_outer - outer) + (min(2 * next_outer, dim) - inner) + k
        if worst <= target_tol:
            break
        reason = _why_stop(outer, next_outer, spent + next_cost, max_matvecs)
        if reason:
            result.warn_unconverged(
                "adaptive seigh", target_tol, f"stopped at nO/nI = {outer}/{inner}: {reason}"
            )
            break
        outer = next_outer
    result.info["adaptive"] = history
    # over all steps, also those of an interrupted earlier run
    result.info["adaptive_matvecs"] = spent
    return dataclasses.replace(result, matvecs=spent_now)


def _why_stop(outer: int, next_outer: int, total: int, max_matvecs: int | None) -> str | None:
    """Why the sketch cannot grow to ``next_outer`` (``total`` products so far), or None."""
    if next_outer <= outer:
        return "the sketch cannot grow further"
    if max_matvecs is not None and total > max_matvecs:
        return f"max_matvecs={max_matvecs} would be exceeded"
    return None


def _first_outer(store: MeasurementStore, completed: int) -> int | None:
    """The nO of the step an interrupted run was measuring (its blocks are in the store)."""
    outer = store.noted(_CURRENT)
    if outer:
        log.info(
            "adaptive seigh: resuming the step at nO=%d after %d completed steps", outer, completed
        )
    return outer


def _noted_history(
    store: MeasurementStore,
    history: list[dict],
    result: EigResult,
    recycled: bool,
    target_tol: float,
) -> list[dict]:
    """``history`` with the step just run (outer, inner, products so far, worst residual), noted.

    The products so far count the step's new columns (also those an interrupted run measured),
    its residuals and its test vectors.
    """
    outer, inner = result.info["outer"], result.info["inner"]
    previous = history[-1] if history else {"outer": 0, "inner": 0, "matvecs": 0}
    new_columns = (inner - previous["inner"]) + (0 if recycled else outer - previous["outer"])
    spent = previous["matvecs"] + new_columns + result.matvecs - result.info["measured_now"]
    worst = float(result.residuals.max())
    step = {"outer": outer, "inner": inner, "matvecs": spent, "worst_residual": worst}
    history = [h for h in history if h["outer"] != outer] + [step]
    store.note(_HISTORY, history)
    log.info(
        "adaptive seigh: nO/nI = %d/%d, worst top-%d residual %.2e (target %.0e), %d products "
        "so far",
        outer,
        inner,
        len(result.eigenvalues),
        worst,
        target_tol,
        spent,
    )
    return history


def _noted_step(step: dict) -> dict:
    """A step as noted in the store.

    A step as noted in the store (stores written before the product count was renamed call it
    "products").
    """
    return {("matvecs" if key == "products" else key): value for key, value in step.items()}


def _whole_blocks(columns: int, block: int) -> int:
    """``columns`` rounded up to whole measurement blocks.

    ``columns`` rounded up to whole measurement blocks (a partial block is measured again when it
    grows).
    """
    return -(-columns // block) * block
