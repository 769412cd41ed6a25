"""Overlapping I/O with compute: row-block read-ahead and write-behind."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")


def prefetched(blocks: Sequence[range], load: Callable[[range], T]) -> Iterator[tuple[range, T]]:
    """Yield (block, load(block)) in order while the next block loads.

    Yield (block, load(block)) in order while a background thread already loads the next block, so
    reading (Zarr, numpy, host-to-device copies: all release the GIL) overlaps the caller's compute.
    At most two loaded blocks are alive at a time; an error in ``load`` is raised here, at the block
    it belongs to.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(load, blocks[0]) if blocks else None
        for index, block in enumerate(blocks):
            value = pending.result()
            pending = pool.submit(load, blocks[index + 1]) if index + 1 < len(blocks) else None
            yield block, value


@contextmanager
def computing_beside_reads(device: torch.device) -> Iterator[None]:
    """One CPU thread fewer for torch while the body computes beside a ``prefetched`` reader.

    The reader (Zarr decoding, test-matrix rows) keeps a core busy; BLAS threads on every core
    wait on the one it delays at each barrier. On the 2-core VM post-processing at D = 11.7M took
    46-52 s with two BLAS threads and 23-34 s with one. Nothing changes on a GPU or with one
    thread.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        yield
        return
    torch.set_num_threads(threads - 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class AlternatingBuffers:
    """Memory for the row blocks ``prefetched`` loads: call i gets buffer i % 2.

    ``prefetched`` keeps at most two loaded blocks alive (the one being used, the one loading), so
    the buffer a load fills was released by the block before last. Reused memory skips the first
    touch of fresh memory (a page fault per 4 KiB: on the 2-core VM, reading a row block of the
    store into fresh arrays took 9x as long as into reused ones). A buffer grows when a block
    needs more; blocks of any shape share it, so one pass's buffers serve the next.
    """

    def __init__(self, dtype: np.dtype | type = np.float64):
        self.dtype = dtype
        self._flat: list[np.ndarray | None] = [None, None]
        self._calls = 0

    def next(self, rows: int, columns: int) -> np.ndarray:
        """The next buffer as a (rows, columns) C-contiguous array (uninitialised)."""
        slot, self._calls = self._calls % 2, self._calls + 1
        flat = self._flat[slot]
        if flat is None or flat.size < rows * columns:
            flat = self._flat[slot] = np.empty(rows * columns, self.dtype)
        return flat[: rows * columns].reshape(rows, columns)


class WriteBehind:
    """One write at a time in a background thread.

    One write at a time in a background thread, so the caller computes the next block while the last
    one is written. ``submit`` first waits for the previous write (raising its error); ``wait``
    waits for the last one. Nothing is dropped: every submitted write finishes or raises.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def submit(self, write: Callable[..., Any], *args: Any) -> float:
        """Start ``write(*args)``; returns the seconds spent waiting for the previous write."""
        waited = self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-behind")
        self._pending = self._pool.submit(write, *args)
        return waited

    def wait(self) -> float:
        """Wait for the pending write (re-raising its error); returns the seconds waited."""
        pending, self._pending = self._pending, None
        if pending is None:
            return 0.0
        start = time.perf_counter()
        pending.result()
        return time.perf_counter() - start
