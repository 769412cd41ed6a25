"""``product_width="auto"``: the widest product that fits the memory a worker has.

A product of width w on one batch needs about m(w) = a + b w bytes above what the process holds
before it: a for the batch's graph, b per column (its tangents, vmapped, and its slice of the
block in and out). m is measured at two widths on the first batch (the peak of every mode the
run may use: the largest), and the width is the largest w <= the block width with

    held + kept graphs + fixed + a + b w <= budget,

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

from pipeline.curvature.graph_cache import available_bytes
from pipeline.errors import OperationError

log = logging.getLogger(__name__)
# of the memory a worker has: the rest is left to the allocator's slack and the runtime
BUDGET_SHARE = {"cpu": 0.8, "cuda": 0.9}
# vmapped widths (width 1 skips vmap and would not predict the others), far enough apart that the
# allocator's noise is small beside their difference
PROBE_WIDTHS = (2, 8)
# on the measured needs: resident memory extrapolated from widths 2 and 8 read a product of 16
# columns up to 5% low (allocator thresholds; an MLP of 0.8M parameters)
MARGIN = 1.15


@dataclass(frozen=True)
class WidthFit:
    """The chosen width and the memory model behind it (bytes): one worker's answer."""

    width: int
    widest: int
    held_bytes: int
    graph_bytes: int
    fixed_bytes: int
    base_bytes: int
    per_column_bytes: int
    budget_bytes: int

    def peak_bytes(self, width: int) -> int:
        """The predicted peak of the worker at products of ``width`` columns."""
        return (
            self.held_bytes
            + self.graph_bytes
            + self.fixed_bytes
            + self.base_bytes
            + self.per_column_bytes * width
        )

    def describe(self) -> str:
        """One clause for the log: the width, what it needs and the budget."""
        gib = 2**30
        return (
            f"{self.width} of {self.widest} columns per product: "
            f"{self.peak_bytes(self.width) / gib:.2f} GiB predicted "
            f"({self.held_bytes / gib:.2f} held, {self.graph_bytes / gib:.2f} kept graphs, "
            f"{self.fixed_bytes / gib:.2f} blocks, {self.base_bytes / gib:.2f} + "
            f"{self.per_column_bytes / gib:.3f} per column for a product) within a budget of "
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
            f"algorithm.product_width=auto measures memory through /proc/self/clear_refs, which "
            f"this system refuses ({error}): set algorithm.product_width to a number"
        ) from None
    run()
    return max(_status_kib("VmHWM") * 1024 - before, 0)


def linear_need(need_at: Callable[[int], int], room: int, widest: int) -> tuple[int, int]:
    """(a, b) of m(w) = a + b w from the measured peaks ``need_at(w)`` at two widths.

    The first at ``PROBE_WIDTHS[0]``; the second no wider than ``room`` bytes allow were a all
    per-column (so the probe itself fits), nor than ``PROBE_WIDTHS[1]`` or ``widest``. Both a and
    b at least 0.
    """
    low = min(PROBE_WIDTHS[0], widest)
    need_low = need_at(low)
    if widest <= low:
        return need_low, 0
    upper = room // max(need_low // low, 1)  # the widest that fits if all of need_low scaled
    high = max(low + 1, min(PROBE_WIDTHS[1], widest, upper))
    per_column = max((need_at(high) - need_low) // (high - low), 0)
    return max(need_low - per_column * low, 0), per_column


def fit_width(
    base: int, per_column: int, widest: int, held: int, graphs: int, fixed: int, budget: int
) -> WidthFit:
    """The largest width <= ``widest`` whose predicted peak fits ``budget``.

    Raises OperationError naming the settings that shrink a product when not even one column fits.
    """
    free = budget - held - graphs - fixed - base
    width = min(widest, free // per_column) if per_column else widest
    fit = WidthFit(int(max(width, 1)), widest, held, graphs, fixed, base, per_column, budget)
    if width < 1 or free < 0:
        raise OperationError(
            f"a product of one column does not fit the worker's memory: "
            f"{fit.peak_bytes(1) / 2**30:.2f} GiB predicted, {budget / 2**30:.2f} GiB available "
            f"({fit.describe()}); lower data.batch_size (or curvature.graph_cache_gb, "
            "algorithm.block_size) or raise cluster.worker_memory_gb"
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
    op: Any, widest: int, budget_bytes: int | None, fixed_bytes: int, sharing: int = 1
) -> WidthFit:
    """The widest product of ``op`` (a ``CurvatureOperator``) that fits its memory budget.

    Measured on the first batch in every mode the run may use (the configured one, or under
    ``auto`` every mode without a one-off set-up), each with its graph built afresh; the
    graphs the cache may keep are those of every batch of the shard, within its budget.
    ``budget_bytes`` None: ``default_budget`` for ``sharing`` workers.
    """
    first = op._first_batch()
    products = op.products()
    modes = (
        [op.product_mode]
        if op.product_mode in products
        else [mode for mode in products if mode not in op.COSTLY_MODES]
    )
    budget = default_budget(op.device, sharing) if budget_bytes is None else budget_bytes

    def product(mode: str, width: int) -> None:
        """One batch's share of a product of ``width`` columns in ``mode``, as a pass makes it."""
        V = torch.randn(op.shape[0], width, dtype=op.dtype, device=op.device)
        with op.pinned_mode(mode):
            op.accumulate(torch.zeros_like(V), 0, first, V)

    for mode in modes:  # one-off costs (lazy imports, kernels, caches) before anything is measured
        product(mode, 1)

    def need_at(width: int) -> int:
        peaks = []
        for mode in modes:
            op.graphs.clear()
            peaks.append(peak_above_now(partial(product, mode, width), op.device))
        return max(peaks)

    held = current_bytes(op.device)
    base, per_column = (
        int(MARGIN * need) for need in linear_need(need_at, budget - held - fixed_bytes, widest)
    )
    batches = len(op.data) if isinstance(op.data, (list, tuple)) else 1
    graphs = min(op.graphs.used_bytes * batches, op.graphs.budget_bytes or 0)
    fit = fit_width(base, per_column, widest, held, graphs, fixed_bytes, budget)
    op.graphs.clear()
    return fit
