"""SEIGH's first stage.

The outer and inner measurements Y = H Omega and W = H Psi^T, block by block into a
``MeasurementStore``, resumable (only unmarked blocks are measured) and repaired (blocks whose data
is damaged are unmarked by recovery and measured again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.errors import OperationError
from pipeline.linalg.measurer import Measurer, measurer_for
from pipeline.linalg.operator import Operator
from pipeline.linalg.recovery import DamagedMeasurements, Measurements, Recovered, recover
from pipeline.progress import tracked
from pipeline.store.protocol import BlockedColumns, MeasurementStore

log = logging.getLogger("pipeline.linalg.seigh")
MEASURE_ROUNDS = 3


def derived_seed(seed: int, stream: int) -> int:
    """Independent seeds for Omega (0), Psi (1) and the error probes (2)."""
    return int(
        np.random.SeedSequence([int(seed), stream]).generate_state(1, dtype=np.uint64)[0] >> 1
    )


@dataclass(frozen=True)
class SketchSpec:
    """The measurements of one sketch.

    Y (dim, outer) with ``outer_kind`` Omega, W (dim, inner) with ``inner_kind`` Psi, in blocks of
    ``block_size`` columns; ``recycled``: Omega = the first nO columns of Psi^T, so Y is the first
    nO columns of W.
    """

    dim: int
    outer: int
    inner: int
    seed: int
    block_size: int
    outer_kind: str
    inner_kind: str
    recycled: bool
    # products of at most this many columns of a block (None: a block at once)
    product_width: int | None = None

    def seeds(self) -> dict[str, int]:
        """The test matrices' seeds, derived from ``seed``."""
        seeds = {
            name: derived_seed(self.seed, i) for i, name in enumerate(("outer", "inner", "error"))
        }
        if self.recycled:
            seeds["outer"] = seeds["inner"]
        return seeds


def measure_and_recover(
    op: Operator,
    store: MeasurementStore,
    sketch: SketchSpec,
    rows: list[range],
    device: torch.device,
    progress: bool | None = None,
    on_block: Callable[[str, range], None] | None = None,
) -> Recovered:
    """Measure every missing block, then recover the core (``pipeline.linalg.recovery``).

    Blocks recovery finds damaged (checksums, truncation, non-finite) are measured again, at most
    ``MEASURE_ROUNDS`` times.
    """
    seeds = sketch.seeds()
    W = store.columns(
        "inner", sketch.dim, sketch.inner, sketch.block_size, op.dtype, row_chunk=len(rows[0])
    )
    Y = (
        W
        if sketch.recycled
        else store.columns(
            "outer", sketch.dim, sketch.outer, sketch.block_size, op.dtype, row_chunk=len(rows[0])
        )
    )
    arrays = [("inner", W, sketch.inner_kind, seeds["inner"])]
    if not sketch.recycled:
        arrays.append(("outer", Y, sketch.outer_kind, seeds["outer"]))
    meas = Measurements(Y, W, sketch.outer, sketch.inner_kind, seeds["inner"], sketch.recycled)
    measurer = measurer_for(op)
    for _ in range(MEASURE_ROUNDS):
        for name, array, kind, kind_seed in arrays:
            measure_columns(
                measurer,
                store,
                array,
                kind,
                kind_seed,
                name,
                progress,
                on_block,
                sketch.product_width,
            )
        try:
            return recover(meas, rows, store, device, progress)
        # checksum mismatch, truncated or lost chunks: unmarked, remeasure now
        except DamagedMeasurements as error:
            log.warning("%s; remeasuring them now", error)
            damage = error
    raise damage


def measure_columns(
    measurer: Measurer,
    store: MeasurementStore,
    array: BlockedColumns,
    kind: str,
    seed: int,
    name: str,
    progress: bool | None = None,
    on_block: Callable[[str, range], None] | None = None,
    width: int | None = None,
) -> None:
    """Measure every unmarked block of ``array``.

    Writes run behind the products (``measurer.wait_for_writes``); a block whose write was lost (a
    worker died with it pending) is still unmarked afterwards and measured again, so the loop ends
    only when every block is marked. The store's fingerprint is adopted once the first block is
    complete.
    """
    missing = array.missing_blocks()
    done = len(array.blocks()) - len(missing)
    adopted = done > 0
    if done:
        log.info(
            "%s measurements: %d of %d blocks already in the store, measuring %d",
            name,
            done,
            len(array.blocks()),
            len(missing),
        )
    for attempt in range(MEASURE_ROUNDS):
        if not missing:
            return
        if attempt:
            log.warning(
                "%s measurements: %d blocks were not written (a worker died?); measuring them "
                "again",
                name,
                len(missing),
            )
        try:
            for columns in tracked(
                missing,
                total=len(missing),
                desc=f"{name} measurements",
                unit="blocks",
                progress=progress,
            ):
                block = measurer.measure(kind, seed, columns, writer=array.writer, width=width)
                if block is not None:
                    array.write(columns, block)
                if not adopted:
                    measurer.wait_for_writes()
                    store.adopt()
                    adopted = True
                if on_block is not None:
                    on_block(name, columns)
        finally:
            # products already made are kept, also when the loop is interrupted
            measurer.wait_for_writes()
        missing = array.missing_blocks()
    if missing:
        raise OperationError(
            f"{name} measurements: blocks {[c.start for c in missing]} are still not marked after "
            f"{MEASURE_ROUNDS} rounds; check the store's disk and permissions"
        )
