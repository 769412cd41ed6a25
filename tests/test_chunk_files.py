"""A run store's chunk files written directly read back through Zarr (padded edge chunks), and
row blocks read directly equal Zarr's own read of them (aligned or not with the chunks, column
subsets, unwritten chunks); a damaged chunk raises instead of reading numbers, and other layouts
are left to Zarr; post-processing's row blocks start at chunk boundaries."""

import numpy as np
import pytest
import torch
import zarr

from pipeline.linalg.recovery import row_blocks
from pipeline.store import RunStore
from pipeline.store.chunk_files import ChunkFiles


def _measurements(tmp_path, dtype: torch.dtype, dim: int = 1003, ncols: int = 12, last=False):
    """A (dim, ncols) run-store array in chunks of 100 x 4, written (its last block if ``last``)
    through its chunk files, and the values written."""
    columns = RunStore(tmp_path / "store.zarr").columns("inner", dim, ncols, 4, dtype, 100)
    values = torch.from_numpy(np.random.default_rng(0).standard_normal((dim, ncols))).to(dtype)
    for cols in columns.blocks()[: None if last else -1]:
        columns.write(cols, values[:, cols.start : cols.stop])
    return columns, values.double().numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocks_written_through_chunk_files_read_back_through_zarr(tmp_path, dtype):
    """Padded edge chunks: 1003 rows in chunks of 100, a last block of 2 columns in chunks of 4."""
    columns, values = _measurements(tmp_path, dtype, ncols=10, last=True)
    assert columns.chunk_io is not None  # the run store's plain layout
    np.testing.assert_array_equal(np.asarray(columns.data[:], dtype=np.float64), values)
    assert not list((tmp_path / "store.zarr" / "inner").rglob("*.partial"))
    assert not columns.chunk_io.write(range(2, 6), values[:, 2:6])  # two columns of chunks


def test_a_write_of_part_of_a_chunk_is_left_to_zarr_and_keeps_its_neighbours(tmp_path):
    columns, values = _measurements(tmp_path, torch.float64)
    assert not columns.chunk_io.write(range(4, 6), values[:, :2])  # half of chunk column 1
    columns.data[:, 4:6] = values[:, :2]  # what BlockedColumns.write then does through Zarr
    np.testing.assert_array_equal(np.asarray(columns.data[:, 6:8]), values[:, 6:8])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "rows, ncols",
    [(range(0, 100), 12), (range(250, 420), 12), (range(990, 1003), 7), (range(0, 1003), 3)],
)
def test_chunk_files_read_what_zarr_reads(tmp_path, dtype, rows, ncols):
    columns, values = _measurements(tmp_path, dtype)
    expected = np.asarray(columns.data[rows.start : rows.stop, :ncols], dtype=np.float64)
    np.testing.assert_array_equal(expected[:, :8], values[rows.start : rows.stop, : min(ncols, 8)])
    out = np.full((len(rows), ncols), 7.0)
    assert columns.read_rows(rows, ncols, out) is out
    np.testing.assert_array_equal(out, expected)  # the unwritten last block: NaN in both
    assert np.isnan(out[:, 8:]).all() and np.isfinite(out[:, :8]).all()


def test_a_damaged_chunk_raises_naming_its_file(tmp_path):
    columns, _ = _measurements(tmp_path, torch.float32)
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
