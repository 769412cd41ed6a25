"""Honest convergence: every algorithm's ``converged`` is its true relative residual against tol,
and unconverged pairs are named in a WARNING."""

import pytest
import torch

from pipeline.linalg import DenseOperator, lanczos, power_iteration, seigh


def _clustered(dim=300, seed=0):
    """Top eigenvalues 1.0, 0.99, 0.98 (slow for power iteration), then a flat bulk below 0.5."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    values = torch.cat(
        [
            torch.tensor([1.0, 0.99, 0.98], dtype=torch.float64),
            0.5 * torch.rand(dim - 3, generator=gen, dtype=torch.float64),
        ]
    )
    return DenseOperator(Q @ torch.diag(values) @ Q.T)


def _true_residuals(op, result):
    # Krylov / SEIGH
    V = (
        result.eigenvectors
        if isinstance(result.eigenvectors, torch.Tensor)
        else result.eigenvectors.tensor()
    )
    return (op.matrix @ V - V * result.eigenvalues).norm(dim=0) / result.eigenvalues.abs()


def test_power_iteration_converged_is_the_residual_not_the_stopping_rule(caplog):
    op = _clustered()
    with caplog.at_level("WARNING"):
        result = power_iteration(op, k=3, tol=1e-3, max_iter=200)
    residuals = _true_residuals(op, result)
    torch.testing.assert_close(result.residuals, residuals, rtol=1e-8, atol=1e-12)
    assert torch.equal(result.converged, residuals <= 1e-3)
    assert not result.converged.all()  # the Rayleigh quotient settled, the vectors did not
    assert "power iteration" in caplog.text and "missed the relative residual" in caplog.text


def test_lanczos_warns_when_its_budget_runs_out(caplog):
    op = _clustered()
    with caplog.at_level("WARNING"):
        result = lanczos(op, k=3, tol=1e-12, ncv=8, max_matvecs=10)
    assert not result.converged.all() and torch.equal(result.converged, result.residuals <= 1e-12)
    assert "lanczos" in caplog.text and "max_matvecs" in caplog.text


def test_small_sketch_of_a_flat_spectrum_is_flagged(caplog):
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(400, 400, generator=gen, dtype=torch.float64)
    op = DenseOperator((A + A.T) / 2)  # semicircle spectrum: no decay, a sketch of 40 is poor
    with caplog.at_level("DEBUG", logger="pipeline"):
        result = seigh(op, 30, outer=40, inner=80, error_test_vectors=0)
    assert not result.converged.all()
    assert torch.equal(result.converged, result.residuals <= 1e-3)
    (warning,) = (r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    worst = int(result.residuals.argmax())
    missed = int((~result.converged).sum())
    assert (
        f"{missed} of 30 eigenpairs missed" in warning
        and f"worst {result.residuals[worst]:.2g} at #{worst}" in warning
    )
    # one sentence, not a list of pairs
    assert "algorithm.refine_tol" in warning and len(warning) < 250 and "\n" not in warning
    detail = next(
        r.getMessage()
        for r in caplog.records
        if r.levelname == "DEBUG" and "residuals by pair" in r.getMessage()
    )
    assert f"#29 {result.residuals[29]:.3g}" in detail


def test_seigh_without_residuals_does_not_claim_convergence(caplog):
    op = _clustered()
    with caplog.at_level("INFO"):
        result = seigh(op, 3, outer=30, inner=60, residuals=False, error_test_vectors=0)
    assert not result.converged.any() and "not computed" in caplog.text
    # asked for: said once at INFO, not warned
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize(
    "solver",
    [
        lambda op, tol: lanczos(op, 2, tol=tol),
        lambda op, tol: power_iteration(op, 2, tol=tol),
        lambda op, tol: seigh(op, 2, 10, 20, tol=tol),
        lambda op, tol: seigh(op, 2, 10, 20, refine_tol=tol),
    ],
)
@pytest.mark.parametrize("tol", [-1.0, 0.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_tol_is_refused(solver, tol):
    with pytest.raises(ValueError, match="tol must be a positive relative residual"):
        solver(_clustered(50), tol)
