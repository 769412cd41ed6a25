"""The Zarr v3 run store: measurements, post-processing arrays, results and the resume manifest.

Layout of the group at ``url`` (a local path or an fsspec URL):
  outer, inner        (D, n) measurements, chunks (row block, measurement block), no compression
  outer_done, ...     (n_blocks,) uint8 completion marks, one chunk each, set after the data
  Q, eigenvectors     (D, nO) / (D, k) float64, chunks of whole row blocks
  eigenvalues, residuals, attrs: fingerprint (config hash), versions
Zarr writes each chunk by an atomic rename, so a chunk that exists is complete; a block whose
mark is set has all its chunks. Every chunk carries a CRC32C checksum (Zarr v3's crc32c codec)
verified on every read: bit rot or a truncated chunk is detected, never read as numbers.
attrs["result"] marks a completed run (its settings and info), so a rerun reuses it.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from zarr.codecs import Crc32cCodec

from pipeline.basics import numpy_dtype
from pipeline.errors import InputError, MissingFileError
from pipeline.store.chunk_files import ChunkFiles
from pipeline.store.fingerprint import check_fingerprint, fingerprint_hash
from pipeline.store.lock import StoreLock
from pipeline.store.protocol import BlockedColumns, StoredMatrix

URL_SCHEME = ""  # plain paths, file:// and fsspec URLs no other backend claims


def start_io() -> None:
    """Start zarr's I/O event loop and its thread now, not at zarr's first call.

    A signal handled inside that lazy start leaves a loop half made or a thread created but never
    started, which zarr's exit hook then fails to join: a command starts them before it handles
    signals.
    """
    zarr.core.sync._get_loop()


def open_url(url: str) -> RunStore:
    """The Zarr group at ``url`` as a ``RunStore`` (created if absent; a local one locked)."""
    return RunStore(url)


class ZarrBlockWriter:
    """Picklable writer that workers use to store their measured column blocks themselves."""

    def __init__(self, url: str, name: str, block: int):
        self.url, self.name, self.block = url, name, block

    def write(self, columns: range, values: torch.Tensor) -> None:
        """Write ``values`` (D, len(columns)) as ``columns`` and mark them complete."""
        group = zarr.open_group(self.url, mode="r+")
        data = group[self.name]
        BlockedColumns(
            data, group[self.name + "_done"], self.block, chunk_io=ChunkFiles.of(data)
        ).write(columns, values)


class RunStore:
    """A Zarr group holding one SEIGH run (a ``MeasurementStore``); reopening it resumes the run."""

    def __init__(self, url: str):
        """Open the store at ``path``, locked for this process until ``close``.

        A local store is locked for this process (see ``pipeline.store.lock``) until ``close``.
        """
        self.url = str(url)
        self.group = zarr.open_group(self.url, mode="a")
        local = "://" not in self.url or self.url.startswith("file://")
        # beside the group
        self.lock = StoreLock(Path(self.url.removeprefix("file://") + ".lock")) if local else None

    def close(self) -> None:
        """Release the lock (also done when the store is garbage-collected or the process exits)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def attrs(self) -> dict[str, Any]:
        """The store's attributes (fingerprint, notes, result)."""
        return dict(self.group.attrs)

    def bind(self, fingerprint: dict[str, Any]) -> None:
        """Refuse a store made for another configuration.

        A store without a fingerprint (a run that failed before its first block was complete) holds
        nothing worth keeping: its arrays are removed. The fingerprint itself is written by
        ``adopt``, after the first block.
        """
        check_fingerprint(
            self.group.attrs.get("fingerprint"), fingerprint, f"the store at {self.url}"
        )
        if "fingerprint" not in self.group.attrs:
            for name in list(self.group.keys()):
                del self.group[name]
            if "notes" in self.group.attrs:
                del self.group.attrs["notes"]
        self.pending = fingerprint

    def adopt(self) -> None:
        """Record the bound fingerprint, creation time and versions (once a block is complete)."""
        fingerprint = self.pending
        if "fingerprint" not in self.group.attrs:
            self.group.attrs.update(
                {
                    "fingerprint": fingerprint,
                    "fingerprint_hash": fingerprint_hash(fingerprint),
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "versions": {
                        name: _version(name)
                        for name in ("hessian-pipeline", "torch", "zarr", "numpy")
                    },
                }
            )

    def columns(
        self, name: str, dim: int, ncols: int, block: int, dtype: torch.dtype, row_chunk: int
    ) -> BlockedColumns:
        """The (dim, ncols) measurements ``name``.

        Created with chunks of ``row_chunk`` rows x ``block`` columns; grown when the store holds
        fewer columns (the new ones unmarked, a partial last block unmarked to be measured whole);
        or, when it holds more, a view of the first ncols (no products).
        """
        if name not in self.group:
            row_chunk = min(dim, row_chunk)
            self.group.create_array(
                name,
                shape=(dim, ncols),
                chunks=(row_chunk, block),
                dtype=numpy_dtype(dtype),
                fill_value=np.nan,
                compressors=_CHECKSUM,
            )
            self.group.create_array(
                name + "_done",
                shape=(-(-ncols // block),),
                chunks=(1,),
                dtype=np.uint8,
                fill_value=0,
                compressors=_CHECKSUM,
            )
        data, done = self.group[name], self.group[name + "_done"]
        stored = data.shape[1]
        if ncols > stored:
            done.resize((-(-ncols // block),))
            if stored % block:
                done[stored // block] = 0
            data.resize((dim, ncols))
        return BlockedColumns(
            data,
            done,
            block,
            ZarrBlockWriter(self.url, name, block),
            ncols=ncols,
            chunk_io=ChunkFiles.of(data),
        )

    def matrix(
        self, name: str, shape: tuple[int, int], chunk_rows: int, dtype: Any = np.float64
    ) -> zarr.Array:
        """A fresh (rows, cols) array written by row blocks of ``chunk_rows``.

        A fresh (rows, cols) array written by row blocks of ``chunk_rows`` (replaces an old one).
        """
        return self.group.create_array(
            name,
            shape=shape,
            chunks=(min(chunk_rows, shape[0]), shape[1]),
            dtype=dtype,
            fill_value=np.nan,
            compressors=_CHECKSUM,
            overwrite=True,
        )

    def save(self, name: str, value: np.ndarray) -> None:
        """Write the array ``value`` as ``name`` (checksummed, replacing an old one)."""
        value = np.asarray(value)
        array = self.group.create_array(
            name, shape=value.shape, dtype=value.dtype, overwrite=True, compressors=_CHECKSUM
        )
        array[...] = value

    def load(self, name: str) -> np.ndarray:
        """A whole saved array (checksums verified; ValueError if damaged, KeyError if absent)."""
        return np.asarray(self.group[name][...])

    def stored_matrix(self, name: str) -> zarr.Array:
        """An array written by ``matrix`` (read lazily; KeyError if absent)."""
        return self.group[name]

    def save_result(self, record: dict[str, Any]) -> None:
        """Mark the run complete (written last, after every result array)."""
        self.group.attrs["result"] = record

    def saved_result(self) -> dict[str, Any] | None:
        """The completed run's result record, or None."""
        return self.group.attrs.get("result")

    def forget_result(self) -> None:
        """Unmark a completed run before its results are recomputed."""
        if "result" in self.group.attrs:
            del self.group.attrs["result"]

    def note(self, key: str, value: Any) -> None:
        """Keep a small JSON-able record with the measurements (e.g. adaptive SEIGH's steps)."""
        self.group.attrs["notes"] = {**self.group.attrs.get("notes", {}), key: value}

    def noted(self, key: str) -> Any:
        """The value kept under ``key``, or None."""
        return self.group.attrs.get("notes", {}).get(key)


def load_eigenpairs(url: str | Path) -> tuple[np.ndarray, StoredMatrix]:
    """The eigenvalues and eigenvectors of the completed run stored at ``url``.

    The eigenvalues (k,) and eigenvectors (D, k, read lazily by row blocks) of the completed run
    stored at ``url``, opened read-only (no lock: readers do not disturb a writer).
    """
    try:
        group = zarr.open_group(str(url), mode="r")
    except FileNotFoundError as error:
        raise MissingFileError(
            f"no run store at {url}: run the eigen task with algorithm=seigh there first"
        ) from error
    if "result" not in group.attrs:
        raise InputError(
            f"the run store at {url} holds no completed run: rerun its command to finish it"
        )
    return np.asarray(group["eigenvalues"][...]), StoredMatrix(group["eigenvectors"])


_CHECKSUM = [Crc32cCodec()]


def chunk_read_seconds(rows: int, columns: int, dtype: torch.dtype) -> float:
    """Seconds to read a (rows, columns) chunk of a measurement array into float64 memory.

    Timed on one such chunk as the run store lays it out, in a temporary directory, read as
    post-processing reads it (``ChunkFiles``: the file, its checksum, the cast to float64) into
    touched memory; its file is in the page cache, as the measurements' are just after they are
    written.
    """
    with _one_chunk(rows, columns, dtype) as (files, _):
        out = np.empty((rows, columns))
        out.fill(0.0)  # touched: post-processing reads into reused buffers
        start = time.perf_counter()
        files.read(range(rows), range(columns), out)
        return time.perf_counter() - start


def chunk_write_seconds(rows: int, columns: int, dtype: torch.dtype) -> float:
    """Seconds to write a (rows, columns) chunk of a measurement array (checksum, file, rename).

    Timed on one such chunk in a temporary directory; what a measured block costs beside its
    products.
    """
    with _one_chunk(rows, columns, dtype) as (_, seconds):
        return seconds


@contextmanager
def _one_chunk(rows: int, columns: int, dtype: torch.dtype) -> Iterator[tuple[ChunkFiles, float]]:
    """A one-chunk (rows, columns) measurement array in a temporary directory; its write's seconds.

    Written once through its chunk files, as a measured block is.
    """
    with tempfile.TemporaryDirectory(prefix="hessian-pipeline-chunk-") as directory:
        array = zarr.create_array(
            zarr.storage.LocalStore(directory),
            shape=(rows, columns),
            chunks=(rows, columns),
            dtype=numpy_dtype(dtype),
            fill_value=np.nan,
            compressors=_CHECKSUM,
        )
        files = ChunkFiles.of(array)
        values = np.ones((rows, columns), dtype=numpy_dtype(dtype))
        start = time.perf_counter()
        files.write(range(columns), values)
        yield files, time.perf_counter() - start


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
