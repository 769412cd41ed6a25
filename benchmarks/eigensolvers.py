"""Top-20 Hessian eigenpairs to relative residual 1e-3 on a ~10^5-parameter model: products and
wall time of our Lanczos vs power iteration, PyHessian, hessian-eigenthings and curvlinops +
scipy eigsh, on the same model and data in one run.

Goal (DESIGN.md): <= 60 HVPs for the top 20 (power iteration needs ~350).
Usage: python benchmarks/eigensolvers.py [--k 20] [--tol 1e-3]   (pip install -e .[bench])
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.curvature import HessianOperator
from pipeline.linalg import lanczos, power_iteration

import peer_runs
from common import digits_problem


def relative_errors(values, reference) -> float:
    values = np.sort(np.abs(np.asarray(values, dtype=np.float64)))[::-1]
    return float(np.max(np.abs(values - reference) / reference))


def run_ours(op, k, tol, ncv, seed=0):
    before = op.matvecs
    start = time.perf_counter()
    result = lanczos(op, k, tol=tol, ncv=ncv, seed=seed)
    return (
        time.perf_counter() - start,
        op.matvecs - before,
        (result.eigenvalues.numpy(), result.eigenvectors),
    )


def run_power(op, k, tol):
    before = op.matvecs
    start = time.perf_counter()
    result = power_iteration(op, k, tol=tol)
    return (
        time.perf_counter() - start,
        op.matvecs - before,
        (result.eigenvalues.numpy(), result.eigenvectors),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument(
        "--ncv", type=int, default=None, help="our Lanczos basis size (default: library default)"
    )
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, loss_fn, x, y = digits_problem((256, 256, 128, 10), samples=args.samples)
    op = HessianOperator(model, loss_fn, [(x, y)])
    reference = lanczos(op, args.k, tol=1e-9).eigenvalues.abs().numpy()
    print(
        f"model: tanh-MLP 256-256-128-10, D={op.shape[0]}, N={args.samples} digits, float32, CPU "
        f"threads={torch.get_num_threads()}"
    )
    print(
        f"top-{args.k} |lambda|: {reference[0]:.4g} .. {reference[-1]:.4g}; target relative "
        f"residual {args.tol:g}"
    )
    ror = HessianOperator(model, loss_fn, [(x, y)], product_mode="reverse-over-reverse")
    runs = {
        "ours: lanczos, forward-over-reverse": lambda: run_ours(op, args.k, args.tol, args.ncv),
        "ours: lanczos, reverse-over-reverse": lambda: run_ours(ror, args.k, args.tol, args.ncv),
        "ours: power iteration": lambda: run_power(op, args.k, args.tol),
    }
    batches = [(x, y)]
    optional = {
        "PyHessian 0.1 (power)": lambda: peer_runs.pyhessian_top(model, batches, args.k, args.tol),
        "hessian-eigenthings lanczos (max_iter=2k)": lambda: peer_runs.eigenthings_top(
            model, batches, loss_fn, args.k, args.tol, 2 * args.k
        ),
        "hessian-eigenthings lanczos (max_iter=3k)": lambda: peer_runs.eigenthings_top(
            model, batches, loss_fn, args.k, args.tol, 3 * args.k
        ),
        "curvlinops + scipy eigsh": lambda: peer_runs.curvlinops_top(
            model, batches, args.k, args.tol
        ),
    }
    counts = [run_ours(op, args.k, args.tol, args.ncv, seed)[1] for seed in range(5)]
    print(f"ours, HVPs over start-vector seeds 0-4: {counts} (mean {np.mean(counts):.1f})")
    print("method | HVPs | wall s | max rel eigenvalue error | max true rel residual")
    for name, run in {**runs, **optional}.items():
        try:
            elapsed, matvecs, (values, vectors) = run()
        except ImportError as error:
            print(f"{name} | not installed ({error.name}); pip install -e .[bench]")
            continue
        residual = peer_runs.true_residuals(op, values, vectors).max()
        print(
            f"{name} | {matvecs} | {elapsed:.2f} | {relative_errors(values, reference):.2e} | "
            f"{residual:.2e}"
        )


if __name__ == "__main__":
    main()
