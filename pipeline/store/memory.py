"""``MemoryStore``: the in-memory ``MeasurementStore`` (numpy arrays and a dict of attributes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.basics import numpy_dtype
from pipeline.store.fingerprint import check_fingerprint
from pipeline.store.protocol import BlockedColumns

URL_SCHEME = "memory"  # memory://: a fresh store, nothing kept after the process


def open_url(url: str) -> MemoryStore:
    """A fresh, empty ``MemoryStore`` (the URL names nothing more)."""
    return MemoryStore()


class MemoryStore:
    """In-memory ``MeasurementStore``: numpy arrays and a dict of attributes."""

    url = "memory://"

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.attrs: dict[str, Any] = {}

    def bind(self, fingerprint: dict[str, Any]) -> None:
        """Refuse another configuration's measurements.

        A store without a fingerprint holds no complete block, so whatever it holds is dropped (see
        ``adopt``).
        """
        check_fingerprint(self.attrs.get("fingerprint"), fingerprint, "this MemoryStore")
        if "fingerprint" not in self.attrs:
            self.arrays.clear()
            self.attrs.pop("notes", None)
        self.pending = fingerprint

    def adopt(self) -> None:
        """Record the bound fingerprint (called once the first block is complete)."""
        self.attrs["fingerprint"] = self.pending

    def columns(
        self, name: str, dim: int, ncols: int, block: int, dtype: torch.dtype, row_chunk: int = 0
    ) -> BlockedColumns:
        """The (dim, ncols) measurements ``name``.

        Created, grown (new columns unmeasured) or viewed (``row_chunk`` is for chunked stores:
        memory has no chunks).
        """
        if name not in self.arrays:
            self.arrays[name] = np.full((dim, ncols), np.nan, dtype=numpy_dtype(dtype))
            self.arrays[name + "_done"] = np.zeros(-(-ncols // block), dtype=np.uint8)
        stored = self.arrays[name].shape[1]
        if ncols > stored:
            self.arrays[name] = np.hstack(
                [
                    self.arrays[name],
                    np.full((dim, ncols - stored), np.nan, dtype=self.arrays[name].dtype),
                ]
            )
            done = self.arrays[name + "_done"]
            self.arrays[name + "_done"] = np.concatenate(
                [done, np.zeros(-(-ncols // block) - len(done), dtype=np.uint8)]
            )
            if stored % block:
                # the partial last block is measured again, whole
                self.arrays[name + "_done"][stored // block] = 0
        return BlockedColumns(self.arrays[name], self.arrays[name + "_done"], block, ncols=ncols)

    def matrix(
        self, name: str, shape: tuple[int, int], chunk_rows: int, dtype: Any = np.float64
    ) -> np.ndarray:
        """A (rows, cols) array written and read by row blocks (recreated on every call)."""
        self.arrays[name] = np.zeros(shape, dtype=dtype)
        return self.arrays[name]

    def save(self, name: str, value: np.ndarray) -> None:
        """Keep the array ``value`` as ``name``."""
        self.arrays[name] = np.asarray(value)

    def load(self, name: str) -> np.ndarray:
        """The array saved as ``name``."""
        return self.arrays[name]

    stored_matrix = load

    def save_result(self, record: dict[str, Any]) -> None:
        """Keep a completed run's result record."""
        self.attrs["result"] = record

    def saved_result(self) -> dict[str, Any] | None:
        """The completed run's result record, or None."""
        return self.attrs.get("result")

    def forget_result(self) -> None:
        """Drop the completed run's result record."""
        self.attrs.pop("result", None)

    def note(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key`` (progress a rerun reads back)."""
        self.attrs.setdefault("notes", {})[key] = value

    def noted(self, key: str) -> Any:
        """The value kept under ``key``, or None."""
        return self.attrs.get("notes", {}).get(key)
