"""Ray workers at Ray's default nice 15 against the pipeline's nice 0, beside CPU-bound jobs.

Each niceness runs in a fresh process with a fresh local Ray, one after the other, beside the
same ``--hogs`` busy loops: the seconds to start 2 workers, their first product (one-off costs
included), a later product, and the product that follows a SIGKILLed worker (the group rebuilt).
Usage: python benchmarks/worker_priority.py [--hogs 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import torch


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).double()


def _data(n: int = 61):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=gen, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=gen
    )


def measure(niceness: int) -> dict[str, float]:
    """Seconds of each stage with Ray's workers at ``niceness`` (in this process)."""
    import ray

    from pipeline.distributed import ProblemSpec, RayOperator
    from pipeline.distributed.runtime import LOCAL_SYSTEM_CONFIG

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _temp_dir=tempfile.mkdtemp(prefix="ray-nice-"),
        log_to_driver=False,
        _system_config={**LOCAL_SYSTEM_CONFIG, "worker_niceness": niceness},
    )
    spec = ProblemSpec(functools.partial(_model), functools.partial(_data), batch_size=16)
    seconds, start = {}, time.perf_counter()
    with RayOperator(spec, num_workers=2, cpus_per_worker=1) as op:
        seconds["start 2 workers"] = time.perf_counter() - start
        V = torch.randn(op.shape[0], 2, dtype=torch.float64)
        for stage in ("first product", "later product"):
            start = time.perf_counter()
            op @ V
            seconds[stage] = time.perf_counter() - start
        os.kill(op.group.info[1]["pid"], signal.SIGKILL)
        start = time.perf_counter()
        op @ V
        seconds["product after a worker is killed"] = time.perf_counter() - start
    ray.shutdown()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hogs",
        type=int,
        default=2,
        help="CPU-bound busy loops running beside (0: a quiet machine)",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        runs = {
            nice: json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--child", str(nice)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            for nice in (15, 0)
        }
    finally:
        for hog in hogs:
            hog.kill()
    print(
        f"beside {args.hogs} CPU-bound loops on {os.cpu_count()} cores: seconds at Ray's nice 15 / "
        "the pipeline's nice 0"
    )
    for stage in runs[0]:
        print(
            f"  {stage:34s} {runs[15][stage]:8.1f} {runs[0][stage]:8.1f}   "
            f"{runs[15][stage] / runs[0][stage]:6.1f}x"
        )


if __name__ == "__main__":
    main()
