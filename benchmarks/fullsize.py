"""Full-size rehearsal: SEIGH of ImageNet ResNet-18 (D = 11,689,512) through the command line.

One run of ``python -m pipeline`` on synthetic ImageNet-shaped data at reduced resolution, on
local Ray workers, watched from outside: the peak resident memory of the driver, of each worker
and of the whole process tree (sampled every 0.2 s, not the driver's getrusage), the bytes the
tree read and wrote, the wall time of each stage (from the log and the store's completion marks)
and the planner's prediction beside the actual figures.

    python benchmarks/fullsize.py                       # the rehearsal of BENCHMARKS.md (minutes)
    python benchmarks/fullsize.py --model tanh_mlp --samples 256 --resolution 16  # seconds
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

GIB = 2**30
# log line (its message) -> the stage it ends
STAGE_ENDS = [
    ("Ray started", re.compile(r"started a local Ray|connected to the Ray cluster")),
    ("workers ready", re.compile(r"Ray workers ready|in-process operator ready")),
    ("plan (timed products)", re.compile(r"\] - plan: ")),
    ("inner measurements", re.compile(r"inner measurements: .* done")),
    ("outer measurements", re.compile(r"outer measurements: .* done")),
    ("post-processing", re.compile(r"V = Q U: .* done")),
    ("residuals and error test", re.compile(r"plan vs actual")),
    ("writing results and plots", re.compile(r"wrote results.json")),
]
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


class TreeSampler:
    """Samples the RSS of a process and all its descendants, grouped by role, in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peaks: dict[str, int] = {"driver": 0, "worker": 0, "ray": 0, "tree": 0}
        self.io: dict[int, tuple[int, int]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    counters = process.io_counters()
                    command = " ".join(process.cmdline()[:1])
                except psutil.Error:
                    continue
                total += rss
                self.io[process.pid] = (counters.read_chars, counters.write_chars)
                role = (
                    "driver"
                    if process.pid == self.root.pid
                    else "worker"
                    if command.startswith("ray::CurvatureWorker")
                    else "ray"
                )
                self.peaks[role] = max(self.peaks[role], rss)
            self.peaks["tree"] = max(self.peaks["tree"], total)

    def close(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join()
        read = sum(r for r, _ in self.io.values())
        written = sum(w for _, w in self.io.values())
        return {
            **{f"peak_{role}_gib": peak / GIB for role, peak in self.peaks.items()},
            "read_gib": read / GIB,
            "written_gib": written / GIB,
        }


def stage_times(log: str, started: float, run_dir: Path) -> list[tuple[str, float]]:
    """(stage, seconds since start) at the end of each stage found in the log, in order, with the
    first completion mark of the store (the first measurement) among them."""
    ends = []
    for line in log.splitlines():
        stamp = STAMP.match(line)
        if not stamp:
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - started
        for name, pattern in STAGE_ENDS:
            if pattern.search(line) and name not in dict(ends):
                ends.append((name, when))
    marks = [
        path.stat().st_mtime
        for name in ("inner_done", "outer_done")
        for path in (run_dir / "store.zarr" / name / "c").glob("*")
    ]
    if marks:
        ends.append(("first measurement (first block written)", min(marks) - started))
    return sorted(ends, key=lambda end: end[1])


def overrides(args: argparse.Namespace, run_dir: Path) -> list[str]:
    model = ["model=resnet18", f"model.num_classes={args.classes}"]
    if args.model != "resnet18":
        model = [f"model={args.model}"]
    return [
        *model,
        "data=synthetic",
        f"data.samples={args.samples}",
        f"data.input_shape=[{args.channels},{args.resolution},{args.resolution}]",
        f"data.num_classes={args.classes}",
        f"data.batch_size={args.batch_size}",
        "algorithm=seigh",
        f"algorithm.k={args.k}",
        f"algorithm.outer={args.outer}",
        f"algorithm.inner={args.inner}",
        f"algorithm.block_size={args.block}",
        "algorithm.refine_tol=null",  # SEIGH alone, its residuals flagged (as the paper ran it)
        "output.plots=true",
        f"device={args.device}",
        *(
            ["cluster=none"]
            if args.workers == 0
            else ["cluster=local", f"cluster.num_workers={args.workers}"]
        ),
        f"hydra.run.dir={run_dir}",
        *args.extra,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet18", help="resnet18, or any model= option")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=32, help="images are res x res")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (0: in process)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--outer", type=int, default=32)
    parser.add_argument("--inner", type=int, default=64)
    parser.add_argument("--block", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dir", help="run directory (default: a temp dir, removed after)")
    parser.add_argument("extra", nargs="*", help="more Hydra overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fullsize-") as scratch:
        run_dir = Path(args.dir or scratch) / "run"
        command = [sys.executable, "-m", "pipeline", *overrides(args, run_dir)]
        print(" ".join(command[1:]), flush=True)
        started = time.time()
        driver = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        sampler = TreeSampler(driver.pid)
        log, _ = driver.communicate()
        wall = time.time() - started
        memory = sampler.close()
        if driver.returncode != 0:
            print(log[-4000:])
            return driver.returncode
        report(
            json.loads((run_dir / "results.json").read_text()), log, started, run_dir, wall, memory
        )
    return 0


def report(
    record: dict, log: str, started: float, run_dir: Path, wall: float, memory: dict
) -> None:
    plan, actual = record["plan"], record["actual"]
    again = plan.get("calibrated", {})
    calibrated = (
        f", {again['wall_s']:.1f} s predicted after {again['on_matvecs']} products "
        f"({actual['wall_s'] / again['wall_s']:.2f}x)"
        if "calibrated" in plan
        else ""
    )
    print(
        f"\nD = {record['num_params']:,}, {record['num_samples']} samples, {record['matvecs']} "
        f"products, wall {wall:.1f} s (the run's own wall_time_s {record['wall_time_s']:.1f} s)"
    )
    print("\n| stage ends | s since start | stage s |\n| --- | --- | --- |")
    previous = 0.0
    for name, when in stage_times(log, started, run_dir):
        print(f"| {name} | {when:.1f} | {when - previous:.1f} |")
        previous = max(previous, when)
    rows = [
        ("driver peak RSS GiB", memory["peak_driver_gib"], plan["driver_bytes"] / GIB),
        ("one worker's peak RSS GiB", memory["peak_worker_gib"], plan["worker_bytes"] / GIB),
        ("Ray's own processes, largest peak RSS GiB", memory["peak_ray_gib"], None),
        ("whole tree peak RSS GiB", memory["peak_tree_gib"], None),
        ("store GiB", actual["store_bytes"] / GIB, plan["store_bytes"] / GIB),
        ("read by the tree GiB", memory["read_gib"], None),
        ("written by the tree GiB", memory["written_gib"], None),
    ]
    print("\n| memory and I/O | measured | predicted |\n| --- | --- | --- |")
    for name, measured, predicted in rows:
        print(f"| {name} | {measured:.2f} | {'-' if predicted is None else f'{predicted:.2f}'} |")
    print(
        f"\nplanner: {plan['wall_s']:.1f} s predicted (start-up {plan['startup_s']:.1f} s of it), "
        f"{actual['wall_s']:.1f} s taken up to the results "
        f"({actual['wall_s'] / plan['wall_s']:.2f}x)"
        f"{calibrated}; whole command {wall:.1f} s; "
        f"{plan['matvecs']} products predicted, {actual['matvecs']} spent; "
        f"{plan['seconds_per_matvec']:.3g} s per product at width {plan['block_width']}"
    )


if __name__ == "__main__":
    sys.exit(main())
