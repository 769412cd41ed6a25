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
from torch import nn

from pipeline.curvature import HessianOperator
from pipeline.linalg import lanczos, power_iteration

from common import count_calls, digits_problem


def relative_errors(values, reference) -> float:
    values = np.sort(np.abs(np.asarray(values, dtype=np.float64)))[::-1]
    return float(np.max(np.abs(values - reference) / reference))


def true_residuals(op: HessianOperator, values, vectors: torch.Tensor) -> float:
    """max_i ||H v_i - lambda_i v_i|| / |lambda_i| for unit v_i (k extra products, not timed)."""
    V = vectors.to(op.dtype)
    V = V if V.shape[0] == op.shape[0] else V.T  # some libraries return (k, D)
    V = V / V.norm(dim=0)
    values = torch.as_tensor(np.asarray(values), dtype=op.dtype)
    return float(((op @ V - V * values).norm(dim=0) / values.abs()).max())


def run_ours(op, k, tol, ncv, seed=0):
    before = op.matvecs
    start = time.perf_counter()
    result = lanczos(op, k, tol=tol, ncv=ncv, seed=seed)
    return time.perf_counter() - start, op.matvecs - before, result.eigenvalues.numpy(), result.eigenvectors


def run_power(op, k, tol):
    before = op.matvecs
    start = time.perf_counter()
    result = power_iteration(op, k, tol=tol)
    return time.perf_counter() - start, op.matvecs - before, result.eigenvalues.numpy(), result.eigenvectors


def run_pyhessian(model, loss_fn, x, y, k, tol):
    import importlib

    ph = importlib.import_module("pyhessian.hessian")  # the package re-exports a class of that name

    original = ph.hessian_vector_product
    calls = count_calls(ph, "hessian_vector_product")
    try:
        start = time.perf_counter()
        computer = ph.hessian(model, loss_fn, data=(x, y), cuda=False)
        values, vectors = computer.eigenvalues(top_n=k, tol=tol, maxIter=100)
        elapsed = time.perf_counter() - start
    finally:
        ph.hessian_vector_product = original
    flat = torch.stack([torch.cat([t.reshape(-1) for t in vec]) for vec in vectors], dim=1)
    return elapsed, calls["n"], np.asarray(values), flat


def run_eigenthings(model, loss_fn, x, y, k, tol, max_iter):
    import hessian_eigenthings as he

    op = he.HessianOperator(model, [(x, y)], he.supervised_loss(loss_fn))
    calls = count_calls(op, "matvec")
    start = time.perf_counter()
    result = he.lanczos(op, k=k, tol=tol, max_iter=max_iter, reorthogonalize=True, seed=0)
    elapsed = time.perf_counter() - start
    return elapsed, calls["n"], result.eigenvalues.detach().cpu().numpy(), result.eigenvectors.detach()


def run_curvlinops(model, loss_fn, x, y, k, tol):
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import eigsh

    params = [p for p in model.parameters() if p.requires_grad]
    criterion = nn.CrossEntropyLoss()  # curvlinops reads the reduction off a loss module
    op = HessianLinearOperator(model, criterion, params, [(x, y)], progressbar=False, check_deterministic=False)
    scipy_op = op.to_scipy()
    calls = count_calls(scipy_op, "_matvec")
    start = time.perf_counter()
    values, vectors = eigsh(scipy_op, k=k, which="LM", tol=tol)
    elapsed = time.perf_counter() - start
    return elapsed, calls["n"], values, torch.from_numpy(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--ncv", type=int, default=None, help="our Lanczos basis size (default: library default)")
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, loss_fn, x, y = digits_problem((256, 256, 128, 10), samples=args.samples)
    op = HessianOperator(model, loss_fn, [(x, y)])
    reference = lanczos(op, args.k, tol=1e-9).eigenvalues.abs().numpy()
    print(f"model: tanh-MLP 256-256-128-10, D={op.shape[0]}, N={args.samples} digits, float32, CPU threads={torch.get_num_threads()}")
    print(f"top-{args.k} |lambda|: {reference[0]:.4g} .. {reference[-1]:.4g}; target relative residual {args.tol:g}")
    ror = HessianOperator(model, loss_fn, [(x, y)], hvp_mode="reverse-over-reverse")
    runs = {
        "ours: lanczos, forward-over-reverse": lambda: run_ours(op, args.k, args.tol, args.ncv),
        "ours: lanczos, reverse-over-reverse": lambda: run_ours(ror, args.k, args.tol, args.ncv),
        "ours: power iteration": lambda: run_power(op, args.k, args.tol),
    }
    optional = {
        "PyHessian 0.1 (power)": lambda: run_pyhessian(model, loss_fn, x, y, args.k, args.tol),
        "hessian-eigenthings lanczos (max_iter=2k)": lambda: run_eigenthings(model, loss_fn, x, y, args.k, args.tol, 2 * args.k),
        "hessian-eigenthings lanczos (max_iter=3k)": lambda: run_eigenthings(model, loss_fn, x, y, args.k, args.tol, 3 * args.k),
        "curvlinops + scipy eigsh": lambda: run_curvlinops(model, loss_fn, x, y, args.k, args.tol),
    }
    counts = [run_ours(op, args.k, args.tol, args.ncv, seed)[1] for seed in range(5)]
    print(f"ours, HVPs over start-vector seeds 0-4: {counts} (mean {np.mean(counts):.1f})")
    print("method | HVPs | wall s | max rel eigenvalue error | max true rel residual")
    for name, run in {**runs, **optional}.items():
        try:
            elapsed, matvecs, values, vectors = run()
        except ImportError as error:
            print(f"{name} | not installed ({error.name}); pip install -e .[bench]")
            continue
        print(f"{name} | {matvecs} | {elapsed:.2f} | {relative_errors(values, reference):.2e} | {true_residuals(op, values, vectors):.2e}")


if __name__ == "__main__":
    main()
