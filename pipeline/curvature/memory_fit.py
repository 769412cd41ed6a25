"""``auto`` sizes: the widest product, or the largest batch, that fits the memory a worker has.

A product of width w on a batch of n samples needs about m = a + b s bytes above what the process
holds before it, s the size being chosen (w, or n at the run's product width): a for the graph of
the batch (or the tangents of the columns), b per column (its tangents, vmapped, and its slice of
the block in and out) or per sample (its activations and their tangents). m is measured at two
sizes on the first batch (the peak of every mode the run may use: the largest), and the size is
the largest s <= its limit (the block width, the shard's samples) with

    held + kept graphs + fixed + a + b s <= budget,

where ``held`` is what the process holds now (model, shard, runtime), ``kept graphs`` what the
graph cache may keep (``curvature.graph_cache_gb``), and ``fixed`` the blocks a measurement keeps
beside its products (the block being assembled and the one being written). The budget is
``cluster.worker_memory_gb`` or a share of the memory the worker's node (or GPU) has.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch

from pipeline.curvature.data_passes import NO_SHARD
from pipeline.curvature.graph_cache import available_bytes
from pipeline.errors import InputError, OperationError

log = logging.getLogger(__name__)
# of the memory a worker has: the rest is left to the allocator's slack and the runtime
BUDGET_SHARE = {"cpu": 0.8, "cuda": 0.9}
# vmapped widths (width 1 skips vmap and would not predict the others), far enough apart that the
# allocator's noise is small beside their difference
PROBE_WIDTHS = (2, 8)
# batch sizes: a batch's activations grow with it beside the fixed tangents of the columns
PROBE_BATCHES = (4, 16)
# on the measured needs: resident memory extrapolated from widths 2 and 8 read a product of 16
# columns up to 5% low (allocator thresholds; an MLP of 0.8M parameters)
MARGIN = 1.15
# what a size counts, and the settings that lower the need when not even one fits
UNITS = {
    "column": (
        "columns per product",
        "lower data.batch_size (or curvature.graph_cache_gb, algorithm.block_size)",
    ),
    "sample": (
        "samples per batch",
        "lower algorithm.product_width (or algorithm.block_size, curvature.graph_cache_gb)",
    ),
}


@dataclass(frozen=True)
class MemoryFit:
    """The chosen size (of a ``unit``: column or sample) and the memory model behind it (bytes).

    One worker's answer: ``size`` of at most ``largest``, predicted to peak at
    held + graphs + fixed + base + per_unit x size.
    """

    size: int
    largest: int
    unit: str
    held_bytes: int
    graph_bytes: int
    fixed_bytes: int
    base_bytes: int
    per_unit_bytes: int
    budget_bytes: int

    def peak_bytes(self, size: int) -> int:
        """The predicted peak of the worker at ``size`` units."""
        return (
            self.held_bytes
            + self.graph_bytes
            + self.fixed_bytes
            + self.base_bytes
            + self.per_unit_bytes * size
        )

    def describe(self) -> str:
        """One clause for the log: the size, what it needs and the budget."""
        gib = 2**30
        return (
            f"{self.size} of {self.largest} {UNITS[self.unit][0]}: "
            f"{self.peak_bytes(self.size) / gib:.2f} GiB predicted "
            f"({self.held_bytes / gib:.2f} held, {self.graph_bytes / gib:.2f} kept graphs, "
            f"{self.fixed_bytes / gib:.2f} blocks, {self.base_bytes / gib:.2f} + "
            f"{self.per_unit_bytes / gib:.3f} per {self.unit}) within a budget of "
            f"{self.budget_bytes / gib:.2f} GiB"
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields, for results.json and the driver."""
        return asdict(self)


def default_budget(device: torch.device, sharing: int) -> int:
    """A share of what this process could use: its own memory plus what is free, over ``sharing``.

    ``sharing`` is the number of workers on this node (CPU) or this GPU (CUDA).
    """
    if device.type == "cuda":
        own = torch.cuda.memory_reserved(device)
    else:
        own = current_bytes(device)
    return int(BUDGET_SHARE[device.type] * (own + available_bytes(device)) / max(sharing, 1))


def current_bytes(device: torch.device) -> int:
    """Bytes this process holds now: CUDA memory allocated, or resident memory (VmRSS)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _status_kib("VmRSS") * 1024


def peak_above_now(run: Callable[[], Any], device: torch.device) -> int:
    """Bytes ``run()`` held at its peak above what this process held before it.

    CUDA: the allocator's peak statistics. CPU: freed heap is returned first (malloc_trim), the
    kernel's high-water mark is reset (/proc/self/clear_refs) and read after (VmHWM).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    _trim_heap()
    before = current_bytes(device)
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the peak resident set size (Linux 4.0+)
    except OSError as error:
        raise OperationError(
            "an auto size (algorithm.product_width, data.batch_size) measures memory through "
            f"/proc/self/clear_refs, which this system refuses ({error}): set it to a number"
        ) from None
    run()
    return max(_status_kib("VmHWM") * 1024 - before, 0)


def linear_need(
    need_at: Callable[[int], int], room: int, largest: int, probes: tuple[int, int]
) -> tuple[int, int]:
    """(a, b) of m(s) = a + b s from the measured peaks ``need_at(s)`` at two sizes.

    The first at ``probes[0]``; the second no larger than ``room`` bytes allow were a all per-unit
    (so the probe itself fits), nor than ``probes[1]`` or ``largest``; where even one unit more
    than the first might not fit, the second is 1 (below it: no probe beyond the room, and the
    answer lies below anyway; the rehearsal's width fit probed 3 columns where 2 did not fit).
    Both a and b at least 0.
    """
    low = min(probes[0], largest)
    need_low = need_at(low)
    if largest <= low:
        return need_low, 0
    upper = room // max(need_low // low, 1)  # the largest that fits if all of need_low scaled
    if upper <= low and low > 1:
        other = 1
    else:
        other = max(low + 1, min(probes[1], largest, upper))
    per_unit = max((need_at(other) - need_low) // (other - low), 0)
    return max(need_low - per_unit * low, 0), per_unit


def fit_size(
    base: int,
    per_unit: int,
    largest: int,
    held: int,
    graphs: int,
    fixed: int,
    budget: int,
    unit: str,
) -> MemoryFit:
    """The largest size <= ``largest`` whose predicted peak fits ``budget``.

    Raises OperationError naming the settings that shrink the need when not even one unit fits.
    """
    free = budget - held - graphs - fixed - base
    size = min(largest, free // per_unit) if per_unit else largest
    fit = MemoryFit(int(max(size, 1)), largest, unit, held, graphs, fixed, base, per_unit, budget)
    if size < 1 or free < 0:
        raise OperationError(
            f"not even one {unit} ({UNITS[unit][0]}) fits the worker's memory: "
            f"{fit.peak_bytes(1) / 2**30:.2f} GiB predicted, {budget / 2**30:.2f} GiB available "
            f"({fit.describe()}); {UNITS[unit][1]} or raise cluster.worker_memory_gb"
        )
    return fit


def _status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OperationError(f"/proc/self/status has no {field}: memory cannot be measured here")


def _trim_heap() -> None:
    """Return freed heap to the system (glibc's malloc_trim), so the next peak is the run's own."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def operator_width_fit(
    op: Any,
    widest: int,
    budget_bytes: int | None,
    fixed_bytes: int,
    sharing: int = 1,
    probe_fixed_bytes: int = 0,
) -> MemoryFit:
    """The widest product of ``op`` (a ``CurvatureOperator``) that fits its memory budget.

    Measured on the first batch in every mode the run may use (``fit_modes``), each with its graph
    built afresh; the graphs the cache may keep are those of every batch of the shard, within its
    budget. ``budget_bytes`` None: ``default_budget`` for ``sharing`` workers. The probes are sized
    for at least ``probe_fixed_bytes`` held beside them: a rank without the store blocks probes as
    small as the rank with them, whose fit binds (on the rehearsal the other rank probed 8 columns
    in every mode, 11 s, for a fit the run could not use).
    """
    first = op._first_batch()
    modes = fit_modes(op)
    budget = default_budget(op.device, sharing) if budget_bytes is None else budget_bytes
    warm_up(op, modes, first, min(PROBE_WIDTHS[0], widest))  # vmapped: its one-off costs too

    def need_at(width: int) -> int:
        return _peak_of_modes(op, modes, lambda mode: one_batch_product(op, mode, first, width))

    held = current_bytes(op.device)
    base, per_column = (
        int(MARGIN * need)
        for need in linear_need(
            need_at, budget - held - max(fixed_bytes, probe_fixed_bytes), widest, PROBE_WIDTHS
        )
    )
    batches = len(op.data) if isinstance(op.data, (list, tuple)) else 1
    graphs = min(op.graphs.used_bytes * batches, op.graphs.budget_bytes or 0)
    fit = fit_size(base, per_column, widest, held, graphs, fixed_bytes, budget, "column")
    op.graphs.clear()
    return fit


def operator_batch_fit(
    op: Any,
    width: int,
    budget_bytes: int | None,
    fixed_bytes: int,
    sharing: int = 1,
    probe_fixed_bytes: int = 0,
) -> MemoryFit:
    """The largest batch of ``op``'s shard whose products of ``width`` columns fit its budget.

    Measured on batches of the shard's first samples (``op.shard``) in every mode the run may use,
    each batch loaded and prepared inside the measurement (its own memory counts); the graphs the
    cache may keep are those of every sample of the shard, within its budget. Probes sized as for
    ``operator_width_fit``.
    """
    shard = op.shard
    if shard is None:
        raise InputError(NO_SHARD)
    modes = fit_modes(op)
    budget = default_budget(op.device, sharing) if budget_bytes is None else budget_bytes
    warm_up(op, modes, op._prepare(shard.first(1)), width)
    probed = 0  # the last batch measured: its graph is the one the cache holds after

    def need_at(samples: int) -> int:
        nonlocal probed
        probed = samples
        return _peak_of_modes(
            op,
            modes,
            lambda mode: one_batch_product(op, mode, op._prepare(shard.first(samples)), width),
        )

    held = current_bytes(op.device)
    base, per_sample = (
        int(MARGIN * need)
        for need in linear_need(
            need_at, budget - held - max(fixed_bytes, probe_fixed_bytes), len(shard), PROBE_BATCHES
        )
    )
    graph_per_sample = op.graphs.used_bytes / max(probed, 1)
    graphs = min(int(graph_per_sample * len(shard)), op.graphs.budget_bytes or 0)
    fit = fit_size(base, per_sample, len(shard), held, graphs, fixed_bytes, budget, "sample")
    op.graphs.clear()
    return fit


def fit_modes(op: Any) -> list[str]:
    """The product modes a run may use: the configured one, or every mode without a one-off set-up.

    (The latter under ``product_mode=auto``.)
    """
    products = op.products()
    if op.product_mode in products:
        return [op.product_mode]
    return [mode for mode in products if mode not in op.COSTLY_MODES]


def warm_up(op: Any, modes: list[str], batch: tuple[Any, torch.Tensor, int], width: int) -> None:
    """One product of each mode at ``width`` on ``batch``, before anything is measured.

    Its one-off costs (lazy imports, kernels, caches, vmap's at widths above 1) would otherwise
    be read as the first probe's need: a fresh Ray worker warmed at width 1 then measured less
    at 8 columns than at 2, a slope of 0.
    """
    for mode in modes:
        one_batch_product(op, mode, batch, width)


def one_batch_product(op: Any, mode: str, batch: tuple[Any, torch.Tensor, int], width: int) -> None:
    """One batch's share of a product of ``width`` random columns in ``mode``, as passes make it."""
    V = torch.randn(op.shape[0], width, dtype=op.dtype, device=op.device)
    with op.pinned_mode(mode):
        op.accumulate(torch.zeros_like(V), 0, batch, V)


def _peak_of_modes(op: Any, modes: list[str], run: Callable[[str], None]) -> int:
    """The largest ``peak_above_now`` of ``run(mode)`` over ``modes``, each with no graph kept."""
    peaks = []
    for mode in modes:
        op.graphs.clear()
        peaks.append(peak_above_now(partial(run, mode), op.device))
    return max(peaks)
