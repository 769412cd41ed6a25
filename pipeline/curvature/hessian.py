"""Hessian of the mean loss: H v = d/dt grad L(theta + t v) at t = 0."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.func import grad, jvp, vjp

from pipeline.curvature.base import CurvatureOperator


class HessianOperator(CurvatureOperator):
    """H = nabla^2_theta L(theta) for the mean loss L over the data.

    ``hvp_mode``: ``"forward-over-reverse"`` (default; jvp of the gradient, the cheaper one) or
    ``"reverse-over-reverse"`` (vjp of the gradient, Pearlmutter's trick via double backward).
    """

    def __init__(self, *args: Any, hvp_mode: Literal["forward-over-reverse", "reverse-over-reverse"] = "forward-over-reverse", **kwargs: Any):
        if hvp_mode not in ("forward-over-reverse", "reverse-over-reverse"):
            raise ValueError(f"hvp_mode must be 'forward-over-reverse' or 'reverse-over-reverse', got {hvp_mode!r}")
        super().__init__(*args, **kwargs)
        self.hvp_mode = hvp_mode

    def batch_product(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        gradient = grad(lambda theta: self.batch_loss(theta, inputs, targets))
        if self.hvp_mode == "forward-over-reverse":
            return self._vmap(lambda v: jvp(gradient, (self.theta,), (v,))[1], V)
        _, pullback = vjp(gradient, self.theta)
        return self._vmap(lambda v: pullback(v)[0], V)
