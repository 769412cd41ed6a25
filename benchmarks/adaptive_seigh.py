"""Adaptive SEIGH (grow the sketch until the top-k residuals meet a target) against fixed-size
sketches, in products, on a synthetic operator with a known spectrum and on the paper's MLP.

For each problem: the adaptive run's products (every new column once, plus k residual products
per step); the oracle fixed sketch, the smallest size on the same growth ladder that meets the
target when run once (nO + nI + k products: what a user who guessed right would spend); and the
paper's fixed 355/710 with the residual it reaches.

    python benchmarks/adaptive_seigh.py [--target 1e-2] [--k 10]
"""

from __future__ import annotations

import argparse
import time

import torch

from pipeline.curvature import HessianOperator
from pipeline.data.subsets import batches
from pipeline.linalg import LowRankPlusDiagonalOperator, adaptive_seigh, seigh

from common import digits_problem


def synthetic(dim: int = 20_000, rank: int = 400, seed: int = 0) -> LowRankPlusDiagonalOperator:
    """Eigenvalues +-i^-1 (alternating signs) on a random rank-400 subspace plus a 1e-4 tail."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(dim, rank, generator=gen, dtype=torch.float64))
    s = torch.arange(1, rank + 1, dtype=torch.float64) ** -1.0 * torch.tensor([1.0, -1.0]).repeat(
        rank // 2
    )
    return LowRankPlusDiagonalOperator(U, s, torch.full((dim,), 1e-4, dtype=torch.float64))


def paper_mlp() -> HessianOperator:
    model, loss_fn, x, y = digits_problem(
        (256, 20, 20, 20, 20, 20, 10), samples=500, train_steps=300
    )
    return HessianOperator(model.double(), loss_fn, batches(x.double(), y, 250))


def compare(name: str, op, k: int, target: float, start: int) -> None:
    options = dict(seed=0, block_size=8, error_test_vectors=0)
    began = time.perf_counter()
    adaptive = adaptive_seigh(op, k, target, start_outer=start, growth=1.5, **options)
    seconds = time.perf_counter() - began
    steps = adaptive.info["adaptive"]
    oracle = None
    for step in steps:  # the same ladder, each size run once from scratch
        fixed = seigh(op, k, step["outer"], step["inner"], tol=target, warn=False, **options)
        if float(fixed.residuals.max()) <= target:
            oracle = (step["outer"], step["inner"], fixed.matvecs)
            break
    paper = seigh(op, k, 355, 710, tol=target, warn=False, **options) if op.shape[0] > 710 else None
    print(f"\n{name}: D = {op.shape[0]:,}, k = {k}, target top-{k} residual {target:g}")
    print(
        f"  adaptive: {len(steps)} steps to nO/nI = {steps[-1]['outer']}/{steps[-1]['inner']}, "
        "worst residual "
        f"{steps[-1]['worst_residual']:.2e}, {adaptive.info['adaptive_matvecs']} products "
        f"({seconds:.1f} s)"
    )
    if oracle:
        print(
            f"  oracle fixed sketch: nO/nI = {oracle[0]}/{oracle[1]}, {oracle[2]} products -> "
            "adaptive / oracle = "
            f"{adaptive.info['adaptive_matvecs'] / oracle[2]:.2f}"
        )
    if paper is not None:
        print(
            f"  paper's fixed 355/710: {paper.matvecs} products, worst residual "
            f"{float(paper.residuals.max()):.2e} "
            f"-> adaptive / paper = {adaptive.info['adaptive_matvecs'] / paper.matvecs:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=float, default=1e-2)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    compare("synthetic, eigenvalues +-1/i", synthetic(), args.k, args.target, start=2 * args.k)
    compare(
        "paper's tanh-MLP on 500 digits (trained 300 steps)",
        paper_mlp(),
        args.k,
        args.target,
        start=2 * args.k,
    )


if __name__ == "__main__":
    main()
