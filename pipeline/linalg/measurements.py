"""Where SEIGH keeps its measurements: column-blocked arrays with completion marks.

``BlockedColumns`` works on anything sliceable like numpy (numpy arrays here, Zarr arrays in
``pipeline.store``): a block's mark is set only after its data is written, so a run killed at
any point resumes by measuring exactly the unmarked blocks. ``MeasurementStore`` is what SEIGH
needs of a store; ``MemoryStore`` (here) and the Zarr ``pipeline.store.RunStore`` implement it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from pipeline.errors import InputError
from pipeline.linalg.measuring import ColumnWriter


class StoreMismatchError(InputError):
    """A store holds measurements of another configuration."""


GROWABLE = ("outer", "inner")  # sketch sizes: a store grows or shrinks to them (older stores list them)


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_fingerprint(stored: dict[str, Any] | None, wanted: dict[str, Any], where: str) -> None:
    """Raise StoreMismatchError naming, in one line, only the (dotted) keys that differ (the
    growable sketch sizes are not compared)."""
    if stored is None:
        return
    stored = {key: value for key, value in stored.items() if key not in GROWABLE}
    if fingerprint_hash(stored) == fingerprint_hash(wanted):
        return
    old, new = _flatten(stored), _flatten(wanted)
    diffs = "; ".join(f"{key}: {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}"
                      for key in sorted(set(old) | set(new)) if old.get(key, _MISSING) != new.get(key, _MISSING))
    raise StoreMismatchError(
        f"{where} holds measurements of another configuration ({diffs}); use a new output "
        "directory, or rerun with the original values to resume"
    )


_MISSING = object()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (JSON round trip first, so tuples and lists compare equal)."""
    tree = json.loads(json.dumps(tree, default=str)) if not prefix else tree
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value})
    return flat


class BlockedColumns:
    """A (D, n) measurement array written in blocks of ``block`` columns; ``done[i]`` marks block i.

    ``ncols`` (default: all) views the first ncols columns of a wider stored array (a sketch
    shrunk after it grew): its blocks are the stored blocks that hold those columns, measured
    whole, and readers see ncols columns. ``writer`` (picklable, or None) lets remote workers
    write blocks themselves.
    """

    def __init__(self, data: Any, done: Any, block: int, writer: ColumnWriter | None = None, ncols: int | None = None):
        self.data, self.done, self.block, self.writer = data, done, block, writer
        self.shape = (data.shape[0], data.shape[1] if ncols is None else ncols)

    def blocks(self) -> list[range]:
        stored = self.data.shape[1]
        return [range(start, min(start + self.block, stored)) for start in range(0, self.shape[1], self.block)]

    def missing_blocks(self) -> list[range]:
        marks = np.asarray(self.done[:])
        return [cols for index, cols in enumerate(self.blocks()) if not marks[index]]

    def write(self, columns: range, values: torch.Tensor | np.ndarray) -> None:
        """Store columns ``columns`` (aligned to one block), then mark the block complete."""
        if columns.start % self.block or len(columns) != len(self.blocks()[columns.start // self.block]):
            raise ValueError(f"columns {columns} are not one whole block of {self.block}")
        array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        self.data[:, columns.start : columns.stop] = array.astype(self.data.dtype, copy=False)
        self.done[columns.start // self.block] = 1

    def unmark(self, columns: range) -> None:
        """Forget the blocks overlapping ``columns`` (their data is damaged); they are remeasured."""
        for index in range(columns.start // self.block, (columns.stop - 1) // self.block + 1):
            self.done[index] = 0

    def read_rows(self, rows: range, ncols: int | None = None) -> np.ndarray:
        """Rows ``rows`` of the first ``ncols`` columns as float64 (m, ncols)."""
        ncols = self.shape[1] if ncols is None else ncols
        return np.asarray(self.data[rows.start : rows.stop, :ncols], dtype=np.float64)


@runtime_checkable
class MeasurementStore(Protocol):
    """Where a sketch lives: column-blocked measurements with completion marks, matrices written
    and read by row blocks, small saved arrays, the completed run's record and a fingerprint.

    Arrays are numpy-sliceable: ``a[rows]`` reads a row block as numpy (a Zarr array verifies
    its chunks' checksums on the way).
    """

    def bind(self, fingerprint: dict[str, Any]) -> None:
        """Refuse (StoreMismatchError) a store holding another configuration's measurements."""

    def adopt(self) -> None:
        """Record the bound fingerprint (once the first block is complete)."""

    def columns(self, name: str, dim: int, ncols: int, block: int, dtype: torch.dtype, row_chunk: int) -> BlockedColumns:
        """The (dim, ncols) measurements ``name`` in blocks of ``block`` columns (created, grown or viewed)."""

    def matrix(self, name: str, shape: tuple[int, int], chunk_rows: int, dtype: Any = np.float64) -> Any:
        """A fresh (rows, cols) array written and read by row blocks of ``chunk_rows``."""

    def stored_matrix(self, name: str) -> Any:
        """An array written by ``matrix`` (KeyError if absent)."""

    def save(self, name: str, value: np.ndarray) -> None: ...

    def load(self, name: str) -> np.ndarray:
        """A whole saved array (KeyError if absent, ValueError if damaged)."""

    def save_result(self, record: dict[str, Any]) -> None:
        """Mark the run complete (written last, after every result array)."""

    def saved_result(self) -> dict[str, Any] | None: ...

    def forget_result(self) -> None: ...

    def note(self, key: str, value: Any) -> None:
        """Keep a small JSON-able record with the measurements (e.g. adaptive SEIGH's steps)."""

    def noted(self, key: str) -> Any: ...


class MemoryStore:
    """In-memory ``MeasurementStore``: numpy arrays and a dict of attributes."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.attrs: dict[str, Any] = {}

    def bind(self, fingerprint: dict[str, Any]) -> None:
        """Refuse another configuration's measurements; a store without a fingerprint holds no
        complete block, so whatever it holds is dropped (see ``adopt``)."""
        check_fingerprint(self.attrs.get("fingerprint"), fingerprint, "this MemoryStore")
        if "fingerprint" not in self.attrs:
            self.arrays.clear()
            self.attrs.pop("notes", None)
        self.pending = fingerprint

    def adopt(self) -> None:
        """Record the bound fingerprint (called once the first block is complete)."""
        self.attrs["fingerprint"] = self.pending

    def columns(self, name: str, dim: int, ncols: int, block: int, dtype: torch.dtype, row_chunk: int = 0) -> BlockedColumns:
        """The (dim, ncols) measurements ``name``: created, grown (new columns unmeasured) or viewed
        (``row_chunk`` is for chunked stores: memory has no chunks)."""
        if name not in self.arrays:
            self.arrays[name] = np.full((dim, ncols), np.nan, dtype=_numpy_dtype(dtype))
            self.arrays[name + "_done"] = np.zeros(-(-ncols // block), dtype=np.uint8)
        stored = self.arrays[name].shape[1]
        if ncols > stored:
            self.arrays[name] = np.hstack([self.arrays[name], np.full((dim, ncols - stored), np.nan, dtype=self.arrays[name].dtype)])
            done = self.arrays[name + "_done"]
            self.arrays[name + "_done"] = np.concatenate([done, np.zeros(-(-ncols // block) - len(done), dtype=np.uint8)])
            if stored % block:
                self.arrays[name + "_done"][stored // block] = 0  # the partial last block is measured again, whole
        return BlockedColumns(self.arrays[name], self.arrays[name + "_done"], block, ncols=ncols)

    def matrix(self, name: str, shape: tuple[int, int], chunk_rows: int, dtype: Any = np.float64) -> np.ndarray:
        """A (rows, cols) array written and read by row blocks (recreated on every call)."""
        self.arrays[name] = np.zeros(shape, dtype=dtype)
        return self.arrays[name]

    def save(self, name: str, value: np.ndarray) -> None:
        self.arrays[name] = np.asarray(value)

    def load(self, name: str) -> np.ndarray:
        return self.arrays[name]

    stored_matrix = load

    def save_result(self, record: dict[str, Any]) -> None:
        self.attrs["result"] = record

    def saved_result(self) -> dict[str, Any] | None:
        return self.attrs.get("result")

    def forget_result(self) -> None:
        self.attrs.pop("result", None)

    def note(self, key: str, value: Any) -> None:
        self.attrs.setdefault("notes", {})[key] = value

    def noted(self, key: str) -> Any:
        return self.attrs.get("notes", {}).get(key)


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty((), dtype=dtype).numpy().dtype
