"""Generalised Gauss-Newton: G = J^T (d^2 loss / d outputs^2) J, J = d outputs / d theta."""

from __future__ import annotations

from typing import Any

import torch
from torch.func import grad, jvp, vjp

from pipeline.curvature.base import CurvatureOperator


class GGNOperator(CurvatureOperator):
    """G v = J^T H_out J v for each batch (positive semi-definite for convex losses)."""

    def batch_product(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        def outputs_of(theta: torch.Tensor) -> torch.Tensor:
            return self.forward(theta, inputs)

        outputs, pullback = vjp(outputs_of, self.theta)
        outputs = outputs.detach()
        loss_gradient = grad(lambda out: self.loss_fn(out, targets))

        def ggn_vector(v: torch.Tensor) -> torch.Tensor:
            _, jv = jvp(outputs_of, (self.theta,), (v,))
            _, hjv = jvp(loss_gradient, (outputs,), (jv,))
            return pullback(hjv)[0]

        return self._vmap(ggn_vector, V)
