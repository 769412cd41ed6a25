"""PNG figures of a run: spectrum with residual bars, convergence, density, loss landscape."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def spectrum(eigenvalues: Sequence[float], residuals: Sequence[float], path: Path, title: str = "") -> Path:
    """Eigenvalues by rank with error bars |lambda| * relative residual (a bound on the distance to
    the nearest true eigenvalue)."""
    values = np.asarray(eigenvalues, dtype=float)
    bars = np.abs(values) * np.nan_to_num(np.asarray(residuals, dtype=float))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(np.arange(1, len(values) + 1), values, yerr=bars, fmt="o", capsize=3)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="rank (by |eigenvalue|)", ylabel="eigenvalue", title=title or "top eigenvalues with residual bounds")
    return _save(fig, path)


def convergence(residuals: Sequence[float], path: Path, history: Sequence[tuple[int, float]] | None = None, tol: float | None = None) -> Path:
    """Relative residual per eigenpair, and for Lanczos the worst residual over products spent."""
    fig, axes = plt.subplots(1, 2 if history else 1, figsize=(10 if history else 5, 3.5), squeeze=False)
    axes[0, 0].semilogy(np.arange(1, len(residuals) + 1), np.asarray(residuals, dtype=float), "o-")
    axes[0, 0].set(xlabel="rank", ylabel="||Hv - lambda v|| / |lambda|", title="residual per eigenpair")
    if history:
        spent, worst = zip(*history)
        axes[0, 1].semilogy(spent, worst, "o-")
        axes[0, 1].set(xlabel="Hessian-vector products", ylabel="worst wanted residual", title="Lanczos convergence")
    if tol:
        for ax in axes[0]:
            ax.axhline(tol, color="red", ls="--", lw=0.8)
    return _save(fig, path)


def density(grid: np.ndarray, values: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(grid, np.maximum(values, 1e-12))
    ax.set(xlabel="eigenvalue", ylabel="density (log)", title="spectral density (SLQ)")
    return _save(fig, path)


def landscape(steps: np.ndarray, losses: np.ndarray, eigenvalues: Sequence[float], path: Path) -> Path:
    """Loss along each eigenvector, with the quadratic model L0 + lambda t^2 / 2."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (row, value) in enumerate(zip(losses, eigenvalues)):
        line = ax.plot(steps, row, label=f"v{i + 1} (lambda={value:.3g})")[0]
        ax.plot(steps, row[len(steps) // 2] + 0.5 * value * steps**2, ls=":", color=line.get_color())
    ax.set(xlabel="step t along v", ylabel="loss", title="loss along top eigenvectors (dotted: quadratic model)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def overlap_curves(curves: dict[int, dict[str, list[float]]], path: Path, title: str = "") -> Path:
    """overlap_k against k for each training step, with the chance baseline k/D; and the overlap
    at the largest k against the step."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for step, curve in sorted(curves.items()):
        left.plot(curve["k"], curve["overlap"], "o-", label=f"step {step}")
    first = next(iter(curves.values()))
    left.plot(first["k"], first["chance"], "k--", label="chance k/D")
    left.set(xlabel="k", ylabel="overlap_k", yscale="log", title=title or "eigenspace / magnitude-mask overlap")
    left.legend(fontsize=7)
    steps = sorted(curves)
    right.plot(steps, [curves[s]["overlap"][-1] for s in steps], "o-", label=f"k={first['k'][-1]}")
    right.plot(steps, [first["chance"][-1]] * len(steps), "k--", label="chance")
    right.set(xlabel="training step", ylabel="overlap_k", yscale="log", title="over training")
    right.legend(fontsize=7)
    return _save(fig, path)
