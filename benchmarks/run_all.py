"""Run the benchmark scripts one after another (``make bench``), each in its own process, and
print a summary of which finished and in how long. The heavy ones (D = 1M and 11.7M Zarr
stores, the comparisons with PyHessian / hessian-eigenthings / curvlinops / skerch) take their
sizes from the command line; the defaults here are the ones recorded in BENCHMARKS.md, scaled
down where noted so that a full run fits an evening on a workstation.

    python benchmarks/run_all.py                 # all, scratch stores under a temp dir
    python benchmarks/run_all.py --only hvp_vs_grad ray_overhead --dir /scratch/bench
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# script -> arguments ({dir}: a scratch directory for Zarr stores)
RUNS = {
    "hvp_vs_grad": [],
    "ray_overhead": [],
    "adaptive_seigh": [],
    "eigensolvers": [],
    "peers": [],
    "seigh_vs_skerch": [],
    "slq_density": [],
    "seigh_postprocess": ["--dir", "{dir}/postprocess", "--paths", "householder,new"],
    # BENCHMARKS.md: the 11.7M run passes --dim 11689512
    "seigh_out_of_core": ["--dir", "{dir}/out_of_core", "--dim", "1000000"],
    "worker_priority": ["--hogs", "2"],
    # a measured ResNet-18 block's write beside a product: Zarr against the chunk files
    "block_writes": ["--rounds", "3"],
    # the full-size rehearsal of BENCHMARKS.md (ResNet-18 through the CLI on 2 Ray workers)
    "fullsize": ["--dir", "{dir}/fullsize"],
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="run just these")
    parser.add_argument(
        "--dir", help="scratch directory for stores (default: a temp dir, removed after)"
    )
    args = parser.parse_args()
    names = args.only or list(RUNS)
    with tempfile.TemporaryDirectory(prefix="hessian-bench-") as scratch:
        directory = args.dir or scratch
        outcomes = {}
        for name in names:
            command = [
                sys.executable,
                str(HERE / f"{name}.py"),
                *(a.format(dir=directory) for a in RUNS[name]),
            ]
            print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
            start = time.perf_counter()
            code = subprocess.call(command)
            outcomes[name] = (code, time.perf_counter() - start)
    print("\n=== summary")
    for name, (code, seconds) in outcomes.items():
        print(f"{name:20s} {'ok' if code == 0 else f'FAILED (exit {code})':18s} {seconds:8.1f} s")
    return 0 if all(code == 0 for code, _ in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
