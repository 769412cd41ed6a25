"""A local Zarr v3 measurement array's chunk files, read by row block and written by column block.

The run store writes its measurements in one plain layout: a directory, regular chunks under
``c/<row chunk>/<column chunk>``, each chunk's little-endian values followed by their CRC32C
(4 bytes, little-endian). Reading (m, n) rows of such an array into float64 memory is then a file
read, a checksum and one cast per chunk: Zarr's own read of the same rows (its event loop, a
decoded copy per chunk, a strided cast) ran at 530-730 MiB/s where the files read at 6-8 GiB/s
(D = 1M, 9 row blocks of 111,111 x 200 float32). Writing a measured column block is likewise a
checksum and one file per chunk, written to a temporary name and renamed into place as Zarr does.
``ChunkFiles.of`` answers None for any other layout (a remote store, compression, sharding), which
Zarr then reads and writes.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

CHECKSUM_BYTES = 4


class ChunkFiles:
    """A (D, n) array's chunk files: rows read (checksums verified), column blocks written.

    ``chunks`` is (chunk rows, chunk columns); every chunk file holds a whole chunk (edge chunks
    padded with ``fill_value``), a missing one reads as ``fill_value``.
    """

    def __init__(
        self,
        directory: Path,
        shape: tuple[int, int],
        chunks: tuple[int, int],
        dtype: np.dtype,
        fill_value: float,
    ):
        self.directory, self.shape, self.chunks = directory, shape, chunks
        self.dtype, self.fill_value = np.dtype(dtype).newbyteorder("<"), fill_value
        self.chunk_bytes = chunks[0] * chunks[1] * self.dtype.itemsize

    @classmethod
    def of(cls, array: Any) -> ChunkFiles | None:
        """The chunk files of the Zarr array ``array``, or None where its layout is another."""
        from zarr.codecs import BytesCodec, Crc32cCodec
        from zarr.core.chunk_grids import RegularChunkGrid
        from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
        from zarr.storage import LocalStore

        metadata = getattr(array, "metadata", None)
        if (
            getattr(metadata, "zarr_format", None) != 3
            or not isinstance(array.store, LocalStore)
            or len(array.shape) != 2
            or not isinstance(metadata.chunk_grid, RegularChunkGrid)
            or metadata.chunk_key_encoding != DefaultChunkKeyEncoding(separator="/")
            or [type(codec) for codec in metadata.codecs] != [BytesCodec, Crc32cCodec]
            or metadata.codecs[0].endian is None
            or metadata.codecs[0].endian.value != "little"
            or np.dtype(array.dtype).kind != "f"
        ):
            return None
        return cls(
            Path(array.store.root) / array.path,
            tuple(array.shape),
            tuple(metadata.chunk_grid.chunk_shape),
            np.dtype(array.dtype),
            float(array.fill_value),
        )

    def read(self, rows: range, columns: range, out: np.ndarray) -> None:
        """out[:] = array[rows, columns] (out float64, (len(rows), len(columns))).

        Raises ValueError naming the file where a chunk is truncated or fails its checksum.
        """
        chunk_rows, chunk_cols = self.chunks
        raw = bytearray(self.chunk_bytes + CHECKSUM_BYTES)  # one buffer for every chunk of the call
        for i in range(rows.start // chunk_rows, -(-rows.stop // chunk_rows)):
            top, bottom = max(rows.start, i * chunk_rows), min(rows.stop, (i + 1) * chunk_rows)
            for j in range(columns.start // chunk_cols, -(-columns.stop // chunk_cols)):
                left = max(columns.start, j * chunk_cols)
                right = min(columns.stop, (j + 1) * chunk_cols)
                target = out[
                    top - rows.start : bottom - rows.start,
                    left - columns.start : right - columns.start,
                ]
                values = self._chunk(i, j, raw)
                if values is None:
                    target.fill(self.fill_value)
                else:
                    target[...] = values[
                        top - i * chunk_rows : bottom - i * chunk_rows,
                        left - j * chunk_cols : right - j * chunk_cols,
                    ]

    def _chunk(self, i: int, j: int, raw: bytearray) -> np.ndarray | None:
        """Chunk (i, j) as a (chunk rows, chunk columns) view of ``raw``; None if never written."""
        path = self.directory / "c" / str(i) / str(j)
        try:
            with open(path, "rb") as file:
                size = file.readinto(raw)
                extra = file.read(1)
        except FileNotFoundError:
            return None
        if size != len(raw) or extra:
            raise ValueError(
                f"chunk {path} holds {size} bytes, not {len(raw)}: truncated or foreign"
            )
        stored = int.from_bytes(raw[-CHECKSUM_BYTES:], "little")
        if google_crc32c.value(np.frombuffer(raw, np.uint8, self.chunk_bytes)) != stored:
            raise ValueError(f"chunk {path} fails its CRC32C checksum")
        return np.frombuffer(raw, dtype=self.dtype, count=self.chunks[0] * self.chunks[1]).reshape(
            self.chunks
        )

    def write(self, columns: range, values: np.ndarray) -> bool:
        """array[:, columns] = values ((D, len(columns))), one whole chunk file after another.

        False (nothing written) unless ``columns`` are all of one column of chunks (up to the
        array's last column): a chunk's other columns would need reading and merging, which Zarr
        does.
        """
        chunk_rows, chunk_cols = self.chunks
        j = columns.start // chunk_cols
        if columns.start != j * chunk_cols or columns.stop != min(
            (j + 1) * chunk_cols, self.shape[1]
        ):
            return False
        values = np.asarray(values, dtype=self.dtype)
        for i in range(-(-self.shape[0] // chunk_rows)):
            part = values[i * chunk_rows : (i + 1) * chunk_rows]
            if part.shape == self.chunks:
                chunk = np.ascontiguousarray(part)
            else:  # an edge chunk (last rows or last columns): padded as Zarr pads
                chunk = np.full(self.chunks, self.fill_value, dtype=self.dtype)
                chunk[: part.shape[0], : part.shape[1]] = part
            self._put(self.directory / "c" / str(i) / str(j), chunk)
        return True

    def _put(self, path: Path, chunk: np.ndarray) -> None:
        """The chunk's bytes and their CRC32C to a temporary file, renamed to ``path``."""
        data = chunk.reshape(-1).view(np.uint8)
        checksum = google_crc32c.value(data).to_bytes(CHECKSUM_BYTES, "little")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(data)
                file.write(checksum)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
