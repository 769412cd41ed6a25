"""SEIGH: accuracy on known spectra, invariance across configurations, resume and refusal."""

import functools
import importlib

import numpy as np
import pytest
import torch
import zarr
from scipy.sparse.linalg import eigsh
from scipy.stats import chi2

from pipeline.distributed import ProblemSpec, RayOperator
from pipeline.linalg import DenseOperator, LowRankPlusDiagonalOperator, seigh
from pipeline.linalg.aposteriori import chernoff_ratio, frobenius_error
from pipeline.store import MemoryStore, RunStore, StoreLockedError, StoreMismatchError

from helpers import data_factory, mlp_factory, synthetic


def low_rank_plus_tail(dim=2000, seed=0):
    """U diag(s) U^T + diag(tail): a clear gap after 10 partly negative eigenvalues."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(dim, 40, generator=gen, dtype=torch.float64))
    s = torch.cat(
        [torch.tensor([90.0, -70, 55, 40, -33, 27, 21, -16, 12, 10]), torch.linspace(1, 0.1, 30)]
    )
    tail = 0.01 * torch.randn(dim, generator=gen, dtype=torch.float64)
    return LowRankPlusDiagonalOperator(U, s.double(), tail)


def dense_eigenpairs(op, k):
    dense = op.U @ torch.diag(op.s) @ op.U.T + torch.diag(op.d)
    w, V = torch.linalg.eigh(dense)
    order = torch.argsort(-w.abs())
    return dense, w[order], V[:, order[:k]]


@pytest.fixture(scope="module")
def problem():
    op = low_rank_plus_tail()
    return op, dense_eigenpairs(op, 10)


def test_synthetic_top_k_within_one_percent_and_a_posteriori_bounds(problem):
    op, (dense, w, _) = problem
    result = seigh(op, 10, outer=60, inner=120, seed=3, error_test_vectors=16)
    assert result.matvecs == 60 + 120 + 10 + 16
    rel = (result.eigenvalues - w[:10]).abs() / w[:10].abs()
    assert rel.max() < 0.01
    # every Ritz value lies within its residual of a true eigenvalue (symmetric matrices)
    gaps = (w[None, :] - result.eigenvalues[:, None]).abs().min(dim=1).values
    assert (gaps <= result.residuals * result.eigenvalues.abs() * (1 + 1e-8)).all()
    V = result.eigenvectors.tensor()
    true_error = float(torch.linalg.matrix_norm(dense - V @ torch.diag(result.eigenvalues) @ V.T))
    est = result.info["frobenius_error"]
    assert est["low"] <= true_error <= est["high"]


@pytest.mark.parametrize("q", [4, 16])
def test_frobenius_bounds_hold_against_the_chi_square_law_and_in_repeated_trials(q):
    """Ground truth for the error bounds: the worst case est^2 / err^2 (a rank-one error) is
    chi^2_q / q, whose exact tails (scipy) must not exceed the nominal 5% at the Chernoff ratios;
    and over 300 seeds on a dense matrix the [low, high] interval holds the true error at least
    90% of the time (two 5% tails)."""
    assert chi2.sf(q * chernoff_ratio(q, 0.05, upper=True), q) <= 0.05
    assert chi2.cdf(q * chernoff_ratio(q, 0.05, upper=False), q) <= 0.05
    op = synthetic(40, seed=2)
    values, vectors = torch.linalg.eigh(op.matrix)
    top = values.abs().argsort(descending=True)[:3]
    truth = float(
        torch.linalg.matrix_norm(
            op.matrix - vectors[:, top] @ torch.diag(values[top]) @ vectors[:, top].T
        )
    )
    inside = [
        est.low <= truth <= est.high
        for est in (
            frobenius_error(op, values[top], vectors[:, top], q, seed, 8) for seed in range(300)
        )
    ]
    assert np.mean(inside) >= 0.9


@pytest.mark.parametrize("block_size", [1, 3, 7])
def test_the_error_estimate_draws_its_probes_a_block_at_a_time_as_the_whole_would(block_size):
    """The probes are generated a block at a time (no D x q matrix held): the estimate equals
    sqrt(mean_i ||(H - V diag(values) V^T) g_i||^2) with the whole G formed at once (float64)."""
    from pipeline.linalg import random_columns

    op = synthetic(40, seed=5)
    values, vectors = torch.linalg.eigh(op.matrix)
    top = values.abs().argsort(descending=True)[:4]
    V, lam = vectors[:, top], values[top]
    G = random_columns("gaussian", 11, 40, range(7))
    residual = (op.matrix - V @ torch.diag(lam) @ V.T) @ G
    expected = float(torch.linalg.matrix_norm(residual)) / 7**0.5
    estimate = frobenius_error(op, lam, V, 7, 11, block_size)
    assert estimate.estimate == pytest.approx(expected, rel=1e-12)
    assert estimate.relative == pytest.approx(
        expected / (float(torch.linalg.matrix_norm(op.matrix @ G)) / 7**0.5), rel=1e-12
    )


def test_the_checks_hold_the_eigenvectors_at_the_products_precision():
    """Residuals of a float32 operator from eigenvectors read (row block by row block) as float32:
    equal to the dense float64 residuals of those float32 vectors to float32 rounding."""
    from pipeline.linalg.aposteriori import pair_residuals
    from pipeline.linalg.seigh_checks import read_at

    matrix = synthetic(50, seed=6).matrix
    values, vectors = torch.linalg.eigh(matrix)
    stored = vectors[:, -3:].numpy()
    chunked = zarr.create_array(
        zarr.storage.MemoryStore(), shape=stored.shape, chunks=(7, 3), dtype="f8"
    )
    chunked[:] = stored
    for source in (stored, chunked):
        V = read_at(source, torch.float32)
        assert V.dtype == torch.float32 and torch.equal(V, torch.from_numpy(stored).float())
    op = DenseOperator(matrix.float())
    got = pair_residuals(op, values[-3:], V, block_size=2)
    V64 = V.double()
    truth = torch.linalg.vector_norm(matrix.float().double() @ V64 - V64 * values[-3:], dim=0)
    torch.testing.assert_close(got, truth / values[-3:].abs(), rtol=1e-4, atol=1e-6)


def test_recycled_variant_costs_inner_products_only(problem):
    op, (_, w, _) = problem
    result = seigh(
        op, 10, outer=60, inner=120, seed=3, recycled=True, residuals=False, error_test_vectors=0
    )
    assert result.matvecs == 120
    assert ((result.eigenvalues - w[:10]).abs() / w[:10].abs()).max() < 0.01


@pytest.mark.parametrize(
    "outer_kind, inner_kind", [("gaussian", "gaussian"), ("ssrft", "rademacher")]
)
def test_test_matrix_kinds(problem, outer_kind, inner_kind):
    op, (_, w, _) = problem
    result = seigh(
        op,
        10,
        60,
        120,
        seed=1,
        outer_kind=outer_kind,
        inner_kind=inner_kind,
        residuals=False,
        error_test_vectors=0,
    )
    assert ((result.eigenvalues - w[:10]).abs() / w[:10].abs()).max() < 0.01


def test_refinement_drives_residuals_below_tol(problem):
    op, (_, w, V) = problem
    result = seigh(op, 5, 30, 60, seed=0, refine_tol=1e-8, error_test_vectors=0)
    assert (result.residuals <= 1e-8).all() and result.converged.all()
    torch.testing.assert_close(result.eigenvalues, w[:5], rtol=1e-7, atol=0)
    assert ((result.eigenvectors.tensor().T @ V[:, :5]).diagonal().abs() > 1 - 1e-7).all()


def _plain(op, **kwargs):
    options = dict(
        k=6, outer=30, inner=60, seed=5, block_size=8, residuals=False, error_test_vectors=0
    )
    options.update(kwargs)
    return seigh(op, **options)


@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_block_size_does_not_change_the_result(problem, block_size):
    op = problem[0]
    reference = _plain(op, block_size=8)
    other = _plain(op, block_size=block_size)
    torch.testing.assert_close(other.eigenvalues, reference.eigenvalues, rtol=1e-10, atol=0)


def test_out_of_core_equals_in_memory(problem, tmp_path):
    op = problem[0]
    memory = _plain(op)
    # many row blocks
    disk = _plain(op, store=RunStore(tmp_path / "run.zarr"), memory_bytes=200 * 1024)
    assert disk.info["row_blocks"] > 4
    torch.testing.assert_close(disk.eigenvalues, memory.eigenvalues, rtol=1e-10, atol=0)
    cosines = np.abs(
        np.sum(np.asarray(disk.eigenvectors[:]) * np.asarray(memory.eigenvectors), axis=0)
    )
    assert (cosines > 1 - 1e-10).all()
    reopened = RunStore(tmp_path / "run.zarr")
    np.testing.assert_allclose(reopened.load("eigenvalues"), memory.eigenvalues.numpy(), rtol=1e-10)


class Interrupted(Exception):
    pass


def _kill_after(blocks):
    seen = []

    def hook(name, columns):
        seen.append(columns)
        if len(seen) == blocks:
            raise Interrupted(f"killed after {blocks} blocks")

    return hook


def test_killed_run_resumes_without_remeasuring(problem, tmp_path):
    op = problem[0]
    url = tmp_path / "resume.zarr"
    uninterrupted = _plain(op, block_size=8, store=RunStore(tmp_path / "clean.zarr"))
    with pytest.raises(Interrupted):
        _plain(op, block_size=8, store=RunStore(url), on_block=_kill_after(5))
    resumed = _plain(op, block_size=8, store=RunStore(url))
    total = 30 + 60
    assert resumed.info["measured_now"] == total - 5 * 8
    torch.testing.assert_close(resumed.eigenvalues, uninterrupted.eigenvalues, rtol=0, atol=0)
    again = _plain(op, block_size=8, store=RunStore(url))
    assert again.info["measured_now"] == 0


def test_a_store_measured_16_columns_a_product_resumes_4_at_a_time_with_another_batch_size(
    tmp_path,
):
    """The product width and the batch size change how products are made, not the measurements:
    neither is in the store's fingerprint, so a run killed at one width resumes at another."""
    from torch import nn

    from pipeline.curvature import HessianOperator
    from pipeline.data import batches

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()  # D = 83
    x, y = torch.randn(60, 6, dtype=torch.float64), torch.randint(0, 3, (60,))

    def op(batch_size):
        return HessianOperator(
            model,
            nn.functional.cross_entropy,
            batches(x, y, batch_size),
            product_mode="reverse-over-reverse",
        )

    settings = dict(
        k=3,
        outer=16,
        inner=48,
        seed=1,
        block_size=16,
        error_test_vectors=0,
        problem={"model": "mlp"},
    )
    uninterrupted = seigh(op(60), store=RunStore(tmp_path / "clean.zarr"), **settings)
    with pytest.raises(Interrupted):
        seigh(op(60), store=RunStore(tmp_path / "run.zarr"), on_block=_kill_after(2), **settings)
    resumed = seigh(op(25), store=RunStore(tmp_path / "run.zarr"), product_width=4, **settings)
    # the two blocks measured 16 at a time were kept
    assert resumed.info["measured_now"] == 64 - 2 * 16
    torch.testing.assert_close(resumed.eigenvalues, uninterrupted.eigenvalues, rtol=1e-12, atol=0)


def _flip_bytes(path, count=256):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def _chunk(url, array, row_chunk, column_chunk):
    return url / array / "c" / str(row_chunk) / str(column_chunk)


FAULTS = {
    "bit flip": lambda url: _flip_bytes(_chunk(url, "outer", 0, 1)),
    "truncated chunk": lambda url: _chunk(url, "outer", 0, 1).write_bytes(
        _chunk(url, "outer", 0, 1).read_bytes()[:1000]
    ),
    "deleted chunk": lambda url: _chunk(url, "outer", 0, 1).unlink(),
    "non-finite block": lambda url: (
        RunStore(url).group["outer"].__setitem__((slice(None), slice(8, 16)), np.nan)
    ),
    "deleted mark": lambda url: (url / "outer_done" / "c" / "1").unlink(),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_damaged_measurements_are_remeasured_in_the_same_run(problem, tmp_path, fault, caplog):
    """Every fault gives the clean run's numbers, remeasuring only the damaged block (8 columns)."""
    op = problem[0]
    url = tmp_path / "damaged.zarr"
    reference = _plain(op, store=RunStore(url))
    FAULTS[fault](url)
    RunStore(url).forget_result()  # as if the run had been killed after measuring
    with caplog.at_level("WARNING"):
        repaired = _plain(op, store=RunStore(url))
    assert repaired.info["measured_now"] == 8
    if fault != "deleted mark":  # a lost mark is simply a missing block: nothing to warn about
        assert "outer measurements are damaged" in caplog.text and "columns 8..15" in caplog.text
    torch.testing.assert_close(repaired.eigenvalues, reference.eigenvalues, rtol=0, atol=0)


def test_rerun_of_a_completed_run_reuses_its_results_unless_they_are_damaged(
    problem, tmp_path, caplog
):
    op = problem[0]
    url = tmp_path / "done.zarr"
    first = _plain(op, store=RunStore(url), residuals=True)
    with caplog.at_level("INFO"):
        again = _plain(op, store=RunStore(url), residuals=True)
    assert (
        again.matvecs == 0 and again.info["reused"] and "reusing the stored results" in caplog.text
    )
    torch.testing.assert_close(again.eigenvalues, first.eigenvalues, rtol=0, atol=0)
    torch.testing.assert_close(again.residuals, first.residuals, rtol=0, atol=0)
    np.testing.assert_array_equal(
        np.asarray(again.eigenvectors[:]), np.asarray(first.eigenvectors[:])
    )
    # other settings: recomputed from the measurements
    other = _plain(op, store=RunStore(url), residuals=True, k=4)
    assert "reused" not in other.info and other.info["measured_now"] == 0
    _plain(op, store=RunStore(url), residuals=True)
    _flip_bytes(_chunk(url, "eigenvectors", 0, 0), count=64)
    caplog.clear()
    with caplog.at_level("WARNING"):
        recomputed = _plain(op, store=RunStore(url), residuals=True)
    assert (
        "reused" not in recomputed.info
        and "stored results of the completed run are damaged" in caplog.text
    )
    torch.testing.assert_close(recomputed.eigenvalues, first.eigenvalues, rtol=0, atol=0)


@pytest.mark.parametrize("change", [{"seed": 6}, {"block_size": 4}, {"recycled": True}])
def test_changed_config_is_refused(problem, tmp_path, change):
    op = problem[0]
    url = tmp_path / "refuse.zarr"
    _plain(op, store=RunStore(url))
    with pytest.raises(StoreMismatchError, match="another configuration"):
        _plain(op, store=RunStore(url), **change)
    with pytest.raises(StoreMismatchError):
        store = MemoryStore()
        _plain(op, store=store)
        _plain(op, store=store, **change)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "1 <= k"),
        ({"outer": 5}, "outer must satisfy"),
        ({"inner": 40}, "inner must satisfy"),
        ({"inner_kind": "ssrft"}, "inner test matrix"),
        ({"outer_kind": "sobol"}, "unknown outer"),
    ],
)
def test_bad_arguments(problem, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _plain(problem[0], **kwargs)


def test_one_vs_two_workers_give_the_same_sketch(ray_session, tmp_path):
    spec = ProblemSpec(
        functools.partial(mlp_factory), functools.partial(data_factory, n=61), batch_size=16
    )
    results = []
    for workers in (1, 2):
        with RayOperator(spec, num_workers=workers, cpus_per_worker=1) as op:
            results.append(
                seigh(
                    op,
                    4,
                    12,
                    24,
                    seed=2,
                    store=RunStore(tmp_path / f"w{workers}.zarr"),
                    block_size=5,
                    error_test_vectors=0,
                )
            )
    torch.testing.assert_close(results[0].eigenvalues, results[1].eigenvalues, rtol=1e-9, atol=0)
    for name in ("outer", "inner"):  # written by the workers themselves
        one = np.asarray(RunStore(tmp_path / "w1.zarr").group[name][:])
        two = np.asarray(RunStore(tmp_path / "w2.zarr").group[name][:])
        np.testing.assert_allclose(one, two, rtol=1e-9, atol=1e-12)


def test_exact_low_rank_matrix_is_recovered_exactly():
    """If rank(H) <= outer, range(Y) = range(H) and the sketch reconstructs H to rounding."""
    gen = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(300, 20, generator=gen, dtype=torch.float64))
    s = torch.linspace(-5, 9, 20, dtype=torch.float64)
    op = DenseOperator(U @ torch.diag(s) @ U.T)
    w = s[torch.argsort(-s.abs())]
    result = seigh(op, 8, outer=25, inner=50, error_test_vectors=4)
    torch.testing.assert_close(result.eigenvalues, w[:8], rtol=1e-9, atol=0)
    assert (result.residuals < 1e-9).all()
    error = result.info["frobenius_error"]
    truncation = float(w[8:].norm())  # ||H - H_8||_F: the 12 eigenvalues left out
    assert error["low"] <= truncation <= error["high"]


@pytest.mark.slow
def test_paper_mlp_on_digits_top10_within_two_percent_of_the_exact_eigenvalues():
    """The paper's tanh-MLP (7,030 parameters) on 500 digits with its nO=355, nI=710, against
    scipy's ARPACK to 1e-10 (equal to the dense float64 eigh of the same operator to 7e-15, which
    takes 30 s more)."""
    from torch import nn

    from pipeline.curvature import HessianOperator
    from pipeline.data.digits import load_digits
    from pipeline.data.subsets import batches, class_balanced_indices
    from pipeline.models.mlp import tanh_mlp

    torch.manual_seed(0)
    x, y = load_digits()
    index = class_balanced_indices(y, 500)
    x, y = x[index].double(), y[index]
    model = tanh_mlp().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    op = HessianOperator(model, nn.functional.cross_entropy, batches(x, y, 250))
    dim = op.shape[0]
    assert dim == 7030
    # ARPACK as the reference
    w = torch.from_numpy(
        eigsh(op.to_scipy(), k=10, which="LM", tol=1e-10, return_eigenvectors=False)
    )
    w = w[torch.argsort(-w.abs())]
    result = seigh(op, 10, outer=355, inner=710, block_size=128, error_test_vectors=0)
    assert ((result.eigenvalues - w).abs() / w.abs()).max() < 0.02


def test_fsspec_url_store_resumes(problem):
    """An fsspec URL (here the in-process memory:// filesystem) works like a local path."""
    op = problem[0]
    url = "memory://hessian-pipeline-test/run.zarr"
    first = _plain(op, store=RunStore(url))
    again = _plain(op, store=RunStore(url))
    assert again.info["measured_now"] == 0
    torch.testing.assert_close(again.eigenvalues, first.eigenvalues, rtol=0, atol=0)
    with pytest.raises(StoreMismatchError):
        _plain(op, store=RunStore(url), seed=99)


def test_mismatch_names_only_the_differing_keys_in_one_line(problem, tmp_path):
    op = problem[0]
    url = tmp_path / "fp.zarr"
    _plain(
        op,
        store=RunStore(url),
        problem={"data": {"subset": 500, "root": "/data"}, "dtype": "float64"},
    )
    with pytest.raises(StoreMismatchError) as error:
        _plain(
            op,
            store=RunStore(url),
            problem={"data": {"subset": 400, "root": "/data"}, "dtype": "float64"},
            seed=6,
        )
    message = str(error.value)
    assert (
        "\n" not in message
        and "problem.data.subset: 500 -> 400" in message
        and "seed: 5 -> 6" in message
    )
    assert "problem.data.root" not in message and "problem.dtype" not in message


class FailingOperator(DenseOperator):
    def _matmat(self, V):
        raise ValueError("loss is nan on batch 0")


def test_a_run_failing_before_its_first_block_leaves_no_fingerprint(problem, tmp_path):
    url = tmp_path / "failed.zarr"
    dense = problem[1][0]
    with pytest.raises(ValueError, match="loss is nan"):
        _plain(FailingOperator(dense), store=RunStore(url), problem={"data": "broken"})
    assert "fingerprint" not in RunStore(url).attrs
    # the corrected rerun is accepted
    fixed = _plain(DenseOperator(dense), store=RunStore(url), problem={"data": "fixed"})
    assert fixed.info["measured_now"] == 90
    assert RunStore(url).attrs["fingerprint"]["problem"] == {"data": "fixed"}


def test_second_driver_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
    import subprocess
    import sys

    url = tmp_path / "locked.zarr"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pipeline.store import RunStore; import time; s = RunStore({str(url)!r}); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(
            StoreLockedError, match=f"in use by pid {holder.pid} on .* delete .*lock"
        ):
            RunStore(url)
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level("WARNING"):
        store = RunStore(url)  # the holder was killed: its lock is stale
    assert "stale lock" in caplog.text and str(holder.pid) in caplog.text
    store.close()
    assert not (tmp_path / "locked.zarr.lock").exists()


def test_driver_dying_during_post_processing_leaves_a_store_that_recomputes(
    problem, tmp_path, monkeypatch
):
    # the attribute pipeline.linalg.seigh is the function
    seigh_module = importlib.import_module("pipeline.linalg.seigh")
    op = problem[0]
    clean = _plain(op, store=RunStore(tmp_path / "clean.zarr"))
    url = tmp_path / "killed.zarr"
    # a completed run, then rerun with other settings and killed mid-way
    _plain(op, store=RunStore(url))
    original = seigh_module.write_eigenvectors

    def die_half_way(rows, recovered, columns, target, device, progress):
        original(rows[:1], recovered, columns, target, device, progress)
        raise Interrupted("driver killed while writing eigenvectors")

    monkeypatch.setattr(seigh_module, "write_eigenvectors", die_half_way)
    with pytest.raises(Interrupted):
        _plain(op, store=RunStore(url), memory_bytes=200 * 1024, k=4)
    monkeypatch.setattr(seigh_module, "write_eigenvectors", original)
    rerun = _plain(op, store=RunStore(url))
    # no stale result, no products
    assert "reused" not in rerun.info and rerun.info["measured_now"] == 0
    torch.testing.assert_close(rerun.eigenvalues, clean.eigenvalues, rtol=1e-12, atol=0)


def _same_result(got, want):
    torch.testing.assert_close(got.eigenvalues, want.eigenvalues, rtol=1e-10, atol=1e-12)
    gv, wv = (torch.as_tensor(np.asarray(r.eigenvectors[:])) for r in (got, want))
    torch.testing.assert_close(
        (gv * wv).sum(0).abs(), torch.ones(gv.shape[1], dtype=gv.dtype), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("make_store", ["memory", "zarr"])
# 8: the old last block (30 = 3 x 8 + 6) is partial and measured again
@pytest.mark.parametrize("block_size", [10, 8])
def test_growing_a_sketch_measures_only_new_columns_and_equals_a_fresh_run(
    problem, tmp_path, make_store, block_size
):
    op = problem[0]
    store = MemoryStore() if make_store == "memory" else RunStore(tmp_path / "grow.zarr")
    _plain(op, store=store, outer=20, inner=40, block_size=block_size)
    grown = _plain(op, store=store, outer=30, inner=60, block_size=block_size)
    # columns of partial blocks measured again
    partial = sum(block_size - n % block_size for n in (20, 40) if n % block_size)
    assert grown.info["measured_now"] == (30 - 20) + (60 - 40) + partial
    _same_result(grown, _plain(op, outer=30, inner=60, block_size=block_size))
    w = problem[1][1]
    # and against the dense eigenvalues
    assert float(((grown.eigenvalues - w[:6]).abs() / w[:6].abs()).max()) < 0.05
    shrunk = _plain(op, store=store, outer=20, inner=40, block_size=block_size)
    # the stored columns serve the smaller sketch
    assert shrunk.info["measured_now"] == 0 and shrunk.matvecs == 0
    _same_result(shrunk, _plain(op, outer=20, inner=40, block_size=block_size))


def test_a_growth_step_killed_midway_resumes(problem, tmp_path):
    op = problem[0]
    url = tmp_path / "kill.zarr"
    _plain(op, store=RunStore(url), outer=20, inner=40, block_size=10)
    seen = []

    def die_after_two_new_blocks(name, columns):
        seen.append(columns)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _plain(
            op,
            store=RunStore(url),
            outer=30,
            inner=60,
            block_size=10,
            on_block=die_after_two_new_blocks,
        )
    resumed = _plain(op, store=RunStore(url), outer=30, inner=60, block_size=10)
    # the two blocks measured before the kill are kept
    assert resumed.info["measured_now"] == 30 - 20
    _same_result(resumed, _plain(op, outer=30, inner=60, block_size=10))


def test_adaptive_seigh_grows_until_the_target_and_matches_a_fixed_sketch_of_that_size(problem):
    from pipeline.linalg import adaptive_seigh

    op, (_, w, _) = problem
    store = MemoryStore()
    result = adaptive_seigh(
        op,
        6,
        1e-2,
        start_outer=12,
        growth=1.5,
        store=store,
        seed=5,
        error_test_vectors=0,
        block_size=6,
    )
    steps = result.info["adaptive"]
    assert steps[0]["outer"] == 12 and len(steps) >= 3
    assert all(
        b["outer"] == 6 * int(np.ceil(np.ceil(a["outer"] * 1.5) / 6))
        and b["inner"] == 2 * b["outer"]
        for a, b in zip(steps, steps[1:])
    )
    assert steps[-1]["worst_residual"] <= 1e-2 < steps[-2]["worst_residual"] and bool(
        result.converged.all()
    )
    measured = steps[-1]["outer"] + steps[-1]["inner"]
    # every column once, and the residuals of each step
    assert result.matvecs == measured + 6 * len(steps)
    fixed = seigh(
        op, 6, steps[-1]["outer"], steps[-1]["inner"], seed=5, error_test_vectors=0, block_size=6
    )
    torch.testing.assert_close(result.eigenvalues, fixed.eigenvalues, rtol=1e-10, atol=1e-12)
    # residual <= tol bounds the error
    assert float(((result.eigenvalues - w[:6]).abs() / w[:6].abs()).max()) < 1e-2


def test_adaptive_seigh_stops_at_its_budget_with_a_warning_and_resumes_after_a_kill(
    problem, tmp_path, caplog
):
    from pipeline.linalg import adaptive_seigh

    op = problem[0]
    options = dict(start_outer=12, growth=1.5, seed=5, error_test_vectors=0, block_size=6)
    with caplog.at_level("WARNING"):
        capped = adaptive_seigh(op, 6, 1e-12, max_matvecs=120, **options)
    assert (
        "max_matvecs=120 would be exceeded" in caplog.text
        and "missed the relative residual" in caplog.text
        and not bool(capped.converged.all())
    )
    assert capped.info["adaptive_matvecs"] <= 120
    url = tmp_path / "adaptive.zarr"
    calls = []

    def die_in_the_third_step(name, columns):
        calls.append(name)
        if len(calls) == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adaptive_seigh(op, 6, 1e-2, store=RunStore(url), on_block=die_in_the_third_step, **options)
    resumed = adaptive_seigh(op, 6, 1e-2, store=RunStore(url), **options)
    straight = adaptive_seigh(op, 6, 1e-2, **options)
    assert [s["outer"] for s in resumed.info["adaptive"]] == [
        s["outer"] for s in straight.info["adaptive"]
    ]
    # nothing measured twice
    assert resumed.info["adaptive_matvecs"] == straight.info["adaptive_matvecs"]
    torch.testing.assert_close(resumed.eigenvalues, straight.eigenvalues, rtol=1e-10, atol=1e-12)


def test_adaptive_history_noted_before_the_product_count_rename_still_resumes(problem, tmp_path):
    """Stores noted adaptive steps under "products" before the count was named matvecs: resuming one
    spends and reports exactly what an uninterrupted run does."""
    from pipeline.linalg import adaptive_seigh

    op = problem[0]
    options = dict(start_outer=12, growth=1.5, seed=5, error_test_vectors=0, block_size=6)
    url = tmp_path / "old.zarr"
    calls = []

    def die_in_the_third_step(name, columns):
        calls.append(name)
        if len(calls) == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adaptive_seigh(op, 6, 1e-2, store=RunStore(url), on_block=die_in_the_third_step, **options)
    store = RunStore(url)
    noted = store.noted("adaptive_history")
    assert noted and all("matvecs" in step for step in noted)
    store.note(
        "adaptive_history",
        [
            {("products" if key == "matvecs" else key): value for key, value in step.items()}
            for step in noted
        ],
    )
    resumed = adaptive_seigh(op, 6, 1e-2, store=store, **options)
    straight = adaptive_seigh(op, 6, 1e-2, **options)
    assert resumed.info["adaptive_matvecs"] == straight.info["adaptive_matvecs"]
    assert [s["matvecs"] for s in resumed.info["adaptive"]] == [
        s["matvecs"] for s in straight.info["adaptive"]
    ]
