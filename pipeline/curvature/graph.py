"""Products through one retained autograd graph (PyHessian's graph reuse), for many vectors.

For a map f: theta -> outputs (any shape) built once with ``create_graph=True`` on per-parameter
leaves, J^T w = d(f . w)/d theta is one backward through the graph, and J v = d(J^T u . v)/du
(u a dummy cotangent: J^T u is linear in u) one more. Every vector of a block reuses the same
graph, so the forward pass and the first backward are paid once per batch, not once per vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pipeline.curvature.params import FlatView


class RetainedGraph:
    """f(theta) with its graph kept: ``vjp`` (J^T W) and ``jvp`` (J V) for blocks of vectors.

    ``outputs`` is a tensor or a tuple of tensors computed from ``leaves`` (the selected
    parameters as leaf tensors, in ``view`` order) with a differentiable graph.
    """

    def __init__(
        self,
        outputs: torch.Tensor | Sequence[torch.Tensor],
        leaves: Sequence[torch.Tensor],
        view: FlatView,
    ):
        self.outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
        self.leaves, self.view = tuple(leaves), view
        self._transposed: tuple[torch.Tensor, ...] | None = None
        self._dummy: tuple[torch.Tensor, ...] = ()

    def vjp(self, W: Sequence[torch.Tensor]) -> torch.Tensor:
        """J^T w as a flat (D,) vector for one cotangent ``W`` (shaped like the outputs)."""
        grads = self._backward(W, batched=False)
        if grads is None:
            return self.leaves[0].new_zeros(self.view.dim)
        return _flat(grads, self.leaves)

    def vjp_batched(self, W: Sequence[torch.Tensor]) -> torch.Tensor:
        """J^T W as (D, b) for a block of b cotangents, in one batched backward.

        J^T W as (D, b) for cotangents with a leading block dimension b, in one batched backward
        (``is_grads_batched``: autograd vmaps the backward over the block).
        """
        b = W[0].shape[0]
        grads = self._backward(W, batched=True)
        if grads is None:
            return self.leaves[0].new_zeros(self.view.dim, b)
        pieces = [
            g.reshape(b, -1) if g is not None else leaf.new_zeros(b, leaf.numel())
            for g, leaf in zip(grads, self.leaves)
        ]
        return torch.cat(pieces, dim=1).T

    def _backward(
        self, W: Sequence[torch.Tensor], batched: bool
    ) -> tuple[torch.Tensor | None, ...] | None:
        """The leaves' gradients of sum_j <outputs_j, W_j> through the kept graph.

        None where no output depends on the leaves; a leaf no output depends on gets None.
        ``batched``: W has a leading block dimension, vmapped over by autograd.
        """
        live = [(out, w) for out, w in zip(self.outputs, W) if out.requires_grad]
        if not live:
            return None
        return torch.autograd.grad(
            [o for o, _ in live],
            self.leaves,
            [w for _, w in live],
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=batched,
        )

    def prepare_jvp(self) -> RetainedGraph:
        """Build the graph of J^T u that ``jvp`` differentiates; returns self.

        Build the graph of J^T u (u a dummy cotangent) that ``jvp`` differentiates; returns self.
        """
        if self._transposed is None:
            self._dummy = tuple(torch.zeros_like(out, requires_grad=True) for out in self.outputs)
            grads = torch.autograd.grad(
                self.outputs, self.leaves, self._dummy, create_graph=True, allow_unused=True
            )
            self._transposed = tuple(g for g in grads if g is not None)
            self._used = [g is not None for g in grads]
        return self

    def jvp(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """J v for a flat (D,) tangent, shaped like the outputs.

        J v for a flat (D,) tangent, shaped like the outputs (two backwards: J v = d(J^T u . v)/du).
        """
        self.prepare_jvp()
        pieces = [p for p, used in zip(self.view.unflatten(v).values(), self._used) if used]
        live = [(g, p) for g, p in zip(self._transposed, pieces) if g.requires_grad]
        if not live:
            return tuple(torch.zeros_like(out) for out in self.outputs)
        result = torch.autograd.grad(
            [g for g, _ in live],
            self._dummy,
            [p for _, p in live],
            retain_graph=True,
            allow_unused=True,
        )
        return tuple(
            r if r is not None else torch.zeros_like(d) for r, d in zip(result, self._dummy)
        )


def leaves_of(view: FlatView, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """The selected parameters as leaf tensors (views of ``theta``, no copy) that record a graph."""
    return {name: piece.detach().requires_grad_() for name, piece in view.unflatten(theta).items()}


def _flat(grads: Sequence[torch.Tensor | None], leaves: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(leaf)).reshape(-1)
            for g, leaf in zip(grads, leaves)
        ]
    )
