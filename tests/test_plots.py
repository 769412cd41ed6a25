"""Figures say what run they show: titles with model, curvature, algorithm, D and samples;
legends for every line; integer rank ticks; one summary figure per run."""

import numpy as np
import pytest

from pipeline.analysis import plots

RESULTS = {"algorithm": "seigh", "curvature": "ggn", "num_params": 7030, "num_samples": 500}
CONFIG = {"model": {"name": "tanh_mlp"}, "curvature": {"kind": "ggn"}}


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save, kept open for inspection."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig) or path)
    yield kept
    for fig in kept:
        plots.plt.close(fig)


def _integer_ticks(ax) -> bool:
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    return len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_run_title_names_model_curvature_algorithm_dimension_and_samples():
    assert plots.run_title(RESULTS, CONFIG) == "tanh_mlp, ggn, seigh, D=7,030, n=500 samples"


def test_spectrum_and_convergence_have_titles_legends_and_integer_rank_ticks(figures, tmp_path):
    title = plots.run_title(RESULTS, CONFIG)
    plots.spectrum([3.0, 2.0, -1.0, 0.5], [1e-4, 1e-3, 1e-2, 1e-5], tmp_path / "s.png", title=title)
    plots.convergence(
        [1e-4, 1e-3, 1e-2, 1e-5],
        tmp_path / "c.png",
        history=[(10, 1e-1), (20, 1e-4)],
        tol=1e-3,
        title=title,
    )
    for fig in figures:
        assert fig._suptitle.get_text() == title
        for ax in fig.axes:
            assert ax.get_legend() is not None
    assert _integer_ticks(figures[0].axes[0]) and _integer_ticks(figures[1].axes[0])
    assert "tol = 0.001" in [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]


def test_summary_has_a_panel_per_computed_quantity(figures, tmp_path):
    grid = np.linspace(-1, 4, 50)
    plots.summary(
        tmp_path / "a.png", "t", [3.0, 2.0], [1e-4, 1e-3], 1e-3, (grid, np.exp(-(grid**2)))
    )
    # residuals switched off
    plots.summary(tmp_path / "b.png", "t", [3.0, 2.0], [np.nan, np.nan], 1e-3)
    plots.summary(tmp_path / "c.png", "t", density_curve=(grid, np.exp(-(grid**2))))  # density only
    assert [len(fig.axes) for fig in figures] == [3, 1, 1]
    assert [ax.get_title() for ax in figures[0].axes] == [
        "top eigenvalues",
        "residual per eigenpair",
        "spectral density",
    ]
