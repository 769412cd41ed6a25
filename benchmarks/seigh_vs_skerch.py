"""SEIGH: ours vs skerch's seigh (oversampled recovery) on the same operators, in one run.

Problems: the paper's tanh-MLP (7,030 parameters) trained on 500 digits, nO/nI = 355/710; and a
synthetic low-rank-plus-tail operator with D = 200,000, nO/nI = 100/200. Reference: our Lanczos at
tol 1e-8. Usage: python benchmarks/seigh_vs_skerch.py   (pip install -e .[bench])
"""

from __future__ import annotations

import time

import numpy as np
import torch

from pipeline.curvature import HessianOperator
from pipeline.data.subsets import batches
from pipeline.linalg import LowRankPlusDiagonalOperator, lanczos, seigh

from common import digits_problem


def relative_error(values, reference) -> float:
    values = np.sort(np.abs(np.asarray(values, dtype=np.float64)))[::-1][: len(reference)]
    return float(np.max(np.abs(values - reference) / reference))


def compare(name: str, op, k: int, outer: int, inner: int, block: int) -> None:
    reference = np.abs(lanczos(op, k, tol=1e-8).eigenvalues.numpy())
    rows = []
    for recycled, label in ((False, "(independent Omega, Psi)"), (True, "recycled")):
        before, start = op.matvecs, time.perf_counter()
        ours = seigh(
            op,
            k,
            outer,
            inner,
            seed=0,
            block_size=block,
            recycled=recycled,
            residuals=False,
            error_test_vectors=0,
            progress=False,
        )
        seconds = time.perf_counter() - start
        rows.append(
            (f"ours: seigh {label}", seconds, op.matvecs - before, ours.eigenvalues.numpy())
        )
    try:
        import skerch.algorithms as sk
    except ImportError:
        print(f"{name}: skerch not installed; pip install -e .[bench]")
    else:
        before, start = op.matvecs, time.perf_counter()
        values, _ = sk.seigh(
            op,
            op.device,
            op.dtype,
            outer,
            seed=0,
            noise_type="rademacher",
            recovery_type=f"oversampled_{inner}",
            meas_blocksize=block,
        )
        rows.append(
            (
                "skerch 1.2 seigh (oversampled)",
                time.perf_counter() - start,
                op.matvecs - before,
                values.cpu().numpy(),
            )
        )
    print(f"\n{name}: D={op.shape[0]:,}, k={k}, nO={outer}, nI={inner}, block={block}")
    print("method | wall s | products | max rel. error of top-k |lambda|")
    for method, seconds, products, values in rows:
        print(f"{method} | {seconds:.2f} | {products} | {relative_error(values, reference):.2e}")


def main() -> None:
    model, loss_fn, x, y = digits_problem(
        (256, 20, 20, 20, 20, 20, 10), samples=500, train_steps=300
    )
    compare(
        "tanh-MLP on digits (trained)",
        HessianOperator(model, loss_fn, batches(x, y, 250)),
        10,
        355,
        710,
        71,
    )
    torch.manual_seed(0)
    dim, rank = 200_000, 60
    U, _ = torch.linalg.qr(torch.randn(dim, rank))
    spectrum = torch.cat(
        [
            torch.logspace(2, 0, 20) * torch.tensor([1.0, -1.0] * 10),
            torch.linspace(0.5, 0.05, rank - 20),
        ]
    )
    compare(
        "synthetic low rank + tail",
        LowRankPlusDiagonalOperator(U, spectrum, 1e-3 * torch.randn(dim)),
        10,
        100,
        200,
        25,
    )


if __name__ == "__main__":
    main()
