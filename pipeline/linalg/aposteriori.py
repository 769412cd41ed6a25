"""A-posteriori figures of an eigen-approximation H ~ V diag(lambda) V^T."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq

from pipeline.linalg.operator import Operator
from pipeline.linalg.probes import even_blocks, products_by_block
from pipeline.linalg.random_matrices import random_columns


def pair_residuals(
    op: Operator, values: torch.Tensor, vectors: torch.Tensor, block_size: int
) -> torch.Tensor:
    """Relative residuals ||H v_i - lambda_i v_i|| / |lambda_i| (k products).

    ||H v_i - lambda_i v_i|| / |lambda_i| for unit columns v_i of ``vectors`` (k products,
    announced: a one-off width is not worth timing the product modes for), each v_i taken at the
    products' precision: the vector H is applied to.
    """
    op.expect(vectors.shape[1])
    V = vectors.to(op.dtype)
    norms = torch.empty(V.shape[1], dtype=torch.float64)
    # a block of products at a time, its residual formed in place: no D x k temporaries
    for block, HV in products_by_block(op, V, block_size):
        for j, column in enumerate(range(block.start, block.stop)):
            HV[:, j].sub_(V[:, column], alpha=float(values[column]))
        norms[block] = torch.linalg.vector_norm(HV, dim=0).cpu()
    return norms / values.abs().clamp(min=1e-300)


@dataclass
class FrobeniusErrorEstimate:
    """est^2 = (1/q) sum_i ||(H - H_k) g_i||^2 with Gaussian g_i is unbiased for ||H - H_k||_F^2.

    est^2 / err^2 is a convex combination of chi^2_q / q variables, so Chernoff's bound
    P{X >= t} (t > 1) and P{X <= t} (t < 1) <= (t e^(1 - t))^(q/2) holds (Tropp et al. 2019,
    Sec. 6); ``low``/``high`` bound the true error with probability >= 1 - 2 * ``failure``.
    """

    estimate: float
    low: float
    high: float
    failure: float
    relative: float  # estimate / ||H||_F estimate from the same probes
    test_vectors: int


def chernoff_ratio(q: int, failure: float, upper: bool) -> float:
    """The t with (t e^(1-t))^(q/2) = failure on the upper (t > 1) or lower (t < 1) side."""

    def gap(t: float) -> float:
        return (q / 2) * (math.log(t) + 1 - t) - math.log(failure)

    return brentq(gap, 1.0, 1e6) if upper else brentq(gap, 1e-12, 1.0)


def frobenius_error(
    op: Operator,
    values: torch.Tensor,
    vectors: torch.Tensor,
    test_vectors: int,
    seed: int,
    block_size: int,
    failure: float = 0.05,
) -> FrobeniusErrorEstimate:
    """Estimate ||H - V diag(values) V^T||_F with Gaussian probes.

    Estimate ||H - V diag(values) V^T||_F with ``test_vectors`` Gaussian probes (that many products,
    announced as for ``pair_residuals``).
    """
    op.expect(test_vectors)
    V = vectors.to(op.dtype)  # at the products' precision, as H is applied
    values = values.to(dtype=torch.float64, device=V.device)
    est2 = norm2 = 0.0
    # a block of probes at a time, generated, applied and (H - H_k) G formed in place: neither G
    # nor a D x q temporary is held (D x q float64 was 3.2 GB beside D x k at D = 50M)
    for block in even_blocks(test_vectors, block_size):
        G = random_columns(
            "gaussian", seed, op.shape[0], range(block.start, block.stop), op.dtype, op.device
        )
        HG = (op @ G).to(torch.float64)
        norm2 += float(torch.linalg.vector_norm(HG)) ** 2 / test_vectors
        # V^T H_k g_i = diag(values) V^T g_i
        C = values[:, None] * (V.T @ G).to(torch.float64)
        HG.sub_((V @ C.to(V.dtype)).to(torch.float64))
        est2 += float(torch.linalg.vector_norm(HG)) ** 2 / test_vectors
    est = math.sqrt(est2)
    # est^2 / err^2 >= this w.p. 1 - failure
    high_ratio = chernoff_ratio(test_vectors, failure, upper=False)
    low_ratio = chernoff_ratio(test_vectors, failure, upper=True)
    return FrobeniusErrorEstimate(
        estimate=est,
        low=est / math.sqrt(low_ratio),
        high=est / math.sqrt(high_ratio),
        failure=failure,
        relative=est / math.sqrt(norm2) if norm2 > 0 else float("nan"),
        test_vectors=test_vectors,
    )


def as_dict(estimate: FrobeniusErrorEstimate) -> dict[str, float]:
    """The estimate as a JSON-ready dict of plain floats."""
    return {
        k: float(v) if isinstance(v, (float, np.floating)) else v
        for k, v in estimate.__dict__.items()
    }
