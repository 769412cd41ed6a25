"""What a run leaves in its output directory: results.json, eigenvalues.npy, eigenvectors.npy
(every algorithm, up to ``VECTORS_NPY_MAX_BYTES``; larger ones stay in SEIGH's store only), PNG
plots. ``pipeline.load_run`` reads them back."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.linalg.result import StoredMatrix

log = logging.getLogger(__name__)
VECTORS_NPY_MAX_BYTES = 1 << 30  # a stored (D, k) eigenvector matrix up to 1 GiB is also written as eigenvectors.npy


def write_results(run_dir: Path, results: dict[str, Any], config: dict[str, Any], want_plots: bool) -> dict[str, Any]:
    """Write results.json (algorithm, num_params, eigenvalues, residuals, matvecs, wall_time_s,
    config and extras), eigenvalues.npy and plots; return the JSON record."""
    from pipeline.analysis import plots  # matplotlib (0.4 s to import) only when a run writes its outputs

    record = {key: value for key, value in results.items() if key not in ("eigenvectors", "density", "landscape")}
    record["config"] = config
    figures = []
    if "eigenvalues" in results:
        np.save(run_dir / "eigenvalues.npy", np.asarray(results["eigenvalues"]))
    vectors = results.get("eigenvectors")
    if isinstance(vectors, torch.Tensor) or (isinstance(vectors, StoredMatrix) and _nbytes(vectors) <= VECTORS_NPY_MAX_BYTES):
        np.save(run_dir / "eigenvectors.npy", vectors.cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors))
        record["eigenvectors"] = "eigenvectors.npy"
    title = plots.run_title(results, config)
    tol = config["algorithm"].get("tol")
    if want_plots and "residuals" in results:
        figures.append(plots.spectrum(results["eigenvalues"], results["residuals"], run_dir / "spectrum.png", title=title))
        history = results.get("extra", {}).get("history")
        if np.isfinite(results["residuals"]).any():  # residuals may be switched off
            figures.append(plots.convergence(results["residuals"], run_dir / "convergence.png", history, tol, title=title))
    density = results.get("density")
    if density is not None:
        np.savez(run_dir / "density.npz", grid=density.grid, density=density.density, nodes=density.nodes, weights=density.weights)
        if want_plots:
            figures.append(plots.density(density.grid, density.density, run_dir / "density.png", title=title))
    if "landscape" in results:
        steps, losses = results["landscape"]
        np.savez(run_dir / "landscape.npz", steps=steps, losses=losses)
        record["landscape_losses"] = losses.tolist()
        if want_plots:
            figures.append(plots.landscape(steps, losses, results["eigenvalues"], run_dir / "landscape.png", title=title))
    if want_plots and ("residuals" in results or density is not None):
        figures.append(plots.summary(run_dir / "summary.png", title, results.get("eigenvalues"), results.get("residuals"), tol,
                                     None if density is None else (density.grid, density.density)))
    record["figures"] = [f.name for f in figures]
    (run_dir / "results.json").write_text(json.dumps(record, indent=2, default=_jsonable))
    log.info("wrote %s", ", ".join(["results.json"] + record["figures"]))
    return record


def _nbytes(matrix: StoredMatrix) -> int:
    return int(np.prod(matrix.shape)) * matrix.dtype.itemsize


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
