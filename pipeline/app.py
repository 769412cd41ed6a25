"""The Hydra entry point: ``hessian-pipeline [overrides]`` or ``python -m pipeline [overrides]``."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

import pipeline
from pipeline.config import register
from pipeline.disk import disk_failure
from pipeline.errors import PipelineError
from pipeline.job import compile_job
from pipeline.layerwise import layerwise
from pipeline.progress import set_log_interval
from pipeline.reproduce import reproduce
from pipeline.runner import plan_only, run_job
from pipeline.store.run_store import start_io
from pipeline.tracking import tracking

log = logging.getLogger("pipeline")
_JOBS_STARTED: list[float] = []  # the jobs this command has started (a multirun runs several)
register()
# The configs ship inside the package (pipeline/conf; conf/ at the repository root links to it),
# so wheel and editable installs find them alike; Hydra's --config-dir adds a directory of your own.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    """The Hydra entry point: one job of the composed config ``cfg``."""
    if HydraConfig.get().mode == RunMode.MULTIRUN and cfg.cluster.mode == "local":
        # Ray is imported only for cluster=local / ray
        from pipeline.distributed import keep_local_ray

        keep_local_ray()  # the sweep's jobs share one local Ray: started once, not once per job
    # the first job of a command counts its start-up from the command's start (imports, Hydra)
    started = pipeline.IMPORTED_AT if not _JOBS_STARTED else None
    _JOBS_STARTED.append(time.perf_counter())
    code = execute(cfg, Path(HydraConfig.get().runtime.output_dir), started)
    if code:
        sys.exit(code)


def execute(cfg: DictConfig, run_dir: Path, started: float | None = None) -> int:
    """Run ``cfg.task`` in ``run_dir``; returns the exit code.

    ``started``: when the job began (``time.perf_counter()``; default: now), for its plan's
    start-up and its wall time.

    0 done, 2 a user error or a missing setting (one line naming the fix; the run dir's records kept
    as they were), 143 / 130 stopped by SIGTERM / SIGINT (workers shut down, every completed block
    kept).
    """
    _TERMINATED.clear()
    start_io()
    previous = signal.signal(signal.SIGTERM, _terminate)
    log.info("run directory: %s", run_dir)
    try:
        job = compile_job(cfg)
        set_log_interval(job.output.progress_interval_s)
        with tracking(job.output.tracker, run_dir, job.config, job.output.tracker_uri):
            if job.task == "reproduce":
                reproduce(job, run_dir)
            elif job.task == "plan":
                plan_only(job, run_dir, started)
            elif job.task == "layerwise":
                layerwise(job, run_dir)
            else:
                run_job(job, run_dir, started)
        log.info("done: results in %s", run_dir)
        log.debug(OmegaConf.to_yaml(cfg))
        return 0
    except MissingMandatoryValue as error:
        log.error(
            "error: a required setting is missing: %s (set it on the command line, e.g. "
            "data.root=/path)",
            error.full_key,
        )
        _restore_records()
        return 2
    # a user error or a failing disk: one line naming the fix; any other is a bug
    except (PipelineError, OSError) as error:
        if _TERMINATED:  # what a SIGTERM left behind (workers shut down under a call)
            return _stopped("SIGTERM", 143, run_dir)
        failure = error if isinstance(error, PipelineError) else disk_failure(error)
        if failure is None:
            raise
        # the traceback on request
        log.error("error: %s", failure, exc_info=os.environ.get("HYDRA_FULL_ERROR") == "1")
        _restore_records()
        return 2
    except (KeyboardInterrupt, SystemExit) as stop:
        # ray.init's own SIGTERM handler exits with 15
        if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:
            raise
        # Ray re-raises a Terminated caught in its blocking calls as a plain KeyboardInterrupt: the
        # handler's record tells
        terminated = isinstance(stop, SystemExit) or bool(_TERMINATED)
        return _stopped(*(("SIGTERM", 143) if terminated else ("SIGINT", 130)), run_dir)
    except Exception:
        # the SIGTERM's exception wrapped by what it interrupted (TorchScript turns it into a
        # RuntimeError "Terminated: <EMPTY MESSAGE>" inside a scripted decomposition)
        if not _TERMINATED:
            raise
        return _stopped("SIGTERM", 143, run_dir)
    finally:
        signal.signal(signal.SIGTERM, previous)


def cli() -> None:
    """Console entry (``hessian-pipeline``, ``python -m pipeline``).

    A run or sweep directory that cannot be used is refused in one line before Hydra tries to create
    it.
    """
    # a log file on a full disk: no "--- Logging error ---" traceback per line
    logging.raiseExceptions = False
    logging.getLogger("asyncio").addFilter(_zarr_io_left_by_a_signal)
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


# the run dir's Hydra records (.hydra/*.yaml) as they were before this command
_KEPT_RECORDS: dict[Path, bytes] = {}


def _records_of(run_dir: Path) -> dict[Path, bytes]:
    folder = run_dir / ".hydra"
    return {path: path.read_bytes() for path in folder.glob("*.yaml")} if folder.is_dir() else {}


def _restore_records() -> None:
    """A refused rerun leaves the run dir's records saying what its results and store hold.

    Hydra rewrote .hydra/*.yaml with the refused command's settings before the checks ran.
    """
    for path, content in _KEPT_RECORDS.items():
        path.write_bytes(content)


def unusable_directory(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a writable directory, or None."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a directory" + (
            "" if existing == path else f" (a parent of {path})"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's cancel or preemption) as an exception in the main thread.

    SIGTERM (a scheduler's cancel or preemption), raised in the main thread so that every
    ``finally`` and context manager on the way out runs (pending writes, workers, Ray). A
    KeyboardInterrupt because that is the one exception Ray's blocking calls (``ray.wait``,
    ``ray.get``) let through at once: any other raised by a signal handler inside them is held until
    the call returns (measured: a 30 s task's wait, with a hang bound of 1800 s).
    """


# SIGTERM received during this execute (Ray re-raises Terminated as a plain KeyboardInterrupt)
_TERMINATED: list[int] = []
# the signal that stopped the run, once its one line is logged
_STOPPED: list[str] = []


def _zarr_io_left_by_a_signal(record: logging.LogRecord) -> bool:
    """False for what asyncio reports of zarr's I/O cut short by a signal.

    A signal that stops the run inside a zarr call leaves zarr's task pending ("Task was destroyed
    but it is pending" at exit) or a read's future never awaited ("Future exception was never
    retrieved", e.g. the FileNotFoundError of a store's first probe); zarr writes are atomic
    renames, so nothing half-written counts, and the one line the run ends with stays the only
    ERROR.
    """
    message = record.getMessage()
    if "Task was destroyed but it is pending" in message and "zarr" in message:
        return False
    return not (_STOPPED and "Future exception was never retrieved" in message)


def _stopped(name: str, code: int, run_dir: Path) -> int:
    """Log the one line a run stopped by a signal ends with; returns its exit code.

    What the signal interrupted says nothing more on the way out: a zarr call cut short leaves a
    coroutine never awaited (a RuntimeWarning) or an event loop half made (its __del__ fails): all
    "Exception ignored" reports of the teardown are dropped.
    """
    log.error(
        "stopped by %s: workers were shut down and every completed block is kept in the store; "
        "rerun the same command in %s to resume",
        name,
        run_dir,
    )
    _STOPPED.append(name)
    # teardown of what the signal cut short (an event loop half made, a thread never started)
    sys.unraisablehook = lambda unraisable: None
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    return code


def _terminate(signum: int, frame: object) -> None:
    _TERMINATED.append(signum)
    raise Terminated()


if __name__ == "__main__":
    cli()
