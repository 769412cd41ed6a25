"""Checks of a curvature operator's data and model.

Non-finite products named by their cause, the mean loss, and determinism (two passes must agree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import torch

from pipeline.errors import InputError, OperationError

STOCHASTIC_MODEL = (
    "two passes over the same samples differ: the model is stochastic in eval mode (dropout via "
    "F.dropout(training=True), BatchNorm forced into train mode, random augmentation inside "
    "forward)"
)


class NondeterminismError(OperationError):
    """Two passes over the same data gave different losses or products."""


class OperatorChecks:
    """The ``CurvatureOperator`` part that diagnoses its data and model."""

    def _raise_nonfinite(self, index: int, inputs: Any, targets: torch.Tensor) -> None:
        with torch.no_grad():
            loss = self.batch_loss(self.theta, inputs, targets)
        if not torch.isfinite(loss):
            raise InputError(
                f"loss is {loss.item()} on batch {index}: check the inputs for NaN/inf, the "
                "learning "
                "rate of the checkpoint, or use dtype=float64"
            )
        raise InputError(
            f"curvature product is not finite on batch {index} although the loss "
            f"({loss.item():.4g}) is: "
            "the model overflows in its second derivatives; try dtype=float64"
        )

    def loss(self) -> float:
        """Mean loss over all samples of the data."""
        total, count = 0.0, 0
        with torch.no_grad():
            for inputs, targets, n in self.batches():
                if n:
                    total += n * float(self.batch_loss(self.theta, inputs, targets))
                    count += n
        if count == 0:
            raise InputError("data is empty: the data set yielded no samples")
        return total / count

    def check_determinism(self, seed: int = 0, rtol: float = 1e-6) -> None:
        """Two passes over the data must see the same samples and give the same loss and product.

        Raises NondeterminismError naming the likely cause otherwise.
        """
        fingerprints = [_fingerprint(self.data), _fingerprint(self.data)]
        if fingerprints[0] != fingerprints[1]:
            raise NondeterminismError(
                "the data yields different samples on each pass: turn off shuffling "
                "(shuffle=False) "
                "and random augmentation, or pass a fixed list of batches"
            )
        losses = [self.loss(), self.loss()]
        if abs(losses[0] - losses[1]) > rtol * max(abs(losses[0]), 1e-30):
            raise NondeterminismError(
                f"{STOCHASTIC_MODEL} (losses {losses[0]:.8g} vs {losses[1]:.8g})"
            )
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(self.shape[0], generator=gen, dtype=self.dtype).to(self.device)
        products = []
        for _ in range(2):
            self.graphs.clear()  # each product through a graph built anew
            products.append(self @ v)
        if not torch.allclose(
            products[0], products[1], rtol=rtol, atol=rtol * float(products[0].abs().max())
        ):
            raise NondeterminismError(
                f"{STOCHASTIC_MODEL} (two products of the same vector differ)"
            )


def _fingerprint(data: Iterable[tuple[Any, torch.Tensor]]) -> str:
    digest = hashlib.sha1()
    for inputs, targets in data:
        for t in (inputs, targets):
            if isinstance(t, torch.Tensor):
                digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
