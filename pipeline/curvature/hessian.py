"""Hessian of the mean loss: H v = d/dt grad L(theta + t v) at t = 0."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.func import grad, jvp

from pipeline.curvature.base import CurvatureOperator


class HessianOperator(CurvatureOperator):
    """H = nabla^2_theta L(theta) for the mean loss L over the data.

    ``hvp_mode``: ``"forward-over-reverse"`` (default; jvp of the gradient, the cheaper one) or
    ``"reverse-over-reverse"`` (Pearlmutter's double backward through plain autograd, which has less
    per-call overhead and was faster on CPU in benchmarks/hvp_vs_grad.py).
    """

    def __init__(self, *args: Any, hvp_mode: Literal["forward-over-reverse", "reverse-over-reverse"] = "forward-over-reverse", **kwargs: Any):
        if hvp_mode not in ("forward-over-reverse", "reverse-over-reverse"):
            raise ValueError(f"hvp_mode must be 'forward-over-reverse' or 'reverse-over-reverse', got {hvp_mode!r}")
        super().__init__(*args, **kwargs)
        self.hvp_mode = hvp_mode

    def batch_product(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        if self.hvp_mode == "reverse-over-reverse":
            return self._double_backward(inputs, targets, V)
        gradient = grad(lambda theta: self.batch_loss(theta, inputs, targets))
        return self._vmap(lambda v: jvp(gradient, (self.theta,), (v,))[1], V)

    def _double_backward(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """H V = d(g . v)/d theta with g built by a create_graph backward (plain autograd; the
        block goes through one batched backward, in chunks of ``vmap_chunk_size``)."""
        theta = self.theta.detach().requires_grad_()
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.batch_loss(theta, inputs, targets), theta, create_graph=True)
            chunk = self.vmap_chunk_size or V.shape[1]
            pieces = []
            for start in range(0, V.shape[1], chunk):
                block = V[:, start : start + chunk]
                batched = block.shape[1] > 1
                cotangent = block.T if batched else block[:, 0]
                (products,) = torch.autograd.grad(gradient, theta, cotangent, retain_graph=True, is_grads_batched=batched)
                pieces.append(products.reshape(block.shape[1], -1).T)
        return torch.cat(pieces, dim=1)
