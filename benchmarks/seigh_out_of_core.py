"""SEIGH out of core at ResNet-18 size: peak RSS of post-processing and its read throughput.

A synthetic operator U diag(s) U^T + diag(d) with D = 11,689,512 (float32); nO is chosen so
that Y = H Omega exceeds half of this machine's RAM. Post-processing (TSQR, Psi Q and Z, V = Q U)
must keep peak RSS bounded by a few row blocks, independent of nO x D.
Usage: python benchmarks/seigh_out_of_core.py --dir /path/with/60GB [--outer 257] [--recycled]
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path

import psutil
import torch

from pipeline.linalg import LowRankPlusDiagonalOperator, seigh
from pipeline.store import RunStore

RESNET18_PARAMS = 11_689_512


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds; ``peak_since(t)`` after time t."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.interval, self.running = interval, True

    def run(self) -> None:
        process = psutil.Process()
        while self.running:
            self.samples.append((time.perf_counter(), process.memory_info().rss))
            time.sleep(self.interval)

    def peak_between(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def read_bandwidth(path: Path, limit_bytes: int) -> float:
    """Bytes/s reading the chunk files under ``path`` (up to ``limit_bytes``) with 8 MB reads."""
    total, start = 0, time.perf_counter()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb", buffering=0) as handle:
            while chunk := handle.read(8 << 20):
                total += len(chunk)
        if total >= limit_bytes:
            break
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dir", required=True, help="directory for the Zarr store (needs ~4.2 x D x nO bytes)"
    )
    parser.add_argument("--dim", type=int, default=RESNET18_PARAMS)
    parser.add_argument(
        "--outer", type=int, default=None, help="default: Y larger than half the RAM"
    )
    parser.add_argument("--block", type=int, default=16)
    parser.add_argument(
        "--memory-gb", type=float, default=1.0, help="post-processing row-block budget"
    )
    parser.add_argument(
        "--recycled", action="store_true", help="Omega = first nO columns of Psi^T (nI products)"
    )
    args = parser.parse_args()
    ram = psutil.virtual_memory().total
    outer = args.outer or int(ram / 2 / (4 * args.dim)) + 1
    inner = 2 * outer
    torch.manual_seed(0)
    rank = 20
    U, _ = torch.linalg.qr(torch.randn(args.dim, rank))
    spectrum = torch.cat(
        [
            torch.tensor([50.0, -40, 30, 25, -20, 15, 12, 10, -8, 6]),
            torch.linspace(1, 0.1, rank - 10),
        ]
    )
    op = LowRankPlusDiagonalOperator(U, spectrum, 1e-3 * torch.randn(args.dim))
    url = Path(args.dir) / "seigh_bench.zarr"
    shutil.rmtree(url, ignore_errors=True)
    sampler = RssSampler()
    sampler.start()
    last_block = [0.0]
    start = time.perf_counter()
    result = seigh(
        op,
        10,
        outer,
        inner,
        seed=0,
        store=RunStore(url),
        block_size=args.block,
        recycled=args.recycled,
        memory_bytes=int(args.memory_gb * 2**30),
        residuals=True,
        error_test_vectors=4,
        progress=True,
        on_block=lambda name, cols: last_block.__setitem__(0, time.perf_counter()),
    )
    end = time.perf_counter()
    sampler.running = False
    y_bytes = args.dim * outer * 4
    measured_bytes = args.dim * (inner + (0 if args.recycled else outer)) * 4
    q_bytes = args.dim * outer * 8
    # measurements once, Q three times (two TSQR passes, V = Q U)
    post_read = measured_bytes + 3 * q_bytes
    post_seconds = end - last_block[0]
    bandwidth = read_bandwidth(url / "inner", 8 * 2**30)
    print(
        f"D={args.dim:,} nO={outer} nI={inner} recycled={args.recycled} block={args.block} "
        f"RAM={ram / 2**30:.1f} GiB"
    )
    print(
        f"Y (D x nO float32) = {y_bytes / 2**30:.1f} GiB = {y_bytes / ram:.0%} of RAM; store on "
        "disk "
        f"{sum(f.stat().st_size for f in url.rglob('*') if f.is_file()) / 2**30:.1f} GiB"
    )
    print(
        f"measurement: {last_block[0] - start:.0f} s; peak RSS "
        f"{sampler.peak_between(start, last_block[0]) / 2**30:.2f} GiB"
    )
    print(
        f"post-processing incl. {10 + 4} a-posteriori products: {post_seconds:.0f} s; peak RSS "
        f"{sampler.peak_between(last_block[0], end) / 2**30:.2f} GiB (operator itself "
        f"{U.numel() * 4 / 2**30:.2f} GiB, "
        f"row blocks {result.info['row_blocks']}, budget {args.memory_gb} GiB)"
    )
    print(
        f"post-processing read {post_read / 2**30:.0f} GiB at "
        f"{post_read / post_seconds / 2**20:.0f} MiB/s; "
        f"raw read of the store's chunk files {bandwidth / 2**20:.0f} MiB/s; ratio "
        f"{bandwidth / (post_read / post_seconds):.2f}"
    )
    print(
        "top eigenvalues",
        [round(float(v), 3) for v in result.eigenvalues],
        "max residual",
        float(result.residuals.max()),
    )
    shutil.rmtree(url, ignore_errors=True)


if __name__ == "__main__":
    main()
