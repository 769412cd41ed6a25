"""Row blocks read straight from a run store's chunk files equal Zarr's own read of them (aligned
or not with the chunks, column subsets, padded edge chunks, unwritten chunks), a damaged chunk
raises instead of reading numbers, and other layouts are left to Zarr; post-processing's row
blocks start at chunk boundaries."""

import numpy as np
import pytest
import torch
import zarr

from pipeline.linalg.recovery import row_blocks
from pipeline.store import RunStore
from pipeline.store.chunk_files import ChunkFiles


def _measurements(tmp_path, dtype: torch.dtype, dim: int = 1003, ncols: int = 12):
    """A (dim, ncols) run-store array in chunks of 100 x 4, written but for its last block."""
    columns = RunStore(tmp_path / "store.zarr").columns("inner", dim, ncols, 4, dtype, 100)
    values = np.random.default_rng(0).standard_normal((dim, ncols))
    for cols in columns.blocks()[:-1]:
        columns.write(cols, torch.from_numpy(values[:, cols.start : cols.stop]).to(dtype))
    return columns


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "rows, ncols",
    [(range(0, 100), 12), (range(250, 420), 12), (range(990, 1003), 7), (range(0, 1003), 3)],
)
def test_chunk_files_read_what_zarr_reads(tmp_path, dtype, rows, ncols):
    columns = _measurements(tmp_path, dtype)
    assert columns.reader is not None  # the run store's plain layout
    expected = np.asarray(columns.data[rows.start : rows.stop, :ncols], dtype=np.float64)
    out = np.full((len(rows), ncols), 7.0)
    assert columns.read_rows(rows, ncols, out) is out
    np.testing.assert_array_equal(out, expected)  # the unwritten last block: NaN in both
    assert np.isnan(out[:, 8:]).all() and np.isfinite(out[:, :8]).all()


def test_a_damaged_chunk_raises_naming_its_file(tmp_path):
    columns = _measurements(tmp_path, torch.float32)
    chunk = tmp_path / "store.zarr" / "inner" / "c" / "2" / "1"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    out = np.empty((100, 12))
    with pytest.raises(ValueError, match=r"c/2/1 fails its CRC32C checksum"):
        columns.read_rows(range(200, 300), 12, out)
    chunk.write_bytes(bytes(data[:-10]))
    with pytest.raises(ValueError, match="truncated"):
        columns.read_rows(range(200, 300), 12, out)


def test_other_layouts_are_left_to_zarr(tmp_path):
    compressed = zarr.create_array(
        tmp_path / "compressed.zarr", shape=(10, 4), chunks=(5, 2), dtype="float32"
    )  # Zarr's default compressor
    in_memory = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(10, 4), chunks=(5, 2), dtype="float32"
    )
    assert ChunkFiles.of(compressed) is None and ChunkFiles.of(in_memory) is None


@pytest.mark.parametrize(
    "dim, min_rows, target", [(1_000_000, 100, 111_111), (1005, 100, 100), (3000, 40, 700)]
)
def test_row_blocks_start_at_multiples_of_the_first_and_cover_every_row(dim, min_rows, target):
    blocks = row_blocks(dim, min_rows, target)
    height = len(blocks[0])
    assert height >= max(min_rows, target)
    assert [b.start for b in blocks] == [i * height for i in range(len(blocks))]
    assert blocks[-1].stop == dim and all(len(b) >= min_rows for b in blocks)
    assert all(len(b) <= 2 * height for b in blocks)
