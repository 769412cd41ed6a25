"""SEIGH's streamed recovery.

Cholesky QR and its Householder fallback against dense truth, read-ahead.
"""

import threading
import time

import numpy as np
import pytest
import torch

from pipeline.linalg import LowRankPlusDiagonalOperator, recovery, seigh
from pipeline.linalg.random_matrices import random_block
from pipeline.linalg.recovery import Measurements, _cholesky_factor, row_blocks
from pipeline.linalg.streaming import (
    AlternatingBuffers,
    WriteBehind,
    computing_beside_reads,
    prefetched,
)
from pipeline.store import BlockedColumns, MemoryStore, RunStore
from pipeline.store.run_store import ZarrBlockWriter


def _low_rank(dim, spectrum, seed=0):
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(dim, len(spectrum), generator=gen, dtype=torch.float64))
    return LowRankPlusDiagonalOperator(U, torch.tensor(spectrum, dtype=torch.float64))


def _columns(matrix: np.ndarray) -> BlockedColumns:
    return BlockedColumns(matrix, np.ones(1, dtype=np.uint8), matrix.shape[1])


def _with_condition(rows, cols, cond, seed=0):
    rng = np.random.default_rng(seed)
    left, _ = np.linalg.qr(rng.standard_normal((rows, cols)))
    right, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    return left @ np.diag(np.logspace(0, -np.log10(cond), cols)) @ right


def _factor(Y, rows):
    meas = Measurements(_columns(Y), _columns(Y), Y.shape[1], "rademacher", 0, recycled=True)
    return _cholesky_factor(
        meas, rows, torch.from_numpy(Y.T @ Y), torch.device("cpu"), progress=False
    )


@pytest.mark.parametrize("cond", [1.0, 1e3, 9e4])
def test_cholesky_qr2_is_orthonormal_to_rounding(cond):
    Y = _with_condition(3000, 40, cond)
    R, steps = _factor(Y, row_blocks(3000, 40, 700))
    assert R is not None and steps == 2
    Q = torch.linalg.solve_triangular(R, torch.from_numpy(Y), upper=True, left=False)
    torch.testing.assert_close(Q.T @ Q, torch.eye(40, dtype=torch.float64), rtol=0, atol=1e-11)
    torch.testing.assert_close(Q @ R, torch.from_numpy(Y), rtol=0, atol=1e-13)
    assert torch.equal(torch.triu(R), R)


def test_ill_conditioned_or_rank_deficient_measurements_are_left_to_householder():
    assert _factor(_with_condition(2000, 30, 1e7), [range(0, 2000)])[0] is None
    Y = _with_condition(2000, 30, 1e3)
    # rank 20 < 30 columns
    Y[:, 20:] = Y[:, :10] @ np.random.default_rng(1).standard_normal((10, 10))
    assert _factor(Y, [range(0, 2000)])[0] is None


@pytest.mark.parametrize("rank, outer, method", [(50, 50, "cholesky"), (40, 60, "householder")])
@pytest.mark.parametrize("recycled", [False, True])
def test_exact_for_low_rank_operators_on_both_paths(rank, outer, method, recycled):
    """A sketch whose outer size covers the rank recovers the spectrum exactly (float64)."""
    spectrum = [
        float(v) for v in np.linspace(30, 1, rank) * np.where(np.arange(rank) % 3 == 1, -1, 1)
    ]
    op = _low_rank(1500, spectrum)
    result = seigh(
        op,
        10,
        outer,
        2 * outer,
        seed=2,
        recycled=recycled,
        error_test_vectors=0,
        memory_bytes=300_000,
    )
    assert result.info["qr"] == method and result.info["row_blocks"] > 2
    truth = torch.tensor(sorted(spectrum, key=abs, reverse=True)[:10], dtype=torch.float64)
    torch.testing.assert_close(result.eigenvalues, truth, rtol=1e-10, atol=0)
    assert (result.residuals < 1e-10).all()


def test_cholesky_and_householder_paths_agree(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    U, _ = torch.linalg.qr(torch.randn(1200, 80, generator=gen, dtype=torch.float64))
    op = LowRankPlusDiagonalOperator(
        U,
        torch.logspace(1, -2, 80, dtype=torch.float64),
        1e-3 * torch.rand(1200, generator=gen, dtype=torch.float64),
    )
    options = dict(
        k=8, outer=40, inner=80, seed=1, residuals=False, error_test_vectors=0, memory_bytes=200_000
    )
    store = MemoryStore()
    fast = seigh(op, store=store, **options)
    assert fast.info["qr"] == "cholesky"
    monkeypatch.setattr(recovery, "_cholesky_factor", lambda *args: (None, 0))
    store.forget_result()
    slow = seigh(op, store=store, **options)  # same measurements, no products
    assert slow.info["qr"] == "householder" and slow.info["measured_now"] == 0
    torch.testing.assert_close(slow.eigenvalues, fast.eigenvalues, rtol=1e-10, atol=0)
    cosines = (fast.eigenvectors.tensor() * slow.eigenvectors.tensor()).sum(dim=0).abs()
    assert (cosines > 1 - 1e-10).all()


def test_prefetch_reads_the_next_block_while_the_current_one_is_used():
    events = []
    lock = threading.Lock()

    def load(block):
        with lock:
            events.append(("load start", block.start))
        time.sleep(0.05)
        return block.start * 10

    blocks = [range(i, i + 1) for i in range(4)]
    seen = []
    for block, value in prefetched(blocks, load):
        with lock:
            events.append(("use start", block.start))
        time.sleep(0.05)
        seen.append((block.start, value))
        with lock:
            events.append(("use end", block.start))
    assert seen == [(i, 10 * i) for i in range(4)]
    for i in range(3):  # block i + 1 is being loaded before block i is done with
        assert events.index(("load start", i + 1)) < events.index(("use end", i))


def test_reused_buffers_never_overwrite_the_block_in_use():
    """Each block is loaded into memory reused from the block before last, while the consumer
    still uses the current one: it stays intact until its iteration ends, and only two buffers
    are ever made."""
    pool = AlternatingBuffers()
    loaded = threading.Event()

    def load(block):
        values = pool.next(1000, 3)
        values[:] = block.start
        loaded.set()
        return values

    blocks = [range(i, i + 1) for i in range(6)]
    memory = set()
    for block, values in prefetched(blocks, load):
        loaded.clear()
        if block.start < 5:
            assert loaded.wait(5)  # the next block is loaded during this iteration
        assert (values == block.start).all()
        memory.add(values.__array_interface__["data"][0])
    assert len(memory) == 2


def test_blocks_read_into_reused_buffers_equal_fresh_reads(tmp_path):
    """A float32 Zarr array decoded straight into float64 buffers, a numpy one copied, and Psi's
    rows generated into them: the values of a fresh read, whatever the buffer held before."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal((300, 12)).astype(np.float32)
    store = RunStore(tmp_path / "s.zarr")
    zarr_columns = store.columns("inner", 300, 12, 4, torch.float32, row_chunk=100)
    for start in range(0, 12, 4):
        zarr_columns.write(range(start, start + 4), values[:, start : start + 4])
    pool = AlternatingBuffers()
    for columns in (zarr_columns, _columns(values)):
        for rows in (range(0, 128), range(128, 300), range(5, 6)):
            out = pool.next(len(rows), 10)
            out[:] = np.nan
            read = columns.read_rows(rows, 10, out)
            assert read is out and np.array_equal(out, columns.read_rows(rows, 10))
    for kind in ("rademacher", "gaussian"):
        out = pool.next(50, 7)
        out[:] = np.nan
        random_block(kind, 3, range(20, 70), range(7), out=out)
        assert np.array_equal(out, random_block(kind, 3, range(20, 70), range(7)))


def test_post_processing_leaves_a_core_to_its_reader_and_gives_it_back():
    """Torch computes on one thread fewer while a pass reads ahead on the CPU (restored after,
    also when the pass fails); with one thread, or on a GPU, nothing changes."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        with computing_beside_reads(torch.device("cpu")):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
        with pytest.raises(RuntimeError, match="pass failed"):
            with computing_beside_reads(torch.device("cpu")):
                raise RuntimeError("pass failed")
        assert torch.get_num_threads() == 3
        with computing_beside_reads(torch.device("cuda")):
            assert torch.get_num_threads() == 3
        torch.set_num_threads(1)
        with computing_beside_reads(torch.device("cpu")):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_prefetch_raises_the_load_error_at_its_block():
    def load(block):
        if block.start == 2:
            raise RuntimeError("damaged chunk")
        return block.start

    seen = []
    with pytest.raises(RuntimeError, match="damaged chunk"):
        for block, _ in prefetched([range(i, i + 1) for i in range(4)], load):
            seen.append(block.start)
    assert seen == [0, 1]


@pytest.mark.gpu
def test_recovery_on_cuda_matches_cpu():
    op = _low_rank(3000, [float(v) for v in np.linspace(20, 1, 60)])
    options = dict(
        k=10,
        outer=40,
        inner=80,
        seed=4,
        residuals=False,
        error_test_vectors=0,
        memory_bytes=400_000,
    )
    store = MemoryStore()
    cpu = seigh(op, store=store, device="cpu", **options)
    store.forget_result()
    gpu = seigh(op, store=store, device="cuda", **options)
    assert gpu.info["device"].startswith("cuda")
    torch.testing.assert_close(gpu.eigenvalues, cpu.eigenvalues, rtol=1e-10, atol=0)


def test_write_behind_overlaps_and_surfaces_errors():
    writes = WriteBehind()
    log = []

    def slow_write(i):
        time.sleep(0.05)
        log.append(("written", i))

    writes.submit(slow_write, 0)
    log.append(("computing", 1))  # runs while block 0 is still being written
    writes.submit(slow_write, 1)  # waits for block 0 first: one write at a time
    assert log[:2] == [("computing", 1), ("written", 0)]
    writes.wait()
    assert log[-1] == ("written", 1)

    def disk_full(i):
        raise OSError(28, "No space left on device")

    writes.submit(disk_full, 2)
    with pytest.raises(OSError, match="No space left"):
        writes.wait()


def test_failed_write_keeps_earlier_blocks_and_rerun_completes(tmp_path, monkeypatch):
    op = _low_rank(800, [float(v) for v in np.linspace(9, 1, 30)])
    options = dict(
        k=5, outer=20, inner=40, seed=0, block_size=8, residuals=False, error_test_vectors=0
    )
    clean = seigh(op, store=RunStore(tmp_path / "clean.zarr"), **options)
    calls = {"n": 0}
    original = ZarrBlockWriter.write

    def fail_third(self, columns, values):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        original(self, columns, values)

    monkeypatch.setattr(ZarrBlockWriter, "write", fail_third)
    with pytest.raises(OSError, match="No space left"):
        seigh(op, store=RunStore(tmp_path / "full.zarr"), **options)
    monkeypatch.setattr(ZarrBlockWriter, "write", original)
    resumed = seigh(op, store=RunStore(tmp_path / "full.zarr"), **options)
    # the two blocks written before the failure were kept
    assert resumed.info["measured_now"] == 40 + 20 - 2 * 8
    torch.testing.assert_close(resumed.eigenvalues, clean.eigenvalues, rtol=0, atol=0)
