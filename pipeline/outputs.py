"""What a run leaves in its output directory.

Results.json (schema version ``SCHEMA_VERSION``), the outcome's arrays (eigenvalues.npy;
eigenvectors.npy for every eigensolver up to ``VECTORS_NPY_MAX_BYTES``, larger ones stay in SEIGH's
store only; density.npz), PNG plots. ``pipeline.load_run`` reads them back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.solvers.outcomes import Outcome
from pipeline.store.protocol import StoredMatrix

log = logging.getLogger(__name__)
# results.json: the outcome's record (pipeline.solvers.outcomes), the run's figures (algorithm,
# num_params,
# curvature, num_samples, actual, plan, wall_time_s), config, figures, eigenvectors and
# landscape_losses where written
SCHEMA_VERSION = 1


def write_results(
    run_dir: Path,
    outcome: Outcome,
    about: dict[str, Any],
    config: dict[str, Any],
    want_plots: bool,
    landscape: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write results.json, the outcome's arrays, the landscape and plots.

    Write results.json (the outcome's record, ``about`` the run, the config), the outcome's arrays,
    the loss ``landscape`` (steps (P,), losses (V, P)) and plots; return the JSON record.
    """
    # matplotlib (0.4 s to import) only when a run writes its outputs
    from pipeline.analysis import plots

    record = {"schema_version": SCHEMA_VERSION, **outcome.record(), **about, "config": config}
    for name, value in outcome.artifacts().items():
        if name.endswith(".npz"):
            np.savez(run_dir / name, **value)
        else:
            if isinstance(value, StoredMatrix):
                value.save_npy(run_dir / name)
            else:
                np.save(run_dir / name, value)
            if name == "eigenvectors.npy":
                record["eigenvectors"] = name
    title = plots.run_title(record, config)
    tol = config["algorithm"].get("tol")
    figures = []
    spectrum, curve = outcome.spectrum, outcome.curve
    if want_plots and spectrum is not None:
        values, residuals, history = spectrum
        figures.append(plots.spectrum(values, residuals, run_dir / "spectrum.png", title=title))
        if np.isfinite(residuals).any():  # residuals may be switched off
            figures.append(
                plots.convergence(residuals, run_dir / "convergence.png", history, tol, title=title)
            )
    if want_plots and curve is not None:
        figures.append(
            plots.density(curve.grid, curve.density, run_dir / "density.png", title=title)
        )
    if landscape is not None:
        steps, losses = landscape
        np.savez(run_dir / "landscape.npz", steps=steps, losses=losses)
        record["landscape_losses"] = losses.tolist()
        if want_plots:
            figures.append(
                plots.landscape(steps, losses, spectrum[0], run_dir / "landscape.png", title=title)
            )
    if want_plots and (spectrum is not None or curve is not None):
        figures.append(
            plots.summary(
                run_dir / "summary.png",
                title,
                spectrum and spectrum[0],
                spectrum and spectrum[1],
                tol,
                None if curve is None else (curve.grid, curve.density),
            )
        )
    record["figures"] = [f.name for f in figures]
    (run_dir / "results.json").write_text(json.dumps(record, indent=2, default=_jsonable))
    log.info("wrote %s", ", ".join(["results.json"] + record["figures"]))
    return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
