"""``block_size="auto"`` for Krylov eigensolvers: the block width with the least expected wall time.

A block Krylov method of width b needs more products than b = 1 for the same k pairs: measured
on Hessians and synthetic spectra (BENCHMARKS.md), about P(b) = P(1) (1 + 3 (b - 1) / k). A
block product may cost less per vector than a single one (t(b) / b < t(1)), so the expected wall
time is P(b) t(b) / b. Widths are timed only where the work ahead can repay the timing: about
3k single products against the few products timing the candidate widths costs.
"""

from __future__ import annotations

import logging

from pipeline.linalg.operator import Operator

log = logging.getLogger(__name__)

CANDIDATES = (1, 2, 4)
PRODUCT_GROWTH = 3.0  # P(b) / P(1) = 1 + PRODUCT_GROWTH (b - 1) / k
REPAY = 10.0  # time the widths only where the expected work is this many times the timing's cost


def expected_products_ratio(width: int, k: int) -> float:
    """P(b) / P(1): how many more products a block of ``width`` needs for k pairs."""
    return 1.0 + PRODUCT_GROWTH * (width - 1) / k


def choose_block_width(op: Operator, k: int) -> int:
    """The block width in ``CANDIDATES`` (at most k) that takes least time per vector.

    The width in ``CANDIDATES`` (at most k) minimising P(b) t(b) / b, from the operator's own timing
    (``op.pass_seconds``); 1 where the operator cannot time itself or the work is too small to repay
    timing the wider blocks (timing a width costs ``op.probe_share()`` of a pass at that width).
    """
    candidates = [b for b in CANDIDATES if b <= k]
    single = op.pass_seconds(1)
    if single is None or len(candidates) == 1:
        return 1
    work = 3 * k * single
    timing_cost = single * op.probe_share() * sum(candidates[1:])
    if work < REPAY * timing_cost:
        log.info(
            "block_size=auto: 1 (about %.3g s of products ahead, too little to repay timing wider "
            "blocks)",
            work,
        )
        return 1
    per_vector = {b: (op.pass_seconds(b) if b > 1 else single) / b for b in candidates}
    expected = {b: expected_products_ratio(b, k) * per_vector[b] for b in candidates}
    best = min(expected, key=expected.__getitem__)
    log.info(
        "block_size=auto: %d (expected seconds per single-vector product's worth of work: %s)",
        best,
        ", ".join(f"b={b} {expected[b]:.3g}" for b in candidates),
    )
    return best
