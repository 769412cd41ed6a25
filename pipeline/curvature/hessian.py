"""Hessian of the mean loss: H v = d/dt grad L(theta + t v) at t = 0."""

from __future__ import annotations

from typing import Any

import torch
from torch.func import grad, jvp

from pipeline.curvature.base import BatchProduct, CurvatureOperator
from pipeline.curvature.graph import RetainedGraph, leaves_of
from pipeline.errors import OperationError


class HessianOperator(CurvatureOperator):
    """H = nabla^2_theta L(theta) for the mean loss L over the data.

    Product modes (``product_mode``; default ``"auto"`` times them and keeps the fastest):
    ``"forward-over-reverse"`` (functorch jvp of the gradient, vmapped over the block);
    ``"reverse-over-reverse"`` (the gradient graph g = dL/dtheta built once per batch, then
    H V = d(g . V)/dtheta in one batched backward over the block); ``"graph-reuse"`` (the same
    graph, one backward per vector: PyHessian's product, the floor for many vectors);
    ``"compiled"`` (forward-over-reverse through ``torch.compile``, compiled once per batch shape
    and width; ``auto`` tries it only where the products ahead repay its compile time).
    """

    KIND = "hessian"  # curvature.kind
    PRODUCT_MODES = ("forward-over-reverse", "reverse-over-reverse", "graph-reuse", "compiled")
    COSTLY_MODES = ("compiled",)

    def products(self) -> dict[str, BatchProduct]:
        """The Hessian's batch products by mode."""
        return {
            "forward-over-reverse": self._forward_over_reverse,
            "reverse-over-reverse": self._reverse_over_reverse,
            "graph-reuse": self._graph_reuse,
            "compiled": self._compiled,
        }

    def _compiled(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        if self._compiled_product is None:
            self._compiled_product = torch.compile(
                self._vmapped_forward_over_reverse, dynamic=False
            )
        return self._compiled_product(self.theta, V, inputs, targets)

    def _vmapped_forward_over_reverse(
        self, theta: torch.Tensor, V: torch.Tensor, inputs: Any, targets: torch.Tensor
    ) -> torch.Tensor:
        """H_i V as the jvp of the batch gradient along every column of V.

        H_i V = the jvp of the batch gradient along every column of V (a pure function of tensors,
        as torch.compile wants it).
        """
        gradient = grad(lambda t: self.batch_loss(t, inputs, targets))
        return torch.func.vmap(lambda v: jvp(gradient, (theta,), (v,))[1], in_dims=1, out_dims=1)(V)

    _compiled_product = None

    def _forward_over_reverse(
        self, inputs: Any, targets: torch.Tensor, V: torch.Tensor
    ) -> torch.Tensor:
        gradient = grad(lambda theta: self.batch_loss(theta, inputs, targets))
        try:
            return self._vmap(lambda v: jvp(gradient, (self.theta,), (v,))[1], V)
        except RuntimeError as error:
            if "ZeroTensors are immutable" not in str(error):
                raise
            raise OperationError(
                "product_mode=forward-over-reverse cannot differentiate this loss twice (PyTorch's "
                "forward-mode "
                "rule for the gradient of mse_loss with reduction='mean' writes into a zero "
                "tensor); use "
                "product_mode=graph-reuse or reverse-over-reverse (auto skips it)"
            ) from None

    def _gradient_graph(self, inputs: Any, targets: torch.Tensor) -> RetainedGraph:
        """The batch gradient g(theta) with its graph: H v = J_g^T v (H is symmetric).

        Kept across products (``retained``).
        """
        return self.retained(
            "gradient", inputs, lambda: self._build_gradient_graph(inputs, targets)
        )

    def _build_gradient_graph(self, inputs: Any, targets: torch.Tensor) -> RetainedGraph:
        leaves = leaves_of(self.view, self.theta)
        with torch.enable_grad():
            loss = self.loss_fn(self.call_model(leaves, inputs), targets)
            gradient = torch.autograd.grad(
                loss, list(leaves.values()), create_graph=True, allow_unused=True
            )
        gradient = [
            g if g is not None else torch.zeros_like(leaf)
            for g, leaf in zip(gradient, leaves.values())
        ]
        return RetainedGraph(gradient, list(leaves.values()), self.view)

    def _reverse_over_reverse(
        self, inputs: Any, targets: torch.Tensor, V: torch.Tensor
    ) -> torch.Tensor:
        graph = self._gradient_graph(inputs, targets)
        chunk = self.vmap_chunk_size or V.shape[1]
        pieces = []
        with torch.enable_grad():
            for start in range(0, V.shape[1], chunk):
                block = V[:, start : start + chunk]
                if block.shape[1] == 1:
                    pieces.append(
                        graph.vjp(list(self.view.unflatten(block[:, 0]).values()))[:, None]
                    )
                    continue
                cotangents = [
                    piece.reshape(block.shape[1], *shape)
                    for piece, shape in zip(
                        torch.split(block.T, self.view.numels, dim=1), self.view.shapes
                    )
                ]
                pieces.append(graph.vjp_batched(cotangents))
        return torch.cat(pieces, dim=1)

    def _graph_reuse(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        graph = self._gradient_graph(inputs, targets)
        with torch.enable_grad():
            return torch.stack(
                [graph.vjp(list(self.view.unflatten(v).values())) for v in V.T.contiguous()], dim=1
            )
