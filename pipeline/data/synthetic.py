"""A seeded synthetic classification set: Gaussian inputs, labels from a random linear teacher."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pipeline.errors import InputError


def synthetic(
    samples: int, input_shape: Sequence[int], classes: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (N, *input_shape) float32, labels (N,) int64 = argmax of a random linear map)."""
    if samples <= 0:
        raise InputError(f"synthetic data needs a positive number of samples, got {samples}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, *input_shape, generator=gen)
    teacher = torch.randn(x[0].numel(), classes, generator=gen)
    return x, (x.reshape(samples, -1) @ teacher).argmax(dim=1)
