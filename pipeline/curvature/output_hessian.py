"""The loss Hessian in the model outputs, H_out = d^2 loss / d outputs^2, in closed form.

Softmax cross-entropy over class indices, outputs z (n, C), p = softmax(z) per row:
    H_out W = s (p * W - p (p . W)_row),   s = 1/n (mean) or 1 (sum);
mean squared error over all m = outputs.numel() entries:
    H_out W = 2 s W,                       s = 1/m (mean) or 1 (sum).
Neither depends on the targets (class-index CE: the targets only shift the gradient), so the GGN
product J^T H_out J v needs no graph of the loss at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

OutputHessian = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, W) -> H_out W


def closed_form_output_hessian(
    loss_fn: Any, reduction: str
) -> Callable[[torch.Tensor, torch.Tensor], OutputHessian | None]:
    """The closed-form output Hessian H_out of a known loss, or None.

    A factory ``(outputs, targets) -> H_out`` for plain cross-entropy or MSE ``loss_fn`` (the
    functions, their modules or partials with only ``reduction`` bound); None for any other loss.
    The factory itself returns None where the batch is not of the closed form's kind (for
    cross-entropy: 2-D outputs and integer class targets).
    """
    kind = _kind(loss_fn)
    if kind is None:
        return None
    if kind == "mse":
        return lambda outputs, targets: _mse(outputs, reduction)
    return lambda outputs, targets: (
        _cross_entropy(outputs, reduction)
        if outputs.ndim == 2
        and not targets.is_floating_point()
        # ignore_index targets change the mean
        and bool((targets >= 0).all())
        else None
    )


def _kind(loss_fn: Any) -> str | None:
    if isinstance(loss_fn, functools.partial):
        if loss_fn.args or set(loss_fn.keywords) - {"reduction"}:
            return None
        loss_fn = loss_fn.func
    if loss_fn is nn.functional.cross_entropy or type(loss_fn) is nn.CrossEntropyLoss:
        module_default = not isinstance(loss_fn, nn.Module) or (
            loss_fn.weight is None and loss_fn.label_smoothing == 0.0
        )
        return "cross_entropy" if module_default else None
    if loss_fn is nn.functional.mse_loss or type(loss_fn) is nn.MSELoss:
        return "mse"
    return None


def _cross_entropy(outputs: torch.Tensor, reduction: str) -> OutputHessian:
    p = torch.softmax(outputs.detach(), dim=1)
    scale = 1.0 / outputs.shape[0] if reduction == "mean" else 1.0
    return lambda W: scale * (p * W - p * (p * W).sum(dim=1, keepdim=True))


def _mse(outputs: torch.Tensor, reduction: str) -> OutputHessian:
    scale = 2.0 / outputs.numel() if reduction == "mean" else 2.0
    return lambda W: scale * W
