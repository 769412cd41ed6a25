"""Empirical Fisher: F = (1/N) sum_n g_n g_n^T.

F = (1/N) sum_n g_n g_n^T with g_n the gradient of sample n's loss (sum_n g_n g_n^T for a summed
loss).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import jvp, vjp, vmap

from pipeline.curvature.base import BatchProduct, CurvatureOperator
from pipeline.curvature.graph import RetainedGraph, leaves_of


class EmpiricalFisherOperator(CurvatureOperator):
    """Empirical Fisher products F v without storing per-sample gradients.

    F v = (1/N) sum_n g_n (g_n . v), computed as J_l^T (J_l v) with J_l (n, D) the Jacobian of the
    per-sample losses, so per-sample gradients are never stored.

    The per-sample loss of sample n is ``loss_fn`` on the singleton batch (outputs[n], targets[n]).
    Product modes: ``"forward-over-reverse"`` (functorch: J_l v by forward mode, vmapped) and
    ``"graph-reuse"`` (the per-sample losses' graph built once per batch, two backwards a vector).
    """

    KIND = "fisher"  # curvature.kind
    PRODUCT_MODES = ("forward-over-reverse", "graph-reuse")

    def products(self) -> dict[str, BatchProduct]:
        """The Fisher's batch products by mode."""
        return {
            "forward-over-reverse": self._forward_over_reverse,
            "graph-reuse": self._graph_reuse,
        }

    def _sample_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return vmap(lambda out, target: self.loss_fn(out[None], target[None]))(outputs, targets)

    def _forward_over_reverse(
        self, inputs: Any, targets: torch.Tensor, V: torch.Tensor
    ) -> torch.Tensor:
        def sample_losses(theta: torch.Tensor) -> torch.Tensor:
            return self._sample_losses(self.forward(theta, inputs), targets)

        losses, pullback = vjp(sample_losses, self.theta)

        def fisher_vector(v: torch.Tensor) -> torch.Tensor:
            _, gv = jvp(sample_losses, (self.theta,), (v,))
            return pullback(gv)[0]

        return self._vmap(fisher_vector, V) / self._batch_scale(losses)

    def _graph_reuse(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        graph, scale = self.retained("losses", inputs, lambda: self._build_graph(inputs, targets))
        with torch.enable_grad():
            return torch.stack([graph.vjp(graph.jvp(v)) for v in V.T.contiguous()], dim=1) / scale

    def _build_graph(self, inputs: Any, targets: torch.Tensor) -> tuple[RetainedGraph, int]:
        """The per-sample losses' graph (J_l) and the batch scale.

        The per-sample losses' graph (J_l), kept across products (``retained``), and the batch
        scale.
        """
        leaves = leaves_of(self.view, self.theta)
        with torch.enable_grad():
            losses = self._sample_losses(self.call_model(leaves, inputs), targets)
            return RetainedGraph(
                losses, list(leaves.values()), self.view
            ).prepare_jvp(), self._batch_scale(losses)

    def _batch_scale(self, losses: torch.Tensor) -> int:
        """The factor turning sum_n g_n g_n^T into the batch's Fisher.

        The batch's Fisher is the mean of g g^T over its samples for a mean loss, their sum for a
        summed one.
        """
        return losses.shape[0] if self.reduction == "mean" else 1
