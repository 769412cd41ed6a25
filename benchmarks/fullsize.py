"""Full-size rehearsal: SEIGH of ImageNet ResNet-18 (D = 11,689,512) through the command line.

One run of ``python -m pipeline`` on synthetic ImageNet-shaped data at reduced resolution, on
local Ray workers, watched from outside: the peak resident memory of the driver, of each worker
and of the whole process tree (sampled every 0.2 s, not the driver's getrusage), the bytes the
tree read and wrote, the wall time of each stage (from the log and the store's completion marks)
and the planner's prediction beside the actual figures.

    python benchmarks/fullsize.py                       # the rehearsal of BENCHMARKS.md (minutes)
    python benchmarks/fullsize.py --model tanh_mlp --samples 256 --resolution 16  # seconds
    python benchmarks/fullsize.py --model tiny_gpt --workers 0 --samples 8 --outer 100 \
        --inner 200 --block 8 algorithm.recycled=true   # a GPT of 25.4M parameters (issue 23)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
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
    """Samples the memory of a process and all its descendants in a thread.

    Each sample: (seconds since start, driver RSS, largest worker RSS, largest other Ray process
    RSS, the tree's summed PSS). PSS splits shared pages (torch's libraries, Ray's object store)
    among the processes mapping them, so the tree's sum counts them once.
    """

    def __init__(self, pid: int, started: float, interval_s: float = 0.25):
        self.root = psutil.Process(pid)
        self.started, self.interval_s = started, interval_s
        self.samples: list[tuple[float, int, int, int, int]] = []
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
            peaks, tree = {"driver": 0, "worker": 0, "ray": 0}, 0
            for process in processes:
                try:
                    memory = process.memory_full_info()
                    counters = process.io_counters()
                    command = " ".join(process.cmdline()[:1])
                except psutil.Error:
                    continue
                tree += memory.pss
                self.io[process.pid] = (counters.read_chars, counters.write_chars)
                role = (
                    "driver"
                    if process.pid == self.root.pid
                    else "worker"
                    if command.startswith("ray::CurvatureWorker")
                    else "ray"
                )
                peaks[role] = max(peaks[role], memory.rss)
            self.samples.append(
                (time.time() - self.started, peaks["driver"], peaks["worker"], peaks["ray"], tree)
            )

    def close(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join()
        return {
            "read_gib": sum(r for r, _ in self.io.values()) / GIB,
            "written_gib": sum(w for _, w in self.io.values()) / GIB,
        }

    def peaks(self, since: float = 0.0, until: float = math.inf) -> tuple[float, ...]:
        """Peak driver RSS, worker RSS, Ray RSS and tree PSS in GiB between two times."""
        within = [sample[1:] for sample in self.samples if since <= sample[0] <= until]
        return tuple(max(column) / GIB for column in zip(*within)) if within else (0.0,) * 4


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


def problem(args: argparse.Namespace, scratch: Path) -> list[str]:
    """The model and data overrides: ResNet-18 (or a zoo model) on synthetic images, or a GPT.

    ``--model tiny_gpt``: a decoder of ``--layers`` x ``--width`` on ``--samples`` sequences of
    ``--context`` tokens drawn from a random corpus of ``--vocab`` ids written to ``scratch``.
    """
    if args.model == "tiny_gpt":
        scratch.mkdir(parents=True, exist_ok=True)
        corpus = scratch / "corpus.npy"
        tokens = (args.samples + 1) * (args.context + 1)
        np.save(corpus, np.random.default_rng(0).integers(0, args.vocab, tokens).astype(np.int32))
        return [
            "model=tiny_gpt",
            f"model.vocab_size={args.vocab}",
            f"model.context={args.context}",
            f"model.layers={args.layers}",
            f"model.width={args.width}",
            f"model.heads={max(args.width // 64, 1)}",
            "data=tokens",
            f"data.root={corpus}",
            f"data.context={args.context}",
            f"data.subset={args.samples}",
            f"data.batch_size={args.batch_size}",
        ]
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
    ]


def overrides(args: argparse.Namespace, run_dir: Path) -> list[str]:
    return [
        *problem(args, run_dir.parent),
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
    parser.add_argument("--vocab", type=int, default=256, help="tiny_gpt: vocabulary")
    parser.add_argument("--context", type=int, default=32, help="tiny_gpt: tokens per sequence")
    parser.add_argument("--layers", type=int, default=8, help="tiny_gpt: blocks")
    parser.add_argument("--width", type=int, default=512, help="tiny_gpt: model width")
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
        sampler = TreeSampler(driver.pid, started)
        log, _ = driver.communicate()
        wall = time.time() - started
        io = sampler.close()
        if driver.returncode != 0:
            print(log[-4000:])
            return driver.returncode
        record = json.loads((run_dir / "results.json").read_text())
        report(record, stage_times(log, started, run_dir), wall, sampler, io)
    return 0


def report(
    record: dict, stages: list[tuple[str, float]], wall: float, sampler: TreeSampler, io: dict
) -> None:
    plan, actual = record["plan"], record["actual"]
    again = plan.get("calibrated", {})
    calibrated = (
        f", {again['wall_s']:.1f} s predicted after {again['on_matvecs']} products "
        f"({actual['wall_s'] / again['wall_s']:.2f}x)"
        if again
        else ""
    )
    print(
        f"\nD = {record['num_params']:,}, {record['num_samples']} samples, {record['matvecs']} "
        f"products, wall {wall:.1f} s (the run's own wall_time_s {record['wall_time_s']:.1f} s)"
    )
    print(
        "\n| stage ends | s since start | stage s | peak RSS GiB: driver | one worker "
        "| tree PSS GiB |\n| --- | --- | --- | --- | --- | --- |"
    )
    previous = 0.0
    for name, when in stages:
        driver, worker, _, tree = sampler.peaks(previous, when)
        print(
            f"| {name} | {when:.1f} | {when - previous:.1f} | {driver:.2f} | {worker:.2f} | "
            f"{tree:.2f} |"
        )
        previous = max(previous, when)
    driver, worker, ray, tree = sampler.peaks()
    rows = [
        ("driver peak RSS GiB", driver, plan["driver_bytes"] / GIB),
        ("one worker's peak RSS GiB", worker, plan["worker_bytes"] / GIB),
        ("Ray's own processes, largest peak RSS GiB", ray, None),
        ("whole tree peak PSS GiB", tree, None),
        ("store GiB", actual["store_bytes"] / GIB, plan["store_bytes"] / GIB),
        ("read() by the tree GiB", io["read_gib"], None),
        ("write() by the tree GiB", io["written_gib"], None),
    ]
    print("\n| memory and I/O | measured | predicted |\n| --- | --- | --- |")
    for name, measured, predicted in rows:
        print(f"| {name} | {measured:.2f} | {'-' if predicted is None else f'{predicted:.2f}'} |")
    print(
        f"\nplanner: {plan['wall_s']:.1f} s predicted (start-up {plan['startup_s']:.1f} s of it), "
        f"{actual['wall_s']:.1f} s taken up to the results "
        f"({actual['wall_s'] / plan['wall_s']:.2f}x){calibrated}; whole command {wall:.1f} s; "
        f"{plan['matvecs']} products predicted, {actual['matvecs']} spent; "
        f"{plan['seconds_per_matvec']:.3g} s per product at width {plan['block_width']}"
    )


if __name__ == "__main__":
    sys.exit(main())
