"""Spectral density by SLQ against its own floor: the wall time of ``slq_density`` (P probes x m
Lanczos steps, full reorthogonalisation in float64) next to the products alone (m block products
of width P on the same operator), and the density's accuracy against the known spectrum.

    python benchmarks/slq_density.py                       # D = 20,000 and 200,000
    python benchmarks/slq_density.py --dims 1000000 --probes 4

The ratio wall / products is the price of the Lanczos kernel (reorthogonalisation costs D m^2 P
flops against the operator's m products); on a network-sized Hessian the products dominate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.integrate import trapezoid

from pipeline.linalg import LowRankPlusDiagonalOperator, slq_density


def operator(
    dim: int, rank: int = 50, seed: int = 0
) -> tuple[LowRankPlusDiagonalOperator, np.ndarray]:
    """U diag(s) U^T + diag(d) with a known spectrum: r outliers over a bulk in [0, 0.1]."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(dim, rank, generator=gen, dtype=torch.float64))
    s = torch.linspace(1, 10, rank, dtype=torch.float64)
    d = 0.1 * torch.rand(dim, generator=gen, dtype=torch.float64)
    return LowRankPlusDiagonalOperator(U, s, d), s.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    print(
        "| D | probes x steps | SLQ wall s | products alone s | wall / products | tr H rel. error "
        "| mass above 0.5 (true r/D) |"
    )
    print("|---|---|---|---|---|---|---|")
    for dim in args.dims:
        op, outliers = operator(dim)
        V = torch.randn(dim, args.probes, dtype=torch.float64)
        start = time.perf_counter()
        for _ in range(args.steps):
            op @ V
        products = time.perf_counter() - start
        start = time.perf_counter()
        density = slq_density(op, args.probes, args.steps, seed=0)
        wall = time.perf_counter() - start
        # tr(U diag(s) U^T) = sum(s) for orthonormal U
        true_trace = float(outliers.sum() + op.d.sum())
        estimate = trapezoid(density.grid * density.density, density.grid) * dim
        above = trapezoid(np.where(density.grid > 0.5, density.density, 0), density.grid)
        print(
            f"| {dim:,} | {args.probes} x {args.steps} | {wall:.2f} | {products:.2f} | "
            f"{wall / products:.1f} | "
            f"{abs(estimate - true_trace) / true_trace:.1e} | {above:.2e} "
            f"({len(outliers) / dim:.2e}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
