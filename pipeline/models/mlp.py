"""The paper's tanh-MLP for 16x16 images: 256-20-20-20-20-20-10 (7,030 parameters)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pipeline.errors import InputError


def tanh_mlp(widths: Sequence[int] = (256, 20, 20, 20, 20, 20, 10)) -> nn.Sequential:
    """Flatten, then Linear layers of the given widths with tanh between them.

    Flatten, then Linear layers of the given widths with tanh between them (none after the last).
    """
    if len(widths) < 2:
        raise InputError(f"an MLP needs at least input and output widths, got {list(widths)}")
    layers: list[nn.Module] = [nn.Flatten()]
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)
