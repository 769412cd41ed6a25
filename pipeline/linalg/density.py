"""Spectral density by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017; Ghorbani et al. 2019)."""

from __future__ import annotations

import math

import numpy as np
import torch

from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.result import SpectralDensity
from pipeline.linalg.validation import check_positive


def lanczos_tridiagonal(op: Operator, starts: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run P independent Lanczos recurrences (one block product per step, full reorthogonalisation
    in float64) from the columns of ``starts`` (D, P). Returns alphas (P, m) and betas (P, m-1);
    m = steps, or fewer where a recurrence found an invariant subspace (trailing betas are 0)."""
    dim, probes = starts.shape
    steps = min(steps, dim)
    basis = torch.zeros(steps, dim, probes, dtype=torch.float64, device=op.device)
    alphas = torch.zeros(probes, steps, dtype=torch.float64)
    betas = torch.zeros(probes, max(steps - 1, 0), dtype=torch.float64)
    v = starts.to(torch.float64) / starts.norm(dim=0)
    alive = torch.ones(probes, dtype=torch.bool, device=op.device)
    for j in range(steps):
        basis[j] = v
        w = (op @ v.to(op.dtype)).to(torch.float64)
        alphas[:, j] = (v * w).sum(dim=0).cpu()
        for _ in range(2):  # w -= V_j (V_j^T w) per probe
            w -= torch.einsum("jdp,jp->dp", basis[: j + 1], torch.einsum("jdp,dp->jp", basis[: j + 1], w))
        if j == steps - 1:
            break
        norms = w.norm(dim=0)
        alive &= norms > 1e-10 * float(alphas[:, : j + 1].abs().max())
        betas[:, j] = torch.where(alive, norms, 0).cpu()
        v = torch.where(alive, w / norms.clamp(min=1e-300), 0)
    return alphas, betas


def gauss_quadrature(alphas: torch.Tensor, betas: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (P, m) = eigenvalues of each tridiagonal T and weights (P, m) = squared first
    components of its eigenvectors (the quadrature rule of the probe's spectral measure)."""
    T = torch.diag_embed(alphas) + torch.diag_embed(betas, 1) + torch.diag_embed(betas, -1)
    nodes, vectors = torch.linalg.eigh(T)
    return nodes.numpy(), (vectors[:, 0, :] ** 2).numpy()


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
    """phi(x) ~ (1/P) sum_p sum_i w_pi N(x; theta_pi, sigma^2), the Gaussian-smoothed spectral
    density from P Rademacher probes and ``num_steps`` Lanczos steps each.

    The probes run side by side, ``probes_per_pass`` (default all) per block product; memory is
    num_steps x D x probes_per_pass doubles. ``sigma`` defaults to 1% of the spectral range; the
    default grid spans the range plus 5 sigma on each side, so the density integrates to ~1.
    """
    check_positive(num_probes, "num_probes")
    check_positive(num_steps, "num_steps")
    check_positive(num_grid, "num_grid")
    per_pass = probes_per_pass or num_probes
    check_positive(per_pass, "probes_per_pass")
    before = op.matvecs
    rules = []
    for first in range(0, num_probes, per_pass):
        starts = random_columns("rademacher", seed, op.shape[0], range(first, min(first + per_pass, num_probes)), device=op.device)
        rules.append(gauss_quadrature(*lanczos_tridiagonal(op, starts, num_steps)))
    nodes = np.concatenate([r[0] for r in rules])
    weights = np.concatenate([r[1] for r in rules])
    low, high = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = max(0.01 * (high - low), 1e-12 * max(abs(low), abs(high), 1.0))
    if grid is None:
        grid = np.linspace(low - 5 * sigma, high + 5 * sigma, num_grid)
    kernel = np.exp(-((grid[:, None, None] - nodes[None]) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    density = (kernel * weights[None]).sum(axis=2).mean(axis=1)
    return SpectralDensity(np.asarray(grid), density, nodes, weights, float(sigma), op.matvecs - before)
