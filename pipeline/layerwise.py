"""``task=layerwise``: the spectrum of each block of parameters in one job.

For blocks B_1..B_m of the parameters (``layerwise.blocks``: ``modules``, each module with
parameters of its own, or a list of name globs / ``re:`` regexes, one block each), the top-k
eigenpairs of the diagonal block C[B_j, B_j] of the curvature (the job's algorithm, e.g. SEIGH or
Lanczos; a block of at most ``layerwise.dense_max_dim`` parameters, or one too small for the
algorithm's sketch, exactly from its dense matrix), its trace by Hutch++ (with its standard error)
and, with ``layerwise.density``, its SLQ spectral density. The blocks run in network order on one
operator each (a sub-job restricted to the block's parameters, ``curvature.params``; a local Ray is
started once for all of them); each finished block is saved in ``layerwise.json`` at once, so a
rerun resumes after the last one (SEIGH's store in ``blocks/<j>`` keeps a block's measurements).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pipeline.curvature import select_parameters
from pipeline.errors import InputError
from pipeline.models import build_from_config
from pipeline.problem import open_operator, settle_auto_sizes
from pipeline.solvers import SOLVERS
from pipeline.solvers.base import OperatorShape
from pipeline.store import RunStore

if TYPE_CHECKING:
    from pipeline.job import Job

log = logging.getLogger(__name__)
RECORD = "layerwise.json"
DENSE_WIDTH = 32  # columns of the identity per product of a dense block
DENSE_TOL = 1e-3  # converged flag of a dense block's pairs when the algorithm has no tol


def parameter_blocks(
    model: nn.Module, blocks: Any, selection: Any = None
) -> list[tuple[str, list[str]]]:
    """(block name, its parameter names) in the model's parameter order.

    ``blocks`` is ``"modules"`` (each module that has trainable parameters of its own, named after
    it) or a list of globs / ``re:`` regexes (one block each, named by the pattern). Only
    parameters in ``selection`` (``curvature.params``; None: all trainable) take part.
    """
    chosen = list(select_parameters(model, selection))
    if blocks == "modules":
        found: dict[str, list[str]] = {}
        for name in chosen:
            module = name.rpartition(".")[0]
            found.setdefault(module or "(top level)", []).append(name)
        return list(found.items())
    if isinstance(blocks, str) or not blocks:
        raise InputError(
            "layerwise.blocks must be 'modules' or a non-empty list of name patterns, got "
            f"{blocks!r}"
        )
    result = []
    for pattern in blocks:
        try:
            names = [n for n in select_parameters(model, pattern) if n in chosen]
        except InputError:  # named below, as a block
            names = []
        if not names:
            raise InputError(f"layerwise.blocks: {pattern!r} selects none of {chosen[:8]}")
        result.append((str(pattern), names))
    return result


def layerwise(job: Job, run_dir: Path) -> dict[str, Any]:
    """Every block's top-k eigenpairs, trace (and density) as in the module docstring.

    Args:
        job: The compiled job (``task=layerwise``); its algorithm computes the eigenpairs.
        run_dir: Where layerwise.json, layerwise.png and the blocks' stores go.

    Returns:
        dict: layerwise.json's content: ``blocks``, a list (network order) of ``name``,
        ``params``, ``dim``, ``eigenvalues``, ``residuals``, ``converged``, ``method``,
        ``trace``, ``trace_stderr``, ``matvecs`` (and ``density`` where asked).

    Raises:
        InputError: A bad ``layerwise.blocks`` or algorithm setting, before any block runs.
    """
    started = time.perf_counter()
    blocks = parameter_blocks(
        build_from_config(job.config["model"]), job.layerwise.blocks, job.curvature.params
    )
    log.info(
        "layerwise: %d blocks of %s", len(blocks), ", ".join(f"{n} ({len(p)})" for n, p in blocks)
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    digest = _digest(job)
    done = {e["name"]: e for e in _previous(run_dir, digest)}
    record: dict[str, Any] = {"config_digest": digest, "blocks": []}
    with _one_local_ray(job):
        for index, (name, params) in enumerate(blocks):
            entry = done.get(name)
            if entry is None or entry["params"] != params:
                sub_job = job.with_settings({"curvature.params": params, "task": "eigen"})
                entry = _block(sub_job, name, params, run_dir / "blocks" / str(index))
            else:
                log.info("layerwise: block %s already in %s", name, RECORD)
            record["blocks"].append(entry)
            _write_json(run_dir / RECORD, record)
    record["wall_time_s"] = time.perf_counter() - started
    _write_json(run_dir / RECORD, record)
    if job.output.plots:
        from pipeline.analysis.plots import layerwise_figure  # matplotlib only when plotting

        layerwise_figure(record["blocks"], run_dir / "layerwise.png", job.model.name)
    return record


def _block(job: Job, name: str, params: list[str], sub_dir: Path) -> dict[str, Any]:
    """One block's entry: its eigenpairs, trace and density on one operator."""
    lw = job.layerwise
    with open_operator(job) as op:
        job, _ = settle_auto_sizes(job, op)
        dim = op.shape[0]
        entry: dict[str, Any] = {"name": name, "params": params, "dim": dim}
        before = op.matvecs
        entry.update(_eigenpairs(job, op, sub_dir))
        if "trace" not in entry:  # the dense blocks' is exact
            trace_solver = SOLVERS["trace"]
            trace_config = trace_solver.config(num_matvecs=lw.trace_matvecs)
            trace = trace_solver.run(trace_config, op, seed=job.seed).record()
            entry.update(trace=trace["trace"], trace_stderr=trace["trace_stderr"])
        if lw.density:
            density = SOLVERS["density"].run(SOLVERS["density"].config(), op, seed=job.seed).density
            entry["density"] = {"grid": density.grid.tolist(), "values": density.density.tolist()}
        entry["matvecs"] = op.matvecs - before
    log.info(
        "layerwise: %s, D=%d: top eigenvalue %.6g (%s), trace %.6g +- %.2g",
        name,
        dim,
        entry["eigenvalues"][0],
        entry["method"],
        entry["trace"],
        entry["trace_stderr"],
    )
    return entry


def _eigenpairs(job: Job, op: Any, sub_dir: Path) -> dict[str, Any]:
    """Top-k eigenpairs of the block: by the job's algorithm, or dense where it is small."""
    a, solver, dim = job.algorithm, job.solver, op.shape[0]
    k = min(a.k, dim)
    problem = {**job.fingerprint, "weights": op.weights_digest()}
    shape = OperatorShape(op.shape, op.dtype)
    if dim > job.layerwise.dense_max_dim:
        with RunStore(sub_dir / job.output.store) if solver.needs_store else _no_store() as store:
            try:
                solver.preflight(a, shape, seed=job.seed, store=store, problem=problem)
            except InputError as error:  # a sketch or basis wider than the block
                log.info(
                    "layerwise: D=%d too small for algorithm=%s (%s): dense", dim, a.name, error
                )
            else:
                outcome = solver.run(a, op, seed=job.seed, store=store, problem=problem)
                pairs = _pairs(outcome.eigenvalues, outcome.residuals, outcome.converged)
                return {**pairs, "method": a.name}
    return _dense(op, k, getattr(a, "tol", None) or DENSE_TOL)


def _dense(op: Any, k: int, tol: float) -> dict[str, Any]:
    """The block's top-k eigenpairs (largest magnitude) and exact trace from its dense matrix.

    D products in blocks of ``DENSE_WIDTH``, symmetrised, float64 eigh; relative residuals
    ||C v - lambda v|| / |lambda| against that matrix.
    """
    dim = op.shape[0]
    op.expect(dim)  # auto's mode choice weighs the D products ahead
    columns = []
    for start in range(0, dim, DENSE_WIDTH):
        unit = torch.zeros(dim, min(DENSE_WIDTH, dim - start), dtype=op.dtype, device=op.device)
        unit[start : start + unit.shape[1]] = torch.eye(unit.shape[1], dtype=op.dtype)
        columns.append((op @ unit).double().cpu())
    matrix = torch.cat(columns, dim=1)
    matrix = (matrix + matrix.T) / 2
    values, vectors = torch.linalg.eigh(matrix)
    order = torch.argsort(values.abs(), descending=True)[:k]
    values, vectors = values[order], vectors[:, order]
    residuals = (matrix @ vectors - vectors * values).norm(dim=0) / values.abs().clamp_min(1e-300)
    return {
        **_pairs(values.tolist(), residuals.tolist(), (residuals <= tol).tolist()),
        "method": "dense",
        "trace": float(matrix.trace()),
        "trace_stderr": 0.0,
    }


def _pairs(values: list[float], residuals: list[float], converged: list[bool]) -> dict[str, Any]:
    return {
        "eigenvalues": [float(v) for v in values],
        "residuals": [float(r) for r in residuals],
        "converged": [bool(c) for c in converged],
    }


@contextlib.contextmanager
def _no_store():
    yield None


@contextlib.contextmanager
def _one_local_ray(job: Job):
    """With ``cluster=local``: one Ray for every block's workers, stopped after the last block."""
    if job.cluster.mode != "local":
        yield
        return
    from pipeline.distributed import sharing_local_ray

    with sharing_local_ray():
        yield


def _digest(job: Job) -> str:
    """What a block's numbers depend on: the job's config without its task and output sections."""
    config = {
        key: value for key, value in job.config.items() if key not in ("task", "output", "plan")
    }
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _previous(run_dir: Path, digest: str) -> list[dict[str, Any]]:
    """The blocks a previous run of the same configuration finished (none for another one)."""
    path = run_dir / RECORD
    if not path.exists():
        return []
    previous = json.loads(path.read_text())
    if previous.get("config_digest") != digest:
        log.warning(
            "layerwise: %s is from another configuration: every block is computed again", path
        )
        return []
    return previous["blocks"]


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically: a reader never sees half a file."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=2))
    os.replace(partial, path)
