"""Know before: predict a run's products, time, store size and memory.

Predict a run's products, wall time, store size and memory from a few timed products on the actual
workers, and flag what will not fit (disk, RAM, a SLURM time limit).

``hessian-pipeline task=plan ...`` writes ``plan.json`` and logs it; every real run logs the same
prediction at its start and records it next to the actual figures in results.json.
Model: wall time = start-up (measured: the job's seconds up to the end of the plan, Ray and the
workers and the product-mode timing included) + products x (seconds per product at the
algorithm's block width, with its test column's generation and its block's write where SEIGH
measures in process) +
the solver's post-processing (its ``cost``: for SEIGH, its flops at
the measured matmul rate). Once a tenth of the products are done, the run re-predicts its end from
their own rate (``calibrating``) and logs it; results.json keeps both.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.basics import peak_rss_bytes
from pipeline.disk import free_under, gib
from pipeline.linalg.measurer import Measurer
from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_columns
from pipeline.progress import clock
from pipeline.solvers.base import block_width
from pipeline.store.run_store import chunk_write_seconds

if TYPE_CHECKING:
    from pipeline.job import Job

log = logging.getLogger(__name__)
CALIBRATE_AT = 0.1  # of the planned products: then the rate seen so far re-predicts the end
CALIBRATE_POLL_S = 0.5
GENERATION_ROWS = 1 << 20  # rows of a test block timed for the plan


def seconds_per_matvec(op: Operator, width: int, repeats: int = 2) -> float:
    """Seconds per column of a product on a (D, width) block.

    Where the operator times itself on its first batch (``op.pass_seconds``: a few batches of
    work, and the product mode it settles is kept for the run), that time per column; else the
    best of ``repeats`` timed products after an untimed one.
    """
    estimate = op.pass_seconds(width)
    if estimate is not None:
        return estimate / width
    V = torch.randn(
        op.shape[0],
        width,
        dtype=op.dtype,
        device=op.device,
        generator=torch.Generator(device=op.device).manual_seed(0),
    )
    op @ V
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        op @ V
        times.append(time.perf_counter() - start)
    return min(times) / width


def generation_seconds(
    dim: int, width: int, kind: str, dtype: torch.dtype, rows: int = GENERATION_ROWS
) -> float:
    """Seconds per column to generate a (dim, width) block of seeded test columns in this process.

    Timed as a measurement makes them (``random_columns`` at the products' ``dtype``) on at most
    ``rows`` of its rows and scaled to ``dim`` (generation is linear in rows). Operators that
    measure on their workers time it there (``RayOperator.pass_seconds``).
    """
    rows = min(rows, dim)
    start = time.perf_counter()
    random_columns(kind, 0, rows, range(width), dtype=dtype)
    return (time.perf_counter() - start) * dim / rows / width


def write_seconds(dim: int, block: int, dtype: torch.dtype, rows: int = GENERATION_ROWS) -> float:
    """Seconds per column to write a (dim, block) measured block to the store in this process.

    One chunk of at most ``rows`` rows timed (``chunk_write_seconds``) and scaled to ``dim``. The
    write runs behind the next products, but on a machine whose cores the products use it delays
    them about as long (a product beside a block's write took 2.9x as long on 2 cores), so it is
    counted in full.
    """
    rows = min(rows, dim)
    return chunk_write_seconds(rows, block, dtype) * dim / rows / block


def make_plan(
    job: Job,
    op: Operator,
    run_dir: Path,
    worker_rss: Callable[[], int | None] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """The prediction for this job on this operator (see the module docstring).

    ``worker_rss`` answers the workers' peak memory (None: this process's), asked after the
    timed products, so the prediction includes a product at the run's width; a solver that keeps
    a store adds the two blocks rank 0 holds beside its products (the one it assembles and the one
    written behind it: with one, the rehearsal's worker peaked 5-20% above the plan), as the
    memory fit of an ``auto`` size counts them. ``started`` is the job's start
    (``time.perf_counter()``); the seconds from it to the end of the plan are the prediction's
    ``startup_s`` (0 without it).
    """
    a, solver = job.algorithm, job.solver
    dim = op.shape[0]
    matvecs, meaning = solver.matvecs(a, dim)
    width = block_width(a)
    per_matvec = seconds_per_matvec(op, width)
    if solver.needs_store and not isinstance(op, Measurer):  # its blocks made and written here
        per_matvec += generation_seconds(
            dim, width, getattr(a, "inner_kind", "rademacher"), op.dtype
        )
        per_matvec += write_seconds(dim, getattr(a, "block_size", width), op.dtype)
    plan: dict[str, Any] = {
        "dim": dim,
        "matvecs": matvecs,
        "matvecs_are": meaning,
        "block_width": width,
        "seconds_per_matvec": per_matvec,
        "measurement_s": matvecs * per_matvec,
    }
    itemsize = torch.empty((), dtype=op.dtype).element_size()
    if solver.cost is not None:
        plan.update(solver.cost(a, dim, itemsize))
    else:
        plan.update(
            postprocess_s=0.0,
            store_bytes=0,
            driver_bytes=dim * (getattr(a, "k", 1) + 2 * width) * 8,
        )
    plan["driver_bytes"] += peak_rss_bytes()
    worker = worker_rss() if worker_rss is not None else None
    store_blocks = 2 * dim * getattr(a, "block_size", 0) * itemsize if solver.needs_store else 0
    plan["worker_bytes"] = (worker if worker is not None else peak_rss_bytes()) + store_blocks
    plan["startup_s"] = time.perf_counter() - started if started is not None else 0.0
    plan["wall_s"] = plan["startup_s"] + plan["measurement_s"] + plan["postprocess_s"]
    plan["fits"] = _fits(plan, run_dir, job.plan.time_limit)
    return plan


def log_plan(plan: dict[str, Any]) -> None:
    """One INFO line with the prediction, a WARNING per thing that will not fit."""
    log.info(
        "plan: %s in all: start-up %s so far, %d products (%s) at %.3g s each = %s, "
        "post-processing %s; store %s, driver %s, worker %s",
        clock(plan["wall_s"]),
        clock(plan["startup_s"]),
        plan["matvecs"],
        plan["matvecs_are"],
        plan["seconds_per_matvec"],
        clock(plan["measurement_s"]),
        clock(plan["postprocess_s"]),
        gib(plan["store_bytes"]),
        gib(plan["driver_bytes"]),
        gib(plan["worker_bytes"]),
    )
    for what, verdict in plan["fits"].items():
        if verdict["fits"] is False:
            log.warning("plan: %s will not fit: %s", what, verdict["why"])


def compare_with_actual(plan: dict[str, Any], actual: dict[str, Any]) -> None:
    """Log the plan (and its calibration) next to what the run took (wall time, products)."""
    calibrated = plan.get("calibrated")
    log.info(
        "plan vs actual: wall time %s predicted, %s taken (%.2fx)%s; %d products predicted, "
        "%d spent",
        clock(plan["wall_s"]),
        clock(actual["wall_s"]),
        actual["wall_s"] / max(plan["wall_s"], 1e-9),
        f"; {clock(calibrated['wall_s'])} once calibrated "
        f"({actual['wall_s'] / max(calibrated['wall_s'], 1e-9):.2f}x)"
        if calibrated
        else "",
        plan["matvecs"],
        actual["matvecs"],
    )


@contextmanager
def calibrating(plan: dict[str, Any], op: Operator, started: float) -> Iterator[None]:
    """While the body runs the solver, re-predict the job's end from its own product rate.

    Once ``CALIBRATE_AT`` of the planned products are done (``op.matvecs`` since the body began),
    the rest are predicted at the rate seen so far (their blocks' generation, all-reduce and
    writes included) plus the post-processing; logged once and kept as ``plan["calibrated"]``
    (``wall_s`` from ``started``, the job's start, and the products it was calibrated on). The rate
    is taken from the first products seen on: the call that returned them also paid the workers'
    one-off work (mode timing, width fit, first touch), which had the rehearsal's re-plan 1.5x
    high; the whole interval where too few products came after them.
    """
    done = threading.Event()
    before, began = op.matvecs, time.perf_counter()
    planned = max(int(plan["matvecs"]), 1)

    def watch() -> None:
        first = None  # (time, products) when the first products were seen
        while not done.wait(CALIBRATE_POLL_S):
            spent, now = op.matvecs - before, time.perf_counter()
            if first is None and spent > 0:
                first = (now, spent)
            if spent >= CALIBRATE_AT * planned:
                since, counted = first if spent >= 2 * first[1] else (began, 0)
                per_product = (now - since) / (spent - counted)
                rest = max(planned - spent, 0) * per_product + plan["postprocess_s"]
                wall = now - started + rest
                plan["calibrated"] = {"wall_s": wall, "on_matvecs": spent}
                log.info(
                    "plan, calibrated on the first %d of %d products: %s in all, %s to go "
                    "(%.2fx the plan)",
                    spent,
                    planned,
                    clock(wall),
                    clock(rest),
                    wall / max(plan["wall_s"], 1e-9),
                )
                _check_time_limit(plan)
                return

    thread = threading.Thread(target=watch, daemon=True, name="plan calibration")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _fits(plan: dict[str, Any], run_dir: Path, time_limit: str | None) -> dict[str, dict[str, Any]]:
    existing, free = free_under(run_dir)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = time_limit or os.environ.get("SBATCH_TIMELIMIT") or os.environ.get("SLURM_TIMELIMIT")
    fits = {
        "disk": {
            "fits": plan["store_bytes"] <= free,
            "why": f"store {gib(plan['store_bytes'])}, {gib(free)} free under {existing}",
        },
        "driver memory": {
            "fits": plan["driver_bytes"] <= memory,
            "why": f"{gib(plan['driver_bytes'])} needed, {gib(memory)} here",
        },
    }
    if limit:
        seconds = slurm_seconds(limit)
        fits["time limit"] = {
            "fits": plan["wall_s"] <= seconds,
            "why": f"{clock(plan['wall_s'])} predicted, limit {limit}",
            "limit_s": seconds,
        }
    return fits


def _check_time_limit(plan: dict[str, Any]) -> None:
    """WARN when the calibrated end is past the time limit the plan was checked against.

    The job will be killed before it finishes (every completed block is kept; a requeued job
    resumes); ``plan["calibrated"]["fits_time_limit"]`` records the verdict.
    """
    limit = plan.get("fits", {}).get("time limit")
    if limit is None:
        return
    calibrated = plan["calibrated"]
    calibrated["fits_time_limit"] = calibrated["wall_s"] <= limit["limit_s"]
    if not calibrated["fits_time_limit"]:
        log.warning(
            "plan, calibrated: the job will not finish within its time limit (%s predicted, limit "
            "%s): it will be stopped and must be resumed (rerun or requeue: completed blocks are "
            "kept), or raise the limit",
            clock(calibrated["wall_s"]),
            clock(limit["limit_s"]),
        )


def slurm_seconds(limit: str) -> float:
    """A SLURM --time value (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in seconds."""
    days, _, rest = limit.rpartition("-") if "-" in limit else ("0", "", limit)
    parts = [float(p) for p in rest.split(":")]
    if "-" in limit:
        parts += [0.0] * (3 - len(parts))  # D-HH, D-HH:MM
        hours, minutes, seconds = parts
    else:
        hours, minutes, seconds = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return float(days) * 86400 + hours * 3600 + minutes * 60 + seconds
