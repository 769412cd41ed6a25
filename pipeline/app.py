"""The Hydra entry point: ``hessian-pipeline [overrides]`` or ``python -m pipeline [overrides]``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from pipeline.analysis.landscape import loss_along
from pipeline.basics import peak_rss_bytes
from pipeline.config import register
from pipeline.disk import check_store_fits, disk_failure, size_on_disk
from pipeline.errors import InputError, PipelineError
from pipeline.job import Job, compile_job
from pipeline.outputs import write_results
from pipeline.plan import compare_with_actual, log_plan, make_plan
from pipeline.problem import ProblemOperator, open_operator
from pipeline.progress import set_log_interval
from pipeline.reproduce import reproduce
from pipeline.solvers.base import OperatorShape
from pipeline.solvers.outcomes import EigenOutcome, Outcome
from pipeline.store import RunStore
from pipeline.tracking import artifact as tracker_artifact
from pipeline.tracking import scalar as tracker_scalar
from pipeline.tracking import tracking

log = logging.getLogger("pipeline")
register()
# The configs ship inside the package (pipeline/conf; conf/ at the repository root links to it),
# so wheel and editable installs find them alike; Hydra's --config-dir adds a directory of your own.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def run(job: Job | DictConfig, run_dir: Path) -> dict:
    """Build the operator, predict the cost (logged), run the algorithm, write the outputs with the
    prediction next to the actual figures; returns the results record. A composed config is
    compiled (and checked) first. A solver that keeps its measurements gets the run dir's store,
    locked before Ray starts and closed (unlocked) when the solver is done."""
    start = time.perf_counter()
    job = job if isinstance(job, Job) else compile_job(job)
    store_path = run_dir / job.output.store
    with RunStore(store_path) if job.solver.needs_store else contextlib.nullcontext() as store:
        outcome, about = _solve(job, run_dir, store, store_path)
    output, landscape = job.output, None
    if output.landscape and isinstance(outcome, EigenOutcome):
        count = min(output.landscape_vectors, len(outcome.eigenvalues))
        landscape = loss_along(job.problem.build(1, 0), outcome.eigenvectors[:, :count], output.landscape_radius, output.landscape_points)
    about["wall_time_s"] = time.perf_counter() - start
    record = write_results(run_dir, outcome, about, job.config, output.plots, landscape)
    _track(record, run_dir)
    log.info("%s on %d parameters: %d products in %.1f s", about["algorithm"], about["num_params"], outcome.matvecs, about["wall_time_s"])
    return record


def _solve(job: Job, run_dir: Path, store: RunStore | None, store_path: Path) -> tuple[Outcome, dict]:
    """Check what needs D (and the store) before Ray starts, open the operator, plan, run the
    solver: its outcome and the run's figures (algorithm, D, samples, plan and actual)."""
    solver, a = job.solver, job.algorithm
    preview = job.problem.preview()  # on the driver, before Ray: the model takes the data; D and the weights
    problem = {**job.fingerprint, "weights": preview.weights}
    solver.preflight(a, OperatorShape((preview.dim, preview.dim), preview.dtype), seed=job.seed, store=store, problem=problem)
    store_bytes = solver.cost(a, preview.dim, preview.dtype.itemsize)["store_bytes"] if store else 0
    if store is not None:
        check_store_fits(store_bytes, store_path, job.plan.allow_overcommit)
    with open_operator(job) as op:
        if op.weights_digest() != preview.weights:
            raise InputError("the workers built other weights than the driver: model.checkpoint (and the code) must be the same "
                             "on every node")
        prediction = plan(job, op, run_dir)
        before, began = op.matvecs, time.perf_counter()
        try:
            outcome = solver.run(a, op, seed=job.seed, store=store, problem=problem)
        except OSError as error:
            failure = disk_failure(error, store_path if store else None, store_bytes)
            if failure is None:
                raise
            raise failure from None
        actual = {"wall_s": time.perf_counter() - began, "matvecs": op.matvecs - before, "store_bytes": size_on_disk(store_path) if store else 0,
                  "driver_bytes": peak_rss_bytes()}
        compare_with_actual(prediction, actual)
        return outcome, {"algorithm": solver.name, "num_params": op.shape[0], "curvature": job.curvature.kind,
                         "num_samples": op.num_samples, "actual": actual, "plan": prediction}


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


def plan(job: Job, op: ProblemOperator, run_dir: Path) -> dict:
    """The cost prediction for this run (``pipeline.plan``), logged."""
    prediction = make_plan(job, op, run_dir, op.worker_peak_rss())
    log_plan(prediction)
    return prediction


def plan_only(job: Job | DictConfig, run_dir: Path) -> dict:
    """task=plan: time a few products on the workers, write plan.json, run nothing else."""
    job = job if isinstance(job, Job) else compile_job(job)
    with open_operator(job) as op:
        prediction = plan(job, op, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "plan.json").write_text(json.dumps(prediction, indent=2))
    return prediction


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    if HydraConfig.get().mode == RunMode.MULTIRUN and cfg.cluster.mode == "local":
        from pipeline.distributed import keep_local_ray  # Ray is imported only for cluster=local / ray

        keep_local_ray()  # the sweep's jobs share one local Ray: started once, not once per job
    code = execute(cfg, Path(HydraConfig.get().runtime.output_dir))
    if code:
        sys.exit(code)


def execute(cfg: DictConfig, run_dir: Path) -> int:
    """Run ``cfg.task`` in ``run_dir``; returns the exit code: 0 done, 2 a user error or a missing
    setting (one line naming the fix; the run dir's records kept as they were), 143 / 130 stopped
    by SIGTERM / SIGINT (workers shut down, every completed block kept)."""
    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _terminate)
    log.info("run directory: %s", run_dir)
    try:
        job = compile_job(cfg)
        set_log_interval(job.output.progress_interval_s)
        with tracking(job.output.tracker, run_dir, job.config, job.output.tracker_uri):
            if job.task == "reproduce":
                reproduce(job, run_dir, run)
            elif job.task == "plan":
                plan_only(job, run_dir)
            else:
                run(job, run_dir)
        log.info("done: results in %s", run_dir)
        log.debug(OmegaConf.to_yaml(cfg))
        return 0
    except MissingMandatoryValue as error:
        log.error("error: a required setting is missing: %s (set it on the command line, e.g. data.root=/path)", error.full_key)
        _restore_records()
        return 2
    except (PipelineError, OSError) as error:  # a user error or a failing disk: one line naming the fix; any other is a bug
        failure = error if isinstance(error, PipelineError) else disk_failure(error)
        if failure is None:
            raise
        log.error("error: %s", failure, exc_info=os.environ.get("HYDRA_FULL_ERROR") == "1")  # the traceback on request
        _restore_records()
        return 2
    except (KeyboardInterrupt, SystemExit) as stop:
        if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:  # ray.init's own SIGTERM handler exits with 15
            raise
        # Ray re-raises a Terminated caught in its blocking calls as a plain KeyboardInterrupt: the handler's record tells
        terminated = isinstance(stop, SystemExit) or bool(_TERMINATED)
        name, code = ("SIGTERM", 143) if terminated else ("SIGINT", 130)
        log.error("stopped by %s: workers were shut down and every completed block is kept in the store; rerun the "
                  "same command in %s to resume", name, run_dir)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)


def cli() -> None:
    """Console entry (``hessian-pipeline``, ``python -m pipeline``): a run or sweep directory that
    cannot be used is refused in one line before Hydra tries to create it."""
    logging.raiseExceptions = False  # a log file on a full disk: no "--- Logging error ---" traceback per line
    for arg in sys.argv[1:]:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value:
            reason = unusable_directory(Path(value))
            if reason:
                print(f"error: {reason}: choose another {key}", file=sys.stderr)
                sys.exit(2)
            if key == "hydra.run.dir":
                _KEPT_RECORDS.update(_records_of(Path(value)))
    main()


_KEPT_RECORDS: dict[Path, bytes] = {}  # the run dir's Hydra records (.hydra/*.yaml) as they were before this command


def _records_of(run_dir: Path) -> dict[Path, bytes]:
    folder = run_dir / ".hydra"
    return {path: path.read_bytes() for path in folder.glob("*.yaml")} if folder.is_dir() else {}


def _restore_records() -> None:
    """A refused rerun leaves the run dir's records saying what its results and store hold: Hydra
    rewrote .hydra/*.yaml with the refused command's settings before the checks ran."""
    for path, content in _KEPT_RECORDS.items():
        path.write_bytes(content)


def unusable_directory(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a writable directory, or None."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a directory" + ("" if existing == path else f" (a parent of {path})")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's cancel or preemption), raised in the main thread so that every
    ``finally`` and context manager on the way out runs (pending writes, workers, Ray). A
    KeyboardInterrupt because that is the one exception Ray's blocking calls (``ray.wait``,
    ``ray.get``) let through at once: any other raised by a signal handler inside them is held
    until the call returns (measured: a 30 s task's wait, with a hang bound of 1800 s)."""


_TERMINATED: list[int] = []  # SIGTERM received during this execute (Ray re-raises Terminated as a plain KeyboardInterrupt)


def _terminate(signum: int, frame: object) -> None:
    _TERMINATED.append(signum)
    raise Terminated()


if __name__ == "__main__":
    cli()
