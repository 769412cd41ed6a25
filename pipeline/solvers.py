"""Run the configured algorithm on an operator and collect what goes into results.json."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import DictConfig
from scipy.integrate import trapezoid  # np.trapezoid needs numpy >= 2.0

from pipeline.errors import InputError
from pipeline.linalg import adaptive_seigh, hutchinson_trace, hutchpp_trace, lanczos, power_iteration, seigh, sketch_eigs, slq_density
from pipeline.linalg.operator import Operator

log = logging.getLogger(__name__)
ALGORITHMS = ("lanczos", "power", "trace", "density", "sketch", "seigh")


def run_algorithm(cfg: DictConfig, op: Operator, store=None, problem: dict | None = None) -> dict[str, Any]:
    """A dict with eigenvalues/residuals (eigen-solvers), estimates (trace, sketch) or a density,
    plus ``eigenvectors`` (not serialised) and ``extra`` algorithm details."""
    a = cfg.algorithm
    if a.name == "lanczos":
        result = lanczos(op, a.k, tol=a.tol, which=a.which, ncv=a.ncv, block_size=a.block_size, max_matvecs=a.max_matvecs, seed=cfg.seed)
        return _eigen(result, {"history": result.info["history"], "restarts": result.info["restarts"]})
    if a.name == "power":
        return _eigen(power_iteration(op, a.k, tol=a.tol, max_iter=a.max_iter, seed=cfg.seed), {})
    if a.name == "seigh":
        options = dict(seed=cfg.seed, store=store, block_size=a.block_size, outer_kind=a.outer_kind, inner_kind=a.inner_kind,
                       recycled=a.recycled, error_test_vectors=a.error_test_vectors, memory_bytes=int(a.memory_gb * 2**30), problem=problem)
        if a.target_tol is not None:  # grow the sketch from outer until the top-k residuals meet target_tol
            result = adaptive_seigh(op, a.k, a.target_tol, max_products=a.max_products, start_outer=a.outer, growth=a.growth, **options)
        else:
            result = seigh(op, a.k, a.outer, a.inner, residuals=a.residuals, refine_tol=a.refine_tol, tol=a.tol, **options)
        keys = ("frobenius_error", "measured_now", "refine_matvecs", "adaptive", "adaptive_products")
        return _eigen(result, {key: result.info[key] for key in keys if key in result.info})
    if a.name == "trace":
        if a.method not in ("hutchinson", "hutchpp"):
            raise InputError(f"algorithm.method must be hutchinson or hutchpp, got {a.method!r}")
        estimate = (hutchpp_trace(op, a.num_matvecs, seed=cfg.seed, block_size=a.block_size) if a.method == "hutchpp"
                    else hutchinson_trace(op, a.num_matvecs, seed=cfg.seed, block_size=a.block_size))
        log.info("trace estimate %.6g +- %.2g (%s, %d products)", estimate.estimate, estimate.stderr, a.method, estimate.matvecs)
        return {"trace": estimate.estimate, "trace_stderr": estimate.stderr, "hvps": estimate.matvecs}
    if a.name == "density":
        density = slq_density(op, a.num_probes, a.num_steps, seed=cfg.seed)
        return {"density": density, "hvps": density.matvecs, "trace": float(trapezoid(density.grid * density.density, density.grid)) * op.shape[0]}
    sketch = sketch_eigs(op, a.sketch_size, seed=cfg.seed, block_size=a.block_size)
    return {"eigenvalues": sketch.eigenvalues.tolist(), "trace": sketch.trace, "hvps": sketch.matvecs}


def _eigen(result, extra: dict[str, Any]) -> dict[str, Any]:
    log.info("top eigenvalues %s", np.array2string(result.eigenvalues.numpy(), precision=5))
    log.info("relative residuals %s", np.array2string(result.residuals.numpy(), precision=2))
    return {
        "eigenvalues": result.eigenvalues.tolist(),
        "residuals": result.residuals.tolist(),
        "converged": result.converged.tolist(),
        "all_converged": bool(result.converged.all()),
        "hvps": result.matvecs,
        "eigenvectors": result.eigenvectors,
        "extra": extra,
    }
