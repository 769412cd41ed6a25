"""The losses a job can name (``model.loss``), each with how it counts a batch.

``cross_entropy``: classification, the batch mean over samples, a batch weighs its sample count.
``causal_lm``: next-token cross-entropy over logits (B, T, V) against targets (B, T) in which
``IGNORE`` (-100) marks padding, the mean over the batch's real tokens; a batch weighs its token
count, so the operator is the mean over every real token whatever the batches and workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from pipeline.errors import InputError

IGNORE = -100


class CausalLMLoss:
    """Mean next-token cross-entropy over the real (not ``IGNORE``) target tokens."""

    reduction = "mean"

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V), targets (B, T) -> the mean over tokens whose target is not IGNORE."""
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
        )

    @staticmethod
    def count(inputs: Any, targets: torch.Tensor) -> int:
        """The batch's weight: its real target tokens."""
        return int((targets != IGNORE).sum())


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "causal_lm": CausalLMLoss(),
}


def loss_named(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``name`` (``model.loss``)."""
    if name not in LOSSES:
        raise InputError(f"model.loss must be one of {', '.join(LOSSES)}; got {name!r}")
    return LOSSES[name]
