"""SEIGH post-processing against the machine's limits, old path vs new, side by side in one run.

A synthetic operator U diag(s) U^T + diag(d) (float32) is measured once into a Zarr store; then
post-processing alone (a complete store: no products, no residuals) runs in a fresh subprocess
per path, so each path's peak RSS and bytes read are its own:
  new          torch on the compute device: CholeskyQR2, read-ahead (this checkout);
  householder  the same, with the Householder TSQR fallback forced;
  old          the numpy Householder path of an earlier commit (``--old-src``, a git worktree), on
               a store it measured itself (its test matrices were generated differently).
Each path runs twice in its subprocess: the first in a fresh process (on a VM whose fresh memory
is slow to touch, that costs seconds), the second warm ("warm" columns). Reference figures from
the same run: float64 matmul GFLOP/s (torch and numpy, row-block-sized
operands) and the raw read throughput of the store's chunk files.
Usage: python benchmarks/seigh_postprocess.py --dir /tmp/pp --dim 1000000 --outer 100 --recycled \
           [--old-src /tmp/hp-old]   (git worktree add /tmp/hp-old 2a38c93)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH_SEED = 0


def operator(dim: int):
    from pipeline.linalg import LowRankPlusDiagonalOperator

    gen = torch.Generator().manual_seed(BENCH_SEED)
    rank = 20
    U, _ = torch.linalg.qr(torch.randn(dim, rank, generator=gen))
    spectrum = torch.cat(
        [
            torch.tensor([50.0, -40, 30, 25, -20, 15, 12, 10, -8, 6]),
            torch.linspace(1, 0.1, rank - 10),
        ]
    )
    return LowRankPlusDiagonalOperator(U, spectrum, 1e-3 * torch.randn(dim, generator=gen))


class ShapeOnly:
    """Stands in for the operator when the store is complete: post-processing needs only D and
    the dtype (a product would be a bug here)."""

    def __init__(self, dim: int):
        self.shape, self.dtype, self.device, self.matvecs = (
            (dim, dim),
            torch.float32,
            torch.device("cpu"),
            0,
        )

    def expect(self, products: int) -> None:
        """Announced work: nothing to prepare."""

    def __matmul__(self, v):
        raise AssertionError("post-processing of a complete store must not make products")


def seigh_options(args) -> dict:
    return dict(
        k=10,
        outer=args.outer,
        inner=2 * args.outer,
        seed=0,
        block_size=args.block,
        recycled=args.recycled,
        memory_bytes=int(args.memory_gb * 2**30),
        residuals=False,
        error_test_vectors=0,
        progress=False,
    )


def run_path(args) -> None:
    """Subprocess: time post-processing of the complete store; print one JSON line."""
    if args.path.startswith("old"):
        sys.meta_path = [
            f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
        ]
        sys.path.insert(0, args.old_src)
    from pipeline.linalg import seigh
    from pipeline.store import RunStore

    store = Path(args.dir) / ("old.zarr" if args.path.startswith("old") else "store.zarr")
    if args.path == "old-measure":  # the old code's own test matrices: it measures its own store
        seigh(operator(args.dim), store=RunStore(store), **seigh_options(args))
        print(json.dumps({}))
        return

    if args.path == "householder":
        from pipeline.linalg import recovery

        recovery._cholesky_factor = lambda *a: (None, 0)
    seconds = []
    for _ in range(2):  # in this fresh process, then again in it (its memory touched once)
        # a completed run would otherwise be reused, not recomputed
        if hasattr(RunStore, "forget_result"):
            RunStore(store).forget_result()
        read_before = _bytes_read()
        start = time.perf_counter()
        result = seigh(ShapeOnly(args.dim), store=RunStore(store), **seigh_options(args))
        seconds.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "path": args.path,
                "seconds": seconds[0],
                "warm_seconds": seconds[1],
                "read_bytes": _bytes_read() - read_before,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "info": result.info,
                "eigenvalues": [float(v) for v in result.eigenvalues],
            }
        )
    )


def _bytes_read() -> int:
    with open("/proc/self/io") as handle:
        return int(next(line for line in handle if line.startswith("rchar")).split()[1])


def flops(path: str, info: dict, dim: int, outer: int, inner: int, k: int, recycled: bool) -> float:
    """Float64 flops of a path's passes (gemm 2mnk, triangular solve m n^2, QR 2mn^2 - 2n^3/3)."""
    m_total = dim
    project = 2 * dim * inner * inner + (0 if recycled else 2 * dim * inner * outer)
    if path == "new" and info.get("qr") == "cholesky":
        return (
            project
            + 2 * dim * outer**2
            + (dim * outer**2 + 2 * dim * outer**2)
            + 2 * dim * outer * k
        )
    householder_qr = 2 * m_total * outer**2
    if path == "old":  # Q_i <- Q_i Q2_i rewrite, Psi Q from Q, V = Q U
        return (
            householder_qr
            + 2 * dim * outer**2
            + project
            + 2 * dim * inner * outer
            + 2 * dim * outer * k
        )
    return (
        householder_qr
        + project
        + 2 * dim * inner * outer
        + 2 * dim * outer**2
        + 2 * dim * outer * k
    )


def matmul_rate(rows: int, cols: int) -> dict[str, float]:
    """GFLOP/s of A^T B for (rows x cols) float64 operands, torch and numpy (best of 3)."""
    a = torch.randn(rows, cols, dtype=torch.float64)
    b = torch.randn(rows, cols, dtype=torch.float64)
    rates = {}
    for name, fn in (("torch", lambda: a.T @ b), ("numpy", lambda: a.numpy().T @ b.numpy())):
        fn()
        best = min(_timed(fn) for _ in range(3))
        rates[name] = 2 * rows * cols * cols / best / 1e9
    return rates


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_read(path: Path) -> tuple[int, float]:
    """(bytes, seconds) reading every chunk file under ``path`` with 8 MiB reads."""
    total, start = 0, time.perf_counter()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb", buffering=0) as handle:
            while chunk := handle.read(8 << 20):
                total += len(chunk)
    return total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", required=True)
    parser.add_argument("--dim", type=int, default=1_000_000)
    parser.add_argument("--outer", type=int, default=100)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--memory-gb", type=float, default=1.0)
    parser.add_argument("--recycled", action="store_true")
    parser.add_argument("--old-src", help="checkout of the old path (git worktree add DIR 2a38c93)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of each path (best is reported)"
    )
    parser.add_argument(
        "--paths", default="old,householder,new", help="comma-separated subset, run in this order"
    )
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.path:
        return run_path(args)

    from pipeline.linalg import seigh
    from pipeline.store import RunStore

    shutil.rmtree(args.dir, ignore_errors=True)
    Path(args.dir).mkdir(parents=True)
    options = seigh_options(args)
    start = time.perf_counter()
    measured = seigh(operator(args.dim), store=RunStore(Path(args.dir) / "store.zarr"), **options)
    print(
        f"D={args.dim:,} nO={args.outer} nI={2 * args.outer} recycled={args.recycled} "
        f"threads={torch.get_num_threads()} "
        f"device={measured.info['device']}; measurement + first post-processing "
        f"{time.perf_counter() - start:.1f} s, "
        f"{measured.info['row_blocks']} row blocks"
    )
    store = Path(args.dir) / "store.zarr"
    read_bytes, read_seconds = raw_read(store / "inner")
    rows = args.dim // measured.info["row_blocks"]
    rates = matmul_rate(rows, 2 * args.outer)
    raw = read_bytes / read_seconds / 2**20
    print(
        f"machine: float64 matmul ({rows} x {2 * args.outer})^T: torch {rates['torch']:.1f} "
        f"GFLOP/s, numpy {rates['numpy']:.1f} GFLOP/s; "
        f"raw read of the store's measurement chunk files {read_bytes / 2**30:.2f} GiB at "
        f"{raw:.0f} MiB/s"
    )
    paths = [path for path in args.paths.split(",") if path != "old" or args.old_src]
    print(
        "| path | wall s | GFLOP/s | % of matmul peak | warm: wall s | warm: % of matmul peak "
        "| read MiB/s | % of raw read | peak RSS GiB | QR | "
        "max rel. diff of the top-10 vs new (old: its own test matrices) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows_by_path: dict[str, dict] = {}

    def run(path: str) -> dict:
        command = [sys.executable, __file__, *sys.argv[1:], "--path", path]
        out = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    if "old" in paths:
        run("old-measure")
    for _ in range(args.repeats):  # alternating paths, best of the repeats: fair on a noisy machine
        for path in paths:
            row = run(path)
            if path not in rows_by_path or row["seconds"] < rows_by_path[path]["seconds"]:
                rows_by_path[path] = row
    reference = np.array(rows_by_path["new"]["eigenvalues"])
    for path in ["new", "householder", "old"]:
        if path not in rows_by_path:
            continue
        row = rows_by_path[path]
        values = np.array(row["eigenvalues"])
        work = flops(path, row["info"], args.dim, args.outer, 2 * args.outer, 10, args.recycled)
        gflops, warm = work / row["seconds"] / 1e9, work / row["warm_seconds"] / 1e9
        mib = row["read_bytes"] / row["warm_seconds"] / 2**20
        print(
            f"| {path} | {row['seconds']:.1f} | {gflops:.1f} | "
            f"{100 * gflops / rates['torch']:.0f}% | {row['warm_seconds']:.1f} | "
            f"{100 * warm / rates['torch']:.0f}% | {mib:.0f} | {100 * mib / raw:.0f}% | "
            f"{row['peak_rss'] / 2**30:.2f} | {row['info'].get('qr', 'householder (numpy)')} | "
            f"{np.max(np.abs(values - reference) / np.abs(reference)):.1e} |"
        )


if __name__ == "__main__":
    main()
