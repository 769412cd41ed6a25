"""Loss along eigenvector directions: L(theta + t v) for t on a symmetric grid."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.curvature import CurvatureOperator


def loss_along(
    op: CurvatureOperator, vectors: torch.Tensor, radius: float, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """The mean loss along each normalised direction: steps (points,), losses (V, points).

    steps (points,) and losses (num_vectors, points) of the mean loss at theta + t v_i / ||v_i||.
    """
    steps = np.linspace(-radius, radius, points)
    theta = op.theta
    losses = np.zeros((vectors.shape[1], points))
    try:
        for i in range(vectors.shape[1]):
            direction = torch.as_tensor(np.asarray(vectors[:, i]), dtype=op.dtype, device=op.device)
            direction = direction / direction.norm()
            for j, t in enumerate(steps):
                op.theta = theta + t * direction
                losses[i, j] = op.loss()
    finally:
        op.theta = theta
    return steps, losses
