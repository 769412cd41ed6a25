"""A measured block's write beside the next products: through Zarr against the chunk files.

In process, SEIGH writes each measured (D, block) float32 block in a background thread while the
next products run on the same cores. This script writes one such block of ResNet-18's
D = 11,689,512 rows into a run store both ways, alone and beside a product of ``--width`` columns
on the rehearsal's data (32 random 3x32x32 samples in batches of 16), alternating the two ways
``--rounds`` times in one process:

    python benchmarks/block_writes.py [--block 16] [--width 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from functools import partial

import torch
from torch import nn

from pipeline.curvature import HessianOperator
from pipeline.models.resnet import ResNet18
from pipeline.store import RunStore

ROW_CHUNK = 1 << 20


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=16)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = ResNet18(num_classes=1000)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 1000, (32,))
    op = HessianOperator(
        model, nn.CrossEntropyLoss(), [(x[:16], y[:16]), (x[16:], y[16:])], product_mode="auto"
    )
    dim = op.shape[0]
    V = torch.randn(dim, args.width)
    block = torch.randn(dim, args.block)
    op @ V  # the mode choice and one-off costs
    with tempfile.TemporaryDirectory(prefix="block-writes-") as directory:
        columns = RunStore(directory + "/store.zarr").columns(
            "inner", dim, 2 * args.block, args.block, torch.float32, ROW_CHUNK
        )
        chunk_files = columns.chunk_io
        ways = {"Zarr": None, "chunk files": chunk_files}
        rows = {name: [] for name in ["product alone", *ways]}
        for _ in range(args.rounds):
            rows["product alone"].append((timed(lambda: op @ V),))
            for index, (name, io) in enumerate(ways.items()):
                columns.chunk_io = io
                write = partial(
                    columns.write, range(index * args.block, (index + 1) * args.block), block
                )
                alone = timed(write)
                thread = threading.Thread(target=write)
                start = time.perf_counter()
                thread.start()
                product = timed(lambda: op @ V)
                thread.join()
                rows[name].append((product, alone, time.perf_counter() - start))
    print(
        f"D = {dim:,}, a block of {args.block} columns ({dim * args.block * 4 / 2**20:.0f} MiB), "
        f"products of {args.width} columns, {torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    print("| write | product s (beside the write) | write alone s | product and write s |")
    print("| --- | --- | --- | --- |")
    for name, figures in rows.items():
        cells = [
            ", ".join(f"{f[i]:.2f}" for f in figures) if i < len(figures[0]) else "-"
            for i in range(3)
        ]
        print(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} |")


if __name__ == "__main__":
    main()
