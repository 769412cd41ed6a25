"""Generalised Gauss-Newton: G = J^T (d^2 loss / d outputs^2) J, J = d outputs / d theta."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import grad, jvp, vjp

from pipeline.curvature.base import BatchProduct, CurvatureOperator
from pipeline.curvature.graph import RetainedGraph, leaves_of
from pipeline.curvature.output_hessian import closed_form_output_hessian
from pipeline.curvature.params import FlatView


class GGNOperator(CurvatureOperator):
    """G v = J^T H_out J v for each batch (positive semi-definite for convex losses).

    Product modes: ``"forward-over-reverse"`` (functorch: J v by forward mode, J^T by a pullback
    shared by the block, vmapped) and ``"graph-reuse"`` (the outputs' graph built once per batch;
    per vector J v and J^T w are two backwards through it). H_out is applied in closed form for
    cross-entropy and MSE (``pipeline.curvature.output_hessian``), else by differentiating the loss.
    """

    KIND = "ggn"  # curvature.kind
    PRODUCT_MODES = ("forward-over-reverse", "graph-reuse")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._closed_form = closed_form_output_hessian(self.loss_fn, self.reduction)

    def _output_hessian(
        self, outputs: torch.Tensor, targets: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """W -> H_out W at ``outputs`` (detached).

        Closed form where the loss has one, else the loss gradient's graph in the outputs
        (symmetric: H_out w = J_g^T w).
        """
        closed = self._closed_form(outputs, targets) if self._closed_form is not None else None
        if closed is not None:
            return closed
        with torch.enable_grad():
            at = outputs.detach().requires_grad_()
            (loss_gradient,) = torch.autograd.grad(self.loss_fn(at, targets), at, create_graph=True)
        graph = RetainedGraph(loss_gradient, [at], FlatView.of({"outputs": at}))
        return lambda W: graph.vjp([W]).reshape(outputs.shape)

    def products(self) -> dict[str, BatchProduct]:
        """The GGN's batch products by mode."""
        return {
            "forward-over-reverse": self._forward_over_reverse,
            "graph-reuse": self._graph_reuse,
        }

    def _forward_over_reverse(
        self, inputs: Any, targets: torch.Tensor, V: torch.Tensor
    ) -> torch.Tensor:
        def outputs_of(theta: torch.Tensor) -> torch.Tensor:
            return self.forward(theta, inputs)

        outputs, pullback = vjp(outputs_of, self.theta)
        outputs = outputs.detach()
        closed = self._closed_form(outputs, targets) if self._closed_form is not None else None
        loss_gradient = grad(lambda out: self.loss_fn(out, targets))

        def ggn_vector(v: torch.Tensor) -> torch.Tensor:
            _, jv = jvp(outputs_of, (self.theta,), (v,))
            hjv = closed(jv) if closed is not None else jvp(loss_gradient, (outputs,), (jv,))[1]
            return pullback(hjv)[0]

        return self._vmap(ggn_vector, V)

    def _graph_reuse(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        graph, output_hessian = self.retained(
            "outputs", inputs, lambda: self._build_graphs(inputs, targets)
        )
        with torch.enable_grad():
            columns = [output_hessian(graph.jvp(v)[0]) for v in V.T.contiguous()]
            return torch.stack([graph.vjp([w]) for w in columns], dim=1)

    def _build_graphs(
        self, inputs: Any, targets: torch.Tensor
    ) -> tuple[RetainedGraph, Callable[[torch.Tensor], torch.Tensor]]:
        """The outputs' graph (J, ready for J v) and H_out, kept across products.

        The outputs' graph (J, ready for J v) and H_out, both kept across products (``retained``).
        """
        leaves = leaves_of(self.view, self.theta)
        with torch.enable_grad():
            outputs = self.call_model(leaves, inputs)
            graph = RetainedGraph(outputs, list(leaves.values()), self.view).prepare_jvp()
        return graph, self._output_hessian(outputs, targets)
