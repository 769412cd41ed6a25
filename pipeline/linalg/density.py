"""Spectral density by stochastic Lanczos quadrature.

Spectral density by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017; Ghorbani et al. 2019).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pipeline.linalg.krylov import KrylovBasis
from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.result import SpectralDensity
from pipeline.linalg.validation import check_positive


def lanczos_quadrature(
    op: Operator, starts: torch.Tensor, steps: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature rules of the spectral measures of the P columns of ``starts`` (D, P).

    ``steps`` Lanczos steps from each (one ``KrylovBasis`` per probe, their products made as one (D,
    P) block per step); nodes (P, m) = eigenvalues of each projected matrix T, weights (P, m) =
    squared first components of its eigenvectors; m = min(steps, D).
    """
    dim, probes = starts.shape
    steps = min(steps, dim)
    bases = [
        KrylovBasis(op, starts[:, [p]], capacity=min(dim, steps + 1), seed=seed + p)
        for p in range(probes)
    ]
    while blocks := [
        (basis, columns) for basis in bases if (columns := basis.next_block(steps)) is not None
    ]:
        products = op @ torch.cat([basis.rows[columns].T for basis, columns in blocks], dim=1).to(
            op.dtype
        )
        for index, (basis, columns) in enumerate(blocks):
            basis.accept(columns, products[:, index : index + 1])
    nodes, weights = zip(*((theta, S[0] ** 2) for theta, S, _ in (basis.ritz() for basis in bases)))
    return torch.stack(nodes).numpy(), torch.stack(weights).numpy()


def slq_density(
    op: Operator,
    num_probes: int = 8,
    num_steps: int = 64,
    num_grid: int = 1024,
    sigma: float | None = None,
    grid: np.ndarray | None = None,
    probes_per_pass: int | None = None,
    seed: int = 0,
) -> SpectralDensity:
    """The Gaussian-smoothed spectral density phi(x) by stochastic Lanczos quadrature.

    phi(x) ~ (1/P) sum_p sum_i w_pi N(x; theta_pi, sigma^2) from P Rademacher probes and
    ``num_steps`` Lanczos steps each; the probes run side by side, so memory is
    num_steps x D x probes_per_pass doubles.

    Args:
        op: The symmetric operator H (D, D).
        num_probes: P, the probes.
        num_steps: Lanczos steps (products) per probe.
        num_grid: Points of the default grid.
        sigma: Gaussian width (default: 1% of the spectral range).
        grid: Points to evaluate phi at (default: the range plus 5 sigma on each side, so the
            density integrates to about 1).
        probes_per_pass: Probes per block product (default: all).
        seed: Seed of the probes.

    Returns:
        SpectralDensity: grid, density, the quadrature nodes and weights (P, num_steps) and matvecs.

    Raises:
        InputError: A count not a positive integer.
    """
    check_positive(num_probes, "num_probes")
    check_positive(num_steps, "num_steps")
    check_positive(num_grid, "num_grid")
    per_pass = probes_per_pass or num_probes
    check_positive(per_pass, "probes_per_pass")
    op.expect(num_probes * num_steps)
    before = op.matvecs
    rules = []
    for first in range(0, num_probes, per_pass):
        starts = random_columns(
            "rademacher",
            seed,
            op.shape[0],
            range(first, min(first + per_pass, num_probes)),
            device=op.device,
        )
        rules.append(lanczos_quadrature(op, starts, num_steps, seed=seed))
    nodes = np.concatenate([r[0] for r in rules])
    weights = np.concatenate([r[1] for r in rules])
    low, high = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = max(0.01 * (high - low), 1e-12 * max(abs(low), abs(high), 1.0))
    if grid is None:
        grid = np.linspace(low - 5 * sigma, high + 5 * sigma, num_grid)
    kernel = np.exp(-((grid[:, None, None] - nodes[None]) ** 2) / (2 * sigma**2)) / (
        sigma * math.sqrt(2 * math.pi)
    )
    density = (kernel * weights[None]).sum(axis=2).mean(axis=1)
    return SpectralDensity(
        np.asarray(grid), density, nodes, weights, float(sigma), op.matvecs - before
    )
