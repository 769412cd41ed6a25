"""Empirical Fisher: F = (1/N) sum_n g_n g_n^T with g_n the gradient of sample n's loss."""

from __future__ import annotations

from typing import Any

import torch
from torch.func import jvp, vjp, vmap

from pipeline.curvature.base import CurvatureOperator


class EmpiricalFisherOperator(CurvatureOperator):
    """F v = (1/N) sum_n g_n (g_n . v), computed as J_l^T (J_l v) with J_l (n, D) the Jacobian of
    the per-sample losses, so per-sample gradients are never stored.

    The per-sample loss of sample n is ``loss_fn`` on the singleton batch (outputs[n], targets[n]).
    """

    def batch_product(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        def sample_losses(theta: torch.Tensor) -> torch.Tensor:
            outputs = self.forward(theta, inputs)
            return vmap(lambda out, target: self.loss_fn(out[None], target[None]))(outputs, targets)

        losses, pullback = vjp(sample_losses, self.theta)

        def fisher_vector(v: torch.Tensor) -> torch.Tensor:
            _, gv = jvp(sample_losses, (self.theta,), (v,))
            return pullback(gv)[0]

        return self._vmap(fisher_vector, V) / losses.shape[0]
