"""Stochastic trace estimators: Hutchinson and Hutch++ (Meyer, Musco, Musco, Woodruff 2021)."""

from __future__ import annotations

import math

import torch

from pipeline.errors import InputError
from pipeline.linalg.operator import Operator
from pipeline.linalg.probes import apply_in_blocks, probe_quadratic_forms
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.result import TraceEstimate
from pipeline.linalg.validation import check_positive


def hutchinson_trace(
    op: Operator,
    num_matvecs: int,
    seed: int = 0,
    block_size: int = 32,
    distribution: str = "rademacher",
) -> TraceEstimate:
    """Hutchinson's estimate of tr(H) with its standard error.

    tr(H) ~ (1/m) sum_j z_j^T H z_j with E[z z^T] = I over m probes; stderr = sample std / sqrt(m).

    Args:
        op: The operator H (D, D).
        num_matvecs: m, the probes (one product each).
        seed: Seed of the probes.
        block_size: Probes per block product.
        distribution: The probes' entries: ``rademacher`` or ``gaussian``.

    Returns:
        TraceEstimate: estimate, stderr, matvecs and the per-probe samples (m,).

    Raises:
        InputError: num_matvecs or block_size not a positive integer.
    """
    check_positive(num_matvecs, "num_matvecs")
    check_positive(block_size, "block_size")
    op.expect(num_matvecs)
    before = op.matvecs
    samples = (
        probe_quadratic_forms(op, range(num_matvecs), seed, distribution, block_size).cpu().numpy()
    )
    stderr = float(samples.std(ddof=1) / math.sqrt(num_matvecs)) if num_matvecs > 1 else math.inf
    return TraceEstimate(float(samples.mean()), stderr, op.matvecs - before, samples)


def hutchpp_trace(
    op: Operator, num_matvecs: int, seed: int = 0, block_size: int = 32
) -> TraceEstimate:
    """Hutch++: tr(H) = tr(Q^T H Q) + Hutchinson on (I - QQ^T) H (I - QQ^T), Q = orth(H S).

    Unbiased; the probes are the columns after the sketch's in the same seeded stream.

    Args:
        op: The operator H (D, D).
        num_matvecs: m >= 6, split into m/3 for H S, m/3 for H Q and m/3 probes.
        seed: Seed of the sketch and the probes.
        block_size: Columns per block product.

    Returns:
        TraceEstimate: estimate, stderr (that of the Hutchinson part), matvecs and the samples.

    Raises:
        InputError: num_matvecs below 6 or block_size not a positive integer.
    """
    if isinstance(num_matvecs, bool) or not isinstance(num_matvecs, int) or num_matvecs < 6:
        raise InputError(
            f"num_matvecs must be an integer >= 6 (three parts of at least 2), got {num_matvecs!r}"
        )
    check_positive(block_size, "block_size")
    dim = op.shape[0]
    sketch_size = min(num_matvecs // 3, dim)
    num_probes = num_matvecs - 2 * sketch_size
    op.expect(num_matvecs)
    before = op.matvecs
    S = random_columns("rademacher", seed, dim, range(sketch_size), device=op.device)
    Q, _ = torch.linalg.qr(apply_in_blocks(op, S, block_size))
    low_rank_part = float((Q * apply_in_blocks(op, Q, block_size)).sum())
    samples = (
        probe_quadratic_forms(
            op,
            range(sketch_size, sketch_size + num_probes),
            seed,
            "rademacher",
            block_size,
            project_out=Q,
        )
        .cpu()
        .numpy()
    )
    stderr = float(samples.std(ddof=1) / math.sqrt(num_probes)) if num_probes > 1 else math.inf
    return TraceEstimate(
        low_rank_part + float(samples.mean()), stderr, op.matvecs - before, low_rank_part + samples
    )
