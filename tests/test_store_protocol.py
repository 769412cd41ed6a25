"""Both measurement stores implement one protocol and hand back one eigenvector type; a completed
run's eigenpairs load read-only, an unfinished one is refused."""

import numpy as np
import pytest
import torch

from pipeline.errors import InputError, MissingFileError
from pipeline.linalg import seigh
from pipeline.store import (
    MeasurementStore,
    MemoryStore,
    RunStore,
    StoredMatrix,
    load_eigenpairs,
    open_store,
)

from helpers import synthetic


def _operator(dim: int = 300):
    tail = 1e-3 * torch.rand(
        dim - 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    return synthetic(
        dim,
        seed=4,
        spectrum=torch.cat([torch.tensor([50.0, -30.0, 20.0, 10.0], dtype=torch.float64), tail]),
    )


OPTIONS = dict(k=4, outer=20, inner=40, block_size=10, seed=1, error_test_vectors=0)


def test_the_backend_comes_from_the_url_and_a_store_holds_its_lock_while_open(tmp_path):
    with open_store("memory://") as memory:
        assert isinstance(memory, MemoryStore)
    url = tmp_path / "s.zarr"
    with open_store(str(url)) as store:
        assert isinstance(store, RunStore) and isinstance(store, MeasurementStore)
        seigh(_operator(), store=store, **OPTIONS)
        assert url.with_suffix(".zarr.lock").exists()  # one driver per store while it is open
    assert not url.with_suffix(".zarr.lock").exists()  # closed: the next run may take it
    assert load_eigenpairs(url)[0].shape == (4,)


def test_memory_and_zarr_stores_implement_the_protocol_and_agree(tmp_path):
    op = _operator()
    memory_store, zarr_store = MemoryStore(), RunStore(tmp_path / "s.zarr")
    assert isinstance(memory_store, MeasurementStore) and isinstance(zarr_store, MeasurementStore)
    in_memory = seigh(op, store=memory_store, **OPTIONS)
    on_disk = seigh(op, store=zarr_store, **OPTIONS)
    assert type(in_memory.eigenvectors) is type(on_disk.eigenvectors) is StoredMatrix
    assert in_memory.eigenvectors.shape == on_disk.eigenvectors.shape == (300, 4)
    # same numbers, bit for bit
    np.testing.assert_array_equal(np.asarray(in_memory.eigenvectors), on_disk.eigenvectors[:])
    truth = torch.linalg.eigh(op.matrix).eigenvectors[
        :, torch.linalg.eigh(op.matrix).eigenvalues.abs().argsort(descending=True)[:4]
    ]
    cosines = (on_disk.eigenvectors.tensor() * truth).sum(dim=0).abs()
    assert (cosines > 1 - 1e-6).all()


def test_a_completed_run_loads_read_only_and_an_unfinished_one_is_refused(tmp_path):
    op = _operator()
    url = tmp_path / "run.zarr"
    store = RunStore(url)
    result = seigh(op, store=store, **OPTIONS)
    values, vectors = load_eigenpairs(url)  # while the writer still holds its lock
    np.testing.assert_array_equal(values, result.eigenvalues.numpy())
    np.testing.assert_array_equal(vectors[:], result.eigenvectors[:])
    store.forget_result()
    with pytest.raises(InputError, match="holds no completed run"):
        load_eigenpairs(url)
    with pytest.raises(MissingFileError, match="no run store"):
        load_eigenpairs(tmp_path / "absent.zarr")


def test_a_stored_matrix_saves_as_the_npy_of_its_whole(tmp_path):
    """Written by row chunks (7 of 30 rows: the last one partial) or, in memory, in one step: the
    file is np.save's of the whole matrix, byte for byte."""
    values = np.random.default_rng(3).standard_normal((30, 4))
    on_disk = RunStore(tmp_path / "s.zarr").matrix("eigenvectors", (30, 4), 7)
    on_disk[...] = values
    for index, stored in enumerate((StoredMatrix(on_disk), StoredMatrix(values))):
        stored.save_npy(tmp_path / f"streamed{index}.npy")
        np.save(tmp_path / "whole.npy", values)
        assert (tmp_path / f"streamed{index}.npy").read_bytes() == (
            tmp_path / "whole.npy"
        ).read_bytes()
