"""Know before: predict a run's products, wall time, store size and memory from a few timed
products on the actual workers, and flag what will not fit (disk, RAM, a SLURM time limit).

``hessian-pipeline task=plan ...`` writes ``plan.json`` and logs it; every real run logs the same
prediction at its start and records it next to the actual figures in results.json.
Model: wall time = products x (seconds per product at the algorithm's block width) + SEIGH's
post-processing, 2 D (3 nO^2 + nO nI + nI^2 + nO k) flops at the measured matmul rate plus
the generation of Psi's rows, timed on one row block.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.linalg.operator import Operator
from pipeline.linalg.random_matrices import random_block
from pipeline.linalg.streaming import compute_device
from pipeline.progress import clock

log = logging.getLogger(__name__)


def product_count(a: Any, dim: int) -> tuple[int, str]:
    """(products the configured algorithm spends, what the figure means) for D = ``dim``."""
    if a.name == "seigh":
        if a.get("target_tol") is not None:
            return (a.max_products or 3 * (a.outer + a.inner)), "adaptive SEIGH: its product budget (max_products), or 3x the start"
        count = a.inner + (0 if a.recycled else a.outer) + (a.k if a.residuals and not a.refine_tol else 0) + a.error_test_vectors
        if a.refine_tol:
            return count + 10 * a.k, "measurements, test vectors and about 10k for the Lanczos refinement (seen: 3k-20k)"
        return count, "measurements, residuals and test vectors"
    if a.name == "lanczos":
        ncv = a.ncv or max(2 * a.k + 2 * a.block_size, a.k + 20)
        return min(dim, 3 * ncv), f"about 3 restarts of ncv={ncv} (at most max_matvecs)"
    if a.name == "power":
        return a.k * a.max_iter, "upper bound: k x max_iter"
    if a.name == "trace":
        return a.num_matvecs, "num_matvecs"
    if a.name == "density":
        return a.num_probes * a.num_steps, "num_probes x num_steps"
    return a.sketch_size, "sketch_size"


def seconds_per_product(op: Operator, width: int, repeats: int = 2) -> float:
    """Best of ``repeats`` timed products on a (D, width) block (after one untimed: auto mode
    selection and caches), per column."""
    V = torch.randn(op.shape[0], width, dtype=op.dtype, device=op.device, generator=torch.Generator(device=op.device).manual_seed(0))
    op @ V
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        op @ V
        times.append(time.perf_counter() - start)
    return min(times) / width


def postprocess_seconds(dim: int, outer: int, inner: int, k: int, inner_kind: str, memory_bytes: int, device=None) -> float:
    """SEIGH post-processing time: the flop count at this device's measured float64 matmul rate,
    plus Psi's rows generated for every row block (timed on one)."""
    device = compute_device(device)
    rows = min(dim, max(outer, memory_bytes // (8 * (3 * outer + 5 * inner))))
    a = torch.randn(rows, inner, dtype=torch.float64, device=device)
    start = time.perf_counter()
    a.T @ a
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = 2 * rows * inner * inner / max(time.perf_counter() - start, 1e-9)
    start = time.perf_counter()
    random_block(inner_kind, 0, range(rows), range(inner))
    psi = time.perf_counter() - start
    flops = 2 * dim * (3 * outer**2 + outer * inner + inner**2 + outer * k)
    return flops / rate + psi * -(-dim // rows)


def make_plan(cfg: Any, op: Operator, run_dir: Path, worker_rss: int | None = None) -> dict[str, Any]:
    """The prediction for this config on this operator (see the module docstring)."""
    a = cfg.algorithm
    dim = op.shape[0]
    products, meaning = product_count(a, dim)
    width = a.get("block_size", 1) or 1
    per_product = seconds_per_product(op, width)
    plan: dict[str, Any] = {"dim": dim, "products": products, "products_are": meaning, "block_width": width,
                            "seconds_per_product": per_product, "measurement_s": products * per_product}
    itemsize = torch.empty((), dtype=op.dtype).element_size()
    if a.name == "seigh":
        outer, inner = a.outer, a.inner
        plan["postprocess_s"] = postprocess_seconds(dim, outer, inner, a.k, a.inner_kind, int(a.memory_gb * 2**30))
        plan["store_bytes"] = dim * (inner + (0 if a.recycled else outer)) * itemsize + dim * a.k * 8
        plan["driver_bytes"] = int(a.memory_gb * 2**30) + dim * a.k * 8 + _rss()
    else:
        plan["postprocess_s"] = 0.0
        plan["store_bytes"] = 0
        plan["driver_bytes"] = dim * (a.get("k", 1) + 2 * width) * 8 + _rss()
    plan["worker_bytes"] = worker_rss if worker_rss is not None else _rss()
    plan["wall_s"] = plan["measurement_s"] + plan["postprocess_s"]
    plan["fits"] = _fits(plan, run_dir, cfg.get("plan", {}).get("time_limit"))
    return plan


def log_plan(plan: dict[str, Any]) -> None:
    """One INFO line with the prediction, a WARNING per thing that will not fit."""
    log.info("plan: %d products (%s) at %.3g s each = %s, post-processing %s, store %s, driver %s, worker %s",
             plan["products"], plan["products_are"], plan["seconds_per_product"], clock(plan["measurement_s"]),
             clock(plan["postprocess_s"]), _size(plan["store_bytes"]), _size(plan["driver_bytes"]), _size(plan["worker_bytes"]))
    for what, verdict in plan["fits"].items():
        if verdict["fits"] is False:
            log.warning("plan: %s will not fit: %s", what, verdict["why"])


def compare_with_actual(plan: dict[str, Any], actual: dict[str, Any]) -> None:
    log.info("plan vs actual: wall time %s predicted, %s taken (%.2fx); %d products predicted, %d spent", clock(plan["wall_s"]),
             clock(actual["wall_s"]), actual["wall_s"] / max(plan["wall_s"], 1e-9), plan["products"], actual["products"])


def _fits(plan: dict[str, Any], run_dir: Path, time_limit: str | None) -> dict[str, dict[str, Any]]:
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = time_limit or os.environ.get("SBATCH_TIMELIMIT") or os.environ.get("SLURM_TIMELIMIT")
    fits = {
        "disk": {"fits": plan["store_bytes"] <= free, "why": f"store {_size(plan['store_bytes'])}, {_size(free)} free under {existing}"},
        "driver memory": {"fits": plan["driver_bytes"] <= memory, "why": f"{_size(plan['driver_bytes'])} needed, {_size(memory)} here"},
    }
    if limit:
        seconds = slurm_seconds(limit)
        fits["time limit"] = {"fits": plan["wall_s"] <= seconds, "why": f"{clock(plan['wall_s'])} predicted, limit {limit}"}
    return fits


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


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _size(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**28 else f"{count / 2**20:.1f} MiB"
