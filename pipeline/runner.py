"""One job run as a library call.

The operator opened, the cost planned, the solver run on the run dir's store, the outputs written.
The command line (``pipeline.app``) and ``task=reproduce`` (``pipeline.reproduce``) both call it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from pipeline.analysis.landscape import loss_along
from pipeline.basics import peak_rss_bytes
from pipeline.curvature.memory_fit import MemoryFit
from pipeline.disk import check_store_fits, disk_failure, size_on_disk
from pipeline.errors import InputError
from pipeline.job import Job, compile_job
from pipeline.outputs import write_results
from pipeline.plan import calibrating, compare_with_actual, log_plan, make_plan
from pipeline.problem import ProblemOperator, open_operator, settle_auto_sizes
from pipeline.solvers.base import OperatorShape
from pipeline.solvers.outcomes import EigenOutcome, Outcome
from pipeline.store import RunStore
from pipeline.tracking import artifact as tracker_artifact
from pipeline.tracking import scalar as tracker_scalar

log = logging.getLogger("pipeline")


def run(job: Job | DictConfig, run_dir: Path) -> dict:
    """Run one job in ``run_dir`` and return its results record (results.json's content).

    Args:
        job: A ``Job``, or a composed config (compiled, and checked, first).
        run_dir: Where results.json, the store and the plots go (created by the caller).

    Returns:
        dict: the results record.

    Raises:
        InputError: A bad setting (named), before any worker starts.
        OperationError: A failure the user can act on (a lost cluster, a full disk, ...).
    """
    return run_job(job if isinstance(job, Job) else compile_job(job), run_dir)[0]


def run_job(job: Job, run_dir: Path, started: float | None = None) -> tuple[dict, Outcome]:
    """Run one job in ``run_dir``: the results record and the solver's outcome.

    Build the operator, predict the cost (logged), run the algorithm, write the outputs with the
    prediction next to the actual figures. A solver that keeps its measurements gets the run dir's
    store, locked before Ray starts and closed (unlocked) when the solver is done.

    Args:
        job: The compiled job (``pipeline.job.compile_job``).
        run_dir: Where results.json, the store and the plots go (created by the caller).
        started: When the job began (``time.perf_counter()``; default: now): its plan's start-up
            and its wall time count from there (the command line passes its own start).

    Returns:
        tuple[dict, Outcome]: the results record and the solver's outcome (its eigenvectors a
        ``StoredMatrix`` in the store where the solver keeps one).

    Raises:
        InputError: A setting that needs D or the store (named), before any worker starts.
        OperationError: A failure the user can act on (a lost cluster, a full disk, ...).
    """
    start = time.perf_counter() if started is None else started
    store_path = run_dir / job.output.store
    with RunStore(store_path) if job.solver.needs_store else contextlib.nullcontext() as store:
        outcome, about = _solve(job, run_dir, store, store_path, start)
    output, landscape = job.output, None
    if output.landscape and isinstance(outcome, EigenOutcome):
        count = min(output.landscape_vectors, len(outcome.eigenvalues))
        landscape = loss_along(
            job.problem.build(1, 0),
            outcome.eigenvectors[:, :count],
            output.landscape_radius,
            output.landscape_points,
        )
    about["wall_time_s"] = time.perf_counter() - start
    record = write_results(run_dir, outcome, about, job.config, output.plots, landscape)
    _track(record, run_dir)
    log.info(
        "%s on %d parameters: %d products in %.1f s",
        about["algorithm"],
        about["num_params"],
        outcome.matvecs,
        about["wall_time_s"],
    )
    return record, outcome


def _solve(
    job: Job, run_dir: Path, store: RunStore | None, store_path: Path, started: float
) -> tuple[Outcome, dict]:
    """Check, open the operator, plan and run the solver.

    Check what needs D (and the store) before Ray starts, open the operator, plan, run the solver:
    its outcome and the run's figures (algorithm, D, samples, plan and actual).
    """
    solver, a = job.solver, job.algorithm
    # on the driver, before Ray: the model takes the data; D and the weights
    preview = job.problem.preview()
    problem = {**job.fingerprint, "weights": preview.weights}
    solver.preflight(
        a,
        OperatorShape((preview.dim, preview.dim), preview.dtype),
        seed=job.seed,
        store=store,
        problem=problem,
    )
    store_bytes = solver.cost(a, preview.dim, preview.dtype.itemsize)["store_bytes"] if store else 0
    if store is not None:
        check_store_fits(store_bytes, store_path, job.plan.allow_overcommit)
    with open_operator(job) as op:
        if op.weights_digest() != preview.weights:
            raise InputError(
                "the workers built other weights than the driver: model.checkpoint (and the code) "
                "must be the same "
                "on every node"
            )
        job, fits = settle_auto_sizes(job, op)
        a = job.algorithm
        prediction = plan(job, op, run_dir, started, fits)
        before = op.matvecs
        try:
            with calibrating(prediction, op, started):
                outcome = solver.run(a, op, seed=job.seed, store=store, problem=problem)
        except OSError as error:
            failure = disk_failure(error, store_path if store else None, store_bytes)
            if failure is None:
                raise
            raise failure from None
        actual = {
            "wall_s": time.perf_counter() - started,
            "matvecs": op.matvecs - before,
            "store_bytes": size_on_disk(store_path) if store else 0,
            "driver_bytes": peak_rss_bytes(),
        }
        compare_with_actual(prediction, actual)
        return outcome, {
            "algorithm": solver.name,
            "num_params": op.shape[0],
            "curvature": job.curvature.kind,
            "num_samples": op.num_samples,
            "actual": actual,
            "plan": prediction,
        }


def _track(record: dict, run_dir: Path) -> None:
    """The final figures and files of a run, to the open tracker (``output.tracker``)."""
    for name in ("eigenvalues", "residuals"):
        for index, value in enumerate(record.get(name, [])):
            tracker_scalar(f"result/{name[:-1]}", value, step=index)
    for name in ("trace", "matvecs", "wall_time_s"):
        if isinstance(record.get(name), (int, float)):
            tracker_scalar(f"result/{name}", record[name], step=0)
    for name in ("results.json", *record["figures"]):
        tracker_artifact(run_dir / name)


def plan(
    job: Job,
    op: ProblemOperator,
    run_dir: Path,
    started: float | None = None,
    fits: dict[str, dict] | None = None,
) -> dict:
    """The cost prediction for this run (``pipeline.plan``), logged.

    ``fits``: how the auto sizes were settled (``settle_auto_sizes``: ``batch_size``,
    ``product_width``), kept beside it; the last one fitted predicts the workers' peak (the peak
    read after the plan's product is its memory probes', not the run's).
    """
    prediction = make_plan(job, op, run_dir, op.worker_peak_rss, started)
    fits = fits or {}
    prediction.update(fits)
    fitted = fits.get("product_width") or fits.get("batch_size")
    if fitted is not None:
        prediction["worker_bytes"] = MemoryFit(**fitted).peak_bytes(fitted["size"])
    log_plan(prediction)
    return prediction


def plan_only(job: Job | DictConfig, run_dir: Path, started: float | None = None) -> dict:
    """task=plan: time a few products on the workers, write plan.json, run nothing else."""
    started = time.perf_counter() if started is None else started
    job = job if isinstance(job, Job) else compile_job(job)
    with open_operator(job) as op:
        job, fits = settle_auto_sizes(job, op)
        prediction = plan(job, op, run_dir, started, fits)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "plan.json").write_text(json.dumps(prediction, indent=2))
    return prediction
