"""Trace estimators, SLQ density and the sketch against exact values."""

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid  # np.trapezoid needs numpy >= 2.0

from pipeline.linalg import DenseOperator, hutchinson_trace, hutchpp_trace, sketch_eigs, slq_density

from helpers import synthetic


@pytest.fixture(scope="module")
def op():
    return synthetic(300, seed=3)


def exact_trace(op):
    return float(torch.trace(op.matrix))


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_within_four_standard_errors(op, distribution):
    est = hutchinson_trace(op, 200, seed=1, block_size=16, distribution=distribution)
    assert est.matvecs == 200
    assert abs(est.estimate - exact_trace(op)) < 4 * est.stderr
    assert est.stderr > 0


def test_hutchinson_unbiased_over_seeds(op):
    """The mean over independent seeds converges to the trace (unbiasedness, not luck)."""
    estimates = np.array(
        [hutchinson_trace(op, 10, seed=s, block_size=10).estimate for s in range(60)]
    )
    stderr = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean() - exact_trace(op)) < 4 * stderr


def test_hutchpp_within_four_standard_errors_and_beats_hutchinson(op):
    est = hutchpp_trace(op, 90, seed=2)
    assert est.matvecs == 90
    assert abs(est.estimate - exact_trace(op)) < 4 * est.stderr
    plain = hutchinson_trace(op, 90, seed=2)
    assert est.stderr < plain.stderr  # the top eigenvalues are removed exactly


def test_block_size_does_not_change_hutchinson(op):
    a = hutchinson_trace(op, 12, seed=5, block_size=1)
    b = hutchinson_trace(op, 12, seed=5, block_size=5)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-12)


def test_slq_density_integrates_to_one_and_has_the_right_mean(op):
    density = slq_density(op, num_probes=20, num_steps=40, seed=0)
    integral = trapezoid(density.density, density.grid)
    assert abs(integral - 1) < 1e-3
    mean = trapezoid(density.grid * density.density, density.grid)
    dim = op.shape[0]
    # the mean is a Hutchinson estimate of tr(H)/D from 20 probes: compare within 4 of its stderr
    per_probe = (density.nodes * density.weights).sum(axis=1)
    assert abs(mean - exact_trace(op) / dim) < 4 * per_probe.std(ddof=1) / np.sqrt(20) + 1e-12
    assert density.matvecs == 20 * 40


def test_slq_quadrature_is_exact_for_low_degree_moments(op):
    """m-step Gauss quadrature integrates polynomials of degree < 2m exactly: v^T H^2 v / v^T v."""
    density = slq_density(op, num_probes=3, num_steps=10, seed=7, probes_per_pass=2)
    from pipeline.linalg import random_columns

    Z = random_columns("rademacher", 7, op.shape[0], range(3))
    exact = ((op.matrix @ Z) ** 2).sum(dim=0) / (Z**2).sum(dim=0)
    quadrature = (density.weights * density.nodes**2).sum(axis=1)
    np.testing.assert_allclose(quadrature, exact.numpy(), rtol=1e-10)


def test_sketch_preserves_trace_in_expectation(op):
    traces = np.array([sketch_eigs(op, 20, seed=s).trace for s in range(40)])
    stderr = traces.std(ddof=1) / np.sqrt(len(traces))
    assert abs(traces.mean() - exact_trace(op)) < 4 * stderr


def test_sketch_eigenvalues_sum_to_its_trace_and_are_sorted(op):
    result = sketch_eigs(op, 25, seed=1, block_size=7)
    assert result.matvecs == 25
    assert abs(float(result.eigenvalues.sum()) - result.trace) < 1e-9 * abs(result.trace) + 1e-9
    assert (result.eigenvalues.abs().diff() <= 1e-12).all()


def test_sketch_of_identity_has_unit_trace_exactly():
    op = DenseOperator(torch.eye(64, dtype=torch.float64))
    assert abs(sketch_eigs(op, 16).trace - 64.0) < 1e-10  # Rademacher columns: ||s||^2 = D/d each


@pytest.mark.parametrize(
    "call",
    [
        lambda op: hutchinson_trace(op, 0),
        lambda op: hutchpp_trace(op, 3),
        lambda op: slq_density(op, num_probes=0),
        lambda op: sketch_eigs(op, 0),
        lambda op: sketch_eigs(op, 300),
    ],
)
def test_bad_arguments(op, call):
    with pytest.raises(ValueError):
        call(op)
