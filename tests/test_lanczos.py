"""Lanczos and power iteration against dense eigh in float64."""

import pytest
import torch
from torch import nn

from pipeline.curvature import HessianOperator
from pipeline.linalg import DenseOperator, lanczos, power_iteration
from pipeline.linalg.block_width import choose_block_width

from helpers import classification_data, dense_hessian, small_mlp, split, synthetic

CE = nn.functional.cross_entropy


@pytest.fixture(scope="module")
def hessian_problem():
    model = small_mlp()
    x, y = classification_data(60, (6,))
    return HessianOperator(model, CE, split(x, y, [32, 28])), dense_hessian(model, CE, x, y)


def dense_top(H, k, which):
    w, V = torch.linalg.eigh(H)
    key = {"LM": -w.abs(), "LA": -w, "SA": w}[which]
    idx = torch.argsort(key)[:k]
    return w[idx], V[:, idx]


def assert_matches_dense(result, H, k, which, rtol):
    values, vectors = dense_top(H, k, which)
    torch.testing.assert_close(result.eigenvalues, values, rtol=rtol, atol=0)
    cosines = (result.eigenvectors.T @ vectors).diagonal().abs()
    assert (cosines > 1 - rtol).all(), cosines
    recomputed = (H @ result.eigenvectors - result.eigenvectors * result.eigenvalues).norm(
        dim=0
    ) / result.eigenvalues.abs()
    # reported residuals come from the Krylov relation; recomputed ones add rounding ~eps ||H|| /
    # |lambda|
    torch.testing.assert_close(result.residuals, recomputed, rtol=1e-3, atol=1e-11)


@pytest.mark.parametrize("which", ["LM", "LA"])
@pytest.mark.parametrize("block_size", [1, 4])
def test_lanczos_on_hessian_matches_eigh(hessian_problem, which, block_size):
    op, H = hessian_problem
    result = lanczos(op, 6, tol=1e-10, which=which, block_size=block_size)
    assert result.converged.all()
    assert (result.residuals <= 1e-10).all()
    assert_matches_dense(result, H, 6, which, rtol=1e-8)


@pytest.mark.parametrize("which", ["LM", "LA", "SA"])
def test_lanczos_synthetic_indefinite(which):
    op = synthetic()
    result = lanczos(op, 5, tol=1e-9, which=which)
    assert_matches_dense(result, op.matrix, 5, which, rtol=1e-8)
    assert result.matvecs == op.matvecs


def test_lanczos_restarts_with_small_basis():
    op = synthetic()
    result = lanczos(op, 5, tol=1e-9, ncv=12)
    assert result.info["restarts"] > 0
    assert_matches_dense(result, op.matrix, 5, "LM", rtol=1e-8)


def test_lanczos_finds_invariant_subspace_of_low_rank_operator():
    spectrum = torch.cat([torch.tensor([5.0, 4.0, -3.0, 2.0]), torch.zeros(96)])
    op = synthetic(100, spectrum=spectrum)
    result = lanczos(op, 4, tol=1e-10)
    assert_matches_dense(result, op.matrix, 4, "LM", rtol=1e-8)


def test_lanczos_full_space_is_exact():
    op = synthetic(30)
    result = lanczos(op, 29, ncv=100)
    assert_matches_dense(result, op.matrix, 29, "LM", rtol=1e-8)


def test_lanczos_reports_unconverged_when_budget_runs_out():
    op = synthetic(spectrum=torch.linspace(1, 2, 400))
    result = lanczos(op, 5, tol=1e-12, ncv=10, max_matvecs=20)
    assert not result.converged.all()
    assert result.matvecs <= 30


def test_lanczos_is_seeded():
    op = synthetic()
    a, b = lanczos(op, 3, tol=1e-3, seed=4), lanczos(op, 3, tol=1e-3, seed=4)
    torch.testing.assert_close(a.eigenvectors, b.eigenvectors, rtol=0, atol=0)


def test_power_iteration_finds_top_pairs():
    op = synthetic(
        200, spectrum=torch.cat([torch.tensor([10.0, -6.0, 3.0]), 0.1 * torch.rand(197)])
    )
    result = power_iteration(op, 3, tol=1e-10, max_iter=500)
    values, vectors = dense_top(op.matrix, 3, "LM")
    torch.testing.assert_close(result.eigenvalues, values, rtol=1e-6, atol=0)
    assert ((result.eigenvectors.T @ vectors).diagonal().abs() > 1 - 1e-6).all()
    assert result.matvecs == op.matvecs


def test_power_iteration_needs_more_products_than_lanczos():
    op = synthetic(300)
    power = power_iteration(op, 5, tol=1e-6, max_iter=1000)
    krylov = lanczos(op, 5, tol=1e-6)
    assert krylov.matvecs < power.matvecs


@pytest.mark.parametrize("k", [0, -1, 400, 401, 2.0, True])
def test_bad_k(k):
    op = synthetic()
    with pytest.raises(ValueError, match="1 <= k < D = 400"):
        lanczos(op, k)
    with pytest.raises(ValueError, match="1 <= k < D = 400"):
        power_iteration(op, k)


def test_bad_which_and_block():
    op = synthetic()
    with pytest.raises(ValueError, match="which"):
        lanczos(op, 2, which="BE")
    with pytest.raises(ValueError, match="block_size"):
        lanczos(op, 2, block_size=0)


@pytest.mark.parametrize("block_size", [1, 3])
@pytest.mark.parametrize("ncv", [None, 14])
def test_lanczos_spends_no_product_after_the_pairs_converge(block_size, ncv):
    op = synthetic(spectrum=torch.cat([torch.linspace(20, 5, 8), torch.linspace(1, 0.01, 392)]))
    result = lanczos(op, 6, tol=1e-6, block_size=block_size, ncv=ncv)
    assert result.converged.all()
    assert_matches_dense(result, op.matrix, 6, "LM", rtol=1e-6)
    short = lanczos(
        op, 6, tol=1e-6, block_size=block_size, ncv=ncv, max_matvecs=result.matvecs - block_size
    )
    assert not short.converged.all(), "one block fewer must miss tol: the last block was needed"


@pytest.mark.parametrize("k", [5, 10, 20])
def test_lanczos_needs_no_more_products_than_arpack(k):
    from scipy.sparse.linalg import LinearOperator, eigsh

    spectrum = torch.cat(
        [
            10 * 0.8 ** torch.arange(30.0),
            0.01 * torch.rand(370, generator=torch.Generator().manual_seed(k)),
        ]
    )
    op = synthetic(spectrum=spectrum * torch.where(torch.arange(400) % 3 == 0, -1.0, 1.0).double())
    ours = lanczos(op, k, tol=1e-6)
    counted = {"n": 0}

    def matvec(x):
        counted["n"] += 1
        return op.matrix.numpy() @ x

    eigsh(
        LinearOperator(op.shape, matvec=matvec, dtype="float64"),
        k=k,
        which="LM",
        tol=1e-6,
        v0=torch.ones(400).numpy(),
    )
    assert ours.converged.all()
    assert ours.matvecs <= counted["n"], (ours.matvecs, counted["n"])


class TimedDense(DenseOperator):
    """A dense operator that reports the block timings ``seconds(width)`` as its own."""

    def __init__(self, matrix, seconds, probe_share=0.01):
        super().__init__(matrix)
        self.seconds, self.share, self.timed = seconds, probe_share, []

    def pass_seconds(self, width):
        self.timed.append(width)
        return self.seconds(width)

    def probe_share(self):
        return self.share


@pytest.mark.parametrize(
    "k,seconds,expected",
    [
        # a block of 4 costs a single product: 1.45x the products at a quarter of the time each
        (20, lambda b: 1.0, 4),
        (2, lambda b: 1.0, 1),  # k = 2: a block of 2 needs 2.5x the products, more than it saves
        (20, lambda b: 0.8 * b, 1),  # per-vector cost at most 20% lower: the extra products eat it
        (20, lambda b: 0.4 + 0.6 * b, 2),
    ],
)
def test_auto_block_width_minimises_expected_wall_time(k, seconds, expected):
    op = TimedDense(synthetic().matrix, seconds)
    assert choose_block_width(op, k) == expected
    assert op.timed == [b for b in (1, 2, 4) if b <= k]


def test_auto_block_width_does_not_time_where_it_cannot_repay():
    # timing 2 and 4 would cost 12 of 60 products
    op = TimedDense(synthetic().matrix, lambda b: 1.0, probe_share=2.0)
    assert choose_block_width(op, 20) == 1 and op.timed == [1]
    assert choose_block_width(synthetic(), 20) == 1  # an operator that cannot time itself


def test_auto_block_lanczos_equals_the_single_vector_run():
    op = TimedDense(synthetic().matrix, lambda b: 1.0)
    auto = lanczos(op, 20, tol=1e-10, block_size="auto")
    single = lanczos(synthetic(), 20, tol=1e-10, block_size=1)
    assert auto.info["block_size"] == 4 and single.info["block_size"] == 1
    torch.testing.assert_close(auto.eigenvalues, single.eigenvalues, rtol=1e-9, atol=0)
    assert_matches_dense(auto, op.matrix, 20, "LM", rtol=1e-8)


def test_auto_block_width_on_a_hessian_times_its_products_once(hessian_problem):
    op, H = hessian_problem
    result = lanczos(op, 6, tol=1e-10, block_size="auto")
    assert set(op.mode_choices) <= {1, 2, 4}
    assert_matches_dense(result, H, 6, "LM", rtol=1e-8)
