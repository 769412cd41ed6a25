"""PNG figures of a run: spectrum with residual bars, convergence, density, loss landscape."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_title(results: dict, config: dict) -> str:
    """'tanh_mlp, hessian, seigh, D=7,030, n=500 samples' for a run's figures."""
    samples = results.get("num_samples")
    return (
        f"{config['model']['name']}, {results.get('curvature', config['curvature']['kind'])}, "
        f"{results['algorithm']}, "
        f"D={results['num_params']:,}" + (f", n={samples:,} samples" if samples else "")
    )


def _spectrum_panel(ax, eigenvalues: Sequence[float], residuals: Sequence[float]) -> None:
    values = np.asarray(eigenvalues, dtype=float)
    bars = np.abs(values) * np.nan_to_num(np.asarray(residuals, dtype=float))
    ax.errorbar(
        np.arange(1, len(values) + 1),
        values,
        yerr=bars,
        fmt="o",
        capsize=3,
        label="eigenvalue +- |lambda| x residual",
    )
    ax.axhline(0, color="grey", lw=0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="rank (by |eigenvalue|)", ylabel="eigenvalue", title="top eigenvalues")
    ax.legend(fontsize=7)


def _residual_panel(ax, residuals: Sequence[float], tol: float | None) -> None:
    ax.semilogy(
        np.arange(1, len(residuals) + 1),
        np.asarray(residuals, dtype=float),
        "o-",
        label="relative residual",
    )
    if tol:
        ax.axhline(tol, color="red", ls="--", lw=0.8, label=f"tol = {tol:g}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="rank", ylabel="||Hv - lambda v|| / |lambda|", title="residual per eigenpair")
    ax.legend(fontsize=7)


def _density_panel(ax, grid: np.ndarray, values: np.ndarray) -> None:
    ax.semilogy(grid, np.maximum(values, 1e-12), label="SLQ density")
    ax.set(xlabel="eigenvalue", ylabel="density (log)", title="spectral density")
    ax.legend(fontsize=7)


def spectrum(
    eigenvalues: Sequence[float], residuals: Sequence[float], path: Path, title: str = ""
) -> Path:
    """Eigenvalues by rank with error bars |lambda| * relative residual.

    Eigenvalues by rank with error bars |lambda| * relative residual (a bound on the distance to the
    nearest true eigenvalue).
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    _spectrum_panel(ax, eigenvalues, residuals)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def convergence(
    residuals: Sequence[float],
    path: Path,
    history: Sequence[tuple[int, float]] | None = None,
    tol: float | None = None,
    title: str = "",
) -> Path:
    """Relative residual per eigenpair, and for Lanczos the worst residual over products spent."""
    fig, axes = plt.subplots(
        1, 2 if history else 1, figsize=(10 if history else 5, 3.5), squeeze=False
    )
    _residual_panel(axes[0, 0], residuals, tol)
    if history:
        spent, worst = zip(*history)
        axes[0, 1].semilogy(spent, worst, "o-", label="worst wanted residual")
        if tol:
            axes[0, 1].axhline(tol, color="red", ls="--", lw=0.8, label=f"tol = {tol:g}")
        axes[0, 1].set(
            xlabel="Hessian-vector products",
            ylabel="worst wanted residual",
            title="Lanczos convergence",
        )
        axes[0, 1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def density(grid: np.ndarray, values: np.ndarray, path: Path, title: str = "") -> Path:
    """Plot the spectral density ``values`` over ``grid`` to ``path``."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    _density_panel(ax, grid, values)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def summary(
    path: Path,
    title: str,
    eigenvalues: Sequence[float] | None = None,
    residuals: Sequence[float] | None = None,
    tol: float | None = None,
    density_curve: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """One figure per run.

    The spectrum, the residuals (when computed) and the density (when computed).
    """
    panels = []
    if eigenvalues is not None and residuals is not None:
        panels.append(lambda ax: _spectrum_panel(ax, eigenvalues, residuals))
        if np.isfinite(np.asarray(residuals, dtype=float)).any():
            panels.append(lambda ax: _residual_panel(ax, residuals, tol))
    if density_curve is not None:
        panels.append(lambda ax: _density_panel(ax, *density_curve))
    fig, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.8), squeeze=False
    )
    for draw, ax in zip(panels, axes[0]):
        draw(ax)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def landscape(
    steps: np.ndarray, losses: np.ndarray, eigenvalues: Sequence[float], path: Path, title: str = ""
) -> Path:
    """Loss along each eigenvector, with the quadratic model L0 + lambda t^2 / 2."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (row, value) in enumerate(zip(losses, eigenvalues)):
        line = ax.plot(steps, row, label=f"v{i + 1} (lambda={value:.3g})")[0]
        ax.plot(
            steps, row[len(steps) // 2] + 0.5 * value * steps**2, ls=":", color=line.get_color()
        )
    ax.set(
        xlabel="step t along v",
        ylabel="loss",
        title="loss along top eigenvectors (dotted: quadratic model)",
    )
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def overlap_figure(
    tables: dict[int, dict[str, np.ndarray]],
    eigenvalues: dict[int, Sequence[float]],
    path: Path,
    title: str,
    band_ks: Sequence[int],
) -> Path:
    """Three panels per data split.

    Magnitude-mask overlap / chance against k for each training step (log x); overlap against step
    for a few k with the random-mask 5-95% band and the best-mask bound; |eigenvalue| against rank
    per step (the spectrum).
    """
    steps = sorted(tables)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(steps)))
    fig, (ratio_ax, step_ax, spectrum_ax) = plt.subplots(1, 3, figsize=(16, 5))
    for step, colour in zip(steps, colours):
        table = tables[step]
        ratio_ax.semilogx(
            table["k"], table["magnitude"] / table["chance"], color=colour, label=f"step {step}"
        )
        values = np.abs(np.asarray(eigenvalues[step], dtype=float))
        spectrum_ax.loglog(
            np.arange(1, len(values) + 1), values, color=colour, label=f"step {step}"
        )
    ratio_ax.axhline(1, color="k", ls="--", lw=0.8, label="chance (k/D)")
    ratio_ax.set(xlabel="k", ylabel="overlap_k / chance", title="magnitude mask vs chance")
    # k = 1 is mostly noise
    shown = sorted({band_ks[min(1, len(band_ks) - 1)], band_ks[len(band_ks) // 2], band_ks[-1]})
    for k, colour in zip(shown, plt.cm.tab10.colors):
        ratio = lambda key, k=k: np.array(
            [tables[s][key][k - 1] / tables[s]["chance"][k - 1] for s in steps]
        )
        step_ax.plot(steps, ratio("magnitude"), "o-", color=colour, label=f"k={k} magnitude mask")
        step_ax.fill_between(
            steps,
            ratio("random_p05"),
            ratio("random_p95"),
            color=colour,
            alpha=0.2,
            label=f"k={k} random 5-95%",
        )
        step_ax.plot(steps, ratio("best"), ls="--", color=colour, lw=0.8, label=f"k={k} best mask")
    step_ax.axhline(1, color="k", ls=":", lw=0.8, label="chance")
    step_ax.set(
        xlabel="training step",
        ylabel="overlap_k / chance",
        yscale="log",
        title="over training, against random and best masks",
    )
    spectrum_ax.set(xlabel="rank", ylabel="|eigenvalue|", title="spectrum (SEIGH)")
    for ax in (ratio_ax, spectrum_ax):
        ax.legend(fontsize=6)
    step_ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def layerwise_figure(blocks: Sequence[dict], path: Path, title: str = "") -> Path:
    """Per parameter block, in network order: its top eigenvalue and its trace (+- stderr).

    And, where computed, each block's spectral density (one curve per block, log scale).
    """
    names = [f"{b['name']} ({b['dim']:,})" for b in blocks]
    x = np.arange(len(blocks))
    densities = [b for b in blocks if "density" in b]
    fig, axes = plt.subplots(
        1, 3 if densities else 2, figsize=(max(8, 0.45 * len(blocks) + 6), 4.2), squeeze=False
    )
    top = [b["eigenvalues"][0] for b in blocks]
    axes[0][0].bar(x, top, color=["C0" if v >= 0 else "C3" for v in top])
    axes[0][0].set(ylabel="top eigenvalue (by |.|)", title="top eigenvalue per block")
    traces = [b["trace"] for b in blocks]
    axes[0][1].bar(x, traces, yerr=[b["trace_stderr"] for b in blocks], capsize=2, color="C2")
    axes[0][1].set(ylabel="trace (Hutch++ +- stderr; dense: exact)", title="trace per block")
    for ax in axes[0][:2]:
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    for block in densities:
        grid, values = (np.asarray(block["density"][key]) for key in ("grid", "values"))
        axes[0][2].semilogy(grid, np.maximum(values, 1e-12), lw=0.8, label=block["name"])
    if densities:
        axes[0][2].set(xlabel="eigenvalue", ylabel="density (log)", title="density per block")
        axes[0][2].legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
