"""What SEIGH needs of a store.

Column-blocked arrays with completion marks (``BlockedColumns``), the ``MeasurementStore`` protocol,
the ``ColumnWriter`` that workers write blocks through, and ``StoredMatrix``, a matrix read back by
row blocks.

``BlockedColumns`` works on anything sliceable like numpy (numpy arrays in ``MemoryStore``, Zarr
arrays in ``RunStore``): a block's mark is set only after its data is written, so a run killed at
any point resumes by measuring exactly the unmarked blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


class ColumnWriter(Protocol):
    """Receives measured column blocks (e.g. a Zarr array writer); must be picklable to travel."""

    def write(self, columns: range, block: torch.Tensor) -> None:
        """Write ``block`` (D, len(columns)) as ``columns`` and mark them complete."""


class ChunkIO(Protocol):
    """Reads and writes an array's chunks directly (its chunk files), faster than its slices."""

    def read(self, rows: range, columns: range, out: np.ndarray) -> None:
        """out[:] = array[rows, columns], out float64 (len(rows), len(columns))."""

    def write(self, columns: range, values: np.ndarray) -> bool:
        """array[:, columns] = values; False (nothing written) where it cannot."""


class BlockedColumns:
    """A (D, n) measurement array written in blocks of ``block`` columns; ``done[i]`` marks block i.

    ``ncols`` (default: all) views the first ncols columns of a wider stored array (a sketch
    shrunk after it grew): its blocks are the stored blocks that hold those columns, measured
    whole, and readers see ncols columns. ``writer`` (picklable, or None) lets remote workers
    write blocks themselves; ``chunk_io`` (or None) reads and writes ``data``'s chunks directly.
    """

    def __init__(
        self,
        data: Any,
        done: Any,
        block: int,
        writer: ColumnWriter | None = None,
        ncols: int | None = None,
        chunk_io: ChunkIO | None = None,
    ):
        self.data, self.done, self.block, self.writer = data, done, block, writer
        self.chunk_io = chunk_io
        self.shape = (data.shape[0], data.shape[1] if ncols is None else ncols)

    def blocks(self) -> list[range]:
        """The column ranges of the blocks, the last one possibly partial."""
        stored = self.data.shape[1]
        return [
            range(start, min(start + self.block, stored))
            for start in range(0, self.shape[1], self.block)
        ]

    def missing_blocks(self) -> list[range]:
        """The blocks not yet marked complete."""
        marks = np.asarray(self.done[:])
        return [cols for index, cols in enumerate(self.blocks()) if not marks[index]]

    def write(self, columns: range, values: torch.Tensor | np.ndarray) -> None:
        """Store columns ``columns`` (aligned to one block), then mark the block complete."""
        if columns.start % self.block or len(columns) != len(
            self.blocks()[columns.start // self.block]
        ):
            raise ValueError(f"columns {columns} are not one whole block of {self.block}")
        array = (
            values.detach().cpu().numpy()
            if isinstance(values, torch.Tensor)
            else np.asarray(values)
        )
        if self.chunk_io is None or not self.chunk_io.write(columns, array):
            self.data[:, columns.start : columns.stop] = array.astype(self.data.dtype, copy=False)
        self.done[columns.start // self.block] = 1

    def unmark(self, columns: range) -> None:
        """Forget the blocks overlapping ``columns``: they are remeasured.

        Forget the blocks overlapping ``columns`` (their data is damaged); they are remeasured.
        """
        for index in range(columns.start // self.block, (columns.stop - 1) // self.block + 1):
            self.done[index] = 0

    def read_rows(
        self, rows: range, ncols: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Rows ``rows`` of the first ``ncols`` columns as float64 (m, ncols).

        Into ``out`` (float64, (m, ncols), C-contiguous) where given: through ``chunk_io``, or a
        Zarr array decodes its chunks straight into it (cast on the way), with no temporary of the
        block's size.
        """
        ncols = self.shape[1] if ncols is None else ncols
        selection = (slice(rows.start, rows.stop), slice(0, ncols))
        if out is None:
            return np.asarray(self.data[selection], dtype=np.float64)
        if self.chunk_io is not None:
            self.chunk_io.read(rows, range(ncols), out)
            return out
        if hasattr(self.data, "get_basic_selection"):  # Zarr
            from zarr.core.buffer.cpu import NDBuffer

            self.data.get_basic_selection(selection, out=NDBuffer.from_numpy_array(out))
        else:
            np.copyto(out, self.data[selection])
        return out


@runtime_checkable
class MeasurementStore(Protocol):
    """Where a sketch lives.

    Column-blocked measurements with completion marks, matrices written and read by row blocks,
    small saved arrays, the completed run's record and a fingerprint.

    Arrays are numpy-sliceable: ``a[rows]`` reads a row block as numpy (a Zarr array verifies
    its chunks' checksums on the way).
    """

    def bind(self, fingerprint: dict[str, Any]) -> None:
        """Refuse (StoreMismatchError) a store holding another configuration's measurements."""

    def adopt(self) -> None:
        """Record the bound fingerprint (once the first block is complete)."""

    def columns(
        self, name: str, dim: int, ncols: int, block: int, dtype: torch.dtype, row_chunk: int
    ) -> BlockedColumns:
        """The (dim, ncols) measurements ``name`` in blocks of ``block`` columns.

        The (dim, ncols) measurements ``name`` in blocks of ``block`` columns (created, grown or
        viewed).
        """

    def matrix(
        self, name: str, shape: tuple[int, int], chunk_rows: int, dtype: Any = np.float64
    ) -> Any:
        """A fresh (rows, cols) array written and read by row blocks of ``chunk_rows``."""

    def stored_matrix(self, name: str) -> Any:
        """An array written by ``matrix`` (KeyError if absent)."""

    def save(self, name: str, value: np.ndarray) -> None:
        """Keep the array ``value`` as ``name``."""

    def load(self, name: str) -> np.ndarray:
        """A whole saved array (KeyError if absent, ValueError if damaged)."""

    def save_result(self, record: dict[str, Any]) -> None:
        """Mark the run complete (written last, after every result array)."""

    def saved_result(self) -> dict[str, Any] | None:
        """The completed run's result record, or None."""

    def forget_result(self) -> None:
        """Drop the completed run's result record."""

    def note(self, key: str, value: Any) -> None:
        """Keep a small JSON-able record with the measurements (e.g. adaptive SEIGH's steps)."""

    def noted(self, key: str) -> Any:
        """The value kept under ``key``, or None."""


class StoredMatrix:
    """A (D, k) matrix kept in a measurement store, read by row blocks.

    A (D, k) matrix kept in a measurement store (a numpy array in memory, a Zarr array on disk),
    read by row blocks: ``m[a:b]`` is a numpy (b - a, k) array (chunk checksums verified on disk);
    ``np.asarray(m)`` and ``m.tensor()`` read all of it (D k 8 bytes).
    """

    def __init__(self, array: Any):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self.array[index])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        whole = np.asarray(self.array[...])
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def tensor(self) -> torch.Tensor:
        """The whole matrix as a float64 CPU tensor."""
        return torch.from_numpy(np.array(self))

    def save_npy(self, path: Path) -> None:
        """Write it as a .npy file, row block by row block: np.save's bytes, never all in memory.

        At D = 11.7M, k = 10 that took 1.6-3.5 s where reading it whole and saving took 7.5-18 s
        on the 2-core VM.
        """
        out = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=self.shape)
        chunks = getattr(self.array, "chunks", None)
        step = max(chunks[0] if chunks else 1 << 18, 1)
        for start in range(0, self.shape[0], step):
            out[start : start + step] = self[start : start + step]
        out.flush()
        del out

    def __repr__(self) -> str:
        kind = type(self.array)
        return (
            f"StoredMatrix(shape={self.shape}, dtype={self.dtype}, "
            f"in {kind.__module__}.{kind.__name__})"
        )
