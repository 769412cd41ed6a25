"""Parameter selection and flat <-> dict views of a model's parameters.

A curvature operator acts on the flat vector theta in R^D that concatenates the selected
parameters in ``model.named_parameters()`` order (each flattened row-major).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import InputError

ParamSelector = None | str | Sequence[str] | Callable[[str, nn.Parameter], bool]


def select_parameters(model: nn.Module, params: ParamSelector = None) -> dict[str, torch.Tensor]:
    r"""Return the selected trainable parameters of ``model`` as an ordered name -> tensor dict.

    ``params`` is None (all trainable parameters), a glob or regular expression matched against
    the full parameter name (``"fc.*"``, ``"re:layer[12]\\..*weight"``), a list of exact names or
    patterns, or a callable ``(name, parameter) -> bool``.
    """
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise InputError(
            f"{type(model).__name__} has no trainable parameters (all have requires_grad=False); "
            "unfreeze the parameters whose curvature you want"
        )
    if params is None:
        return trainable
    if callable(params):
        chosen = {n: p for n, p in trainable.items() if params(n, p)}
    else:
        patterns = [params] if isinstance(params, str) else list(params)
        chosen = {n: p for n, p in trainable.items() if any(_matches(pat, n) for pat in patterns)}
    if not chosen:
        raise InputError(
            f"parameter selection {params!r} matches none of the trainable parameters "
            f"{list(trainable)[:8]}{' ...' if len(trainable) > 8 else ''}"
        )
    return chosen


def flat_parameters(
    model: nn.Module, params: ParamSelector = None, dtype: torch.dtype | None = None
) -> tuple["FlatView", torch.Tensor]:
    """The selected parameters' view and flat copy theta (D,) in ``dtype`` (default: theirs)."""
    selected = select_parameters(model, params)
    dtype = dtype or next(iter(selected.values())).dtype
    if not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating point type, got {dtype}")
    view = FlatView.of(selected)
    return view, view.flatten({n: p.detach().to(dtype) for n, p in selected.items()})


def weights_digest(theta: torch.Tensor) -> str:
    """SHA-1 of the flat parameters theta (D,): names the weights in store fingerprints."""
    return hashlib.sha1(theta.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True)
class FlatView:
    """Maps between a dict of named tensors and one flat vector of length ``dim``."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, tensors: dict[str, torch.Tensor]) -> "FlatView":
        """The view of the named ``tensors`` in their order."""
        return cls(tuple(tensors), tuple(t.shape for t in tensors.values()))

    @property
    def numels(self) -> tuple[int, ...]:
        """Each tensor's number of entries."""
        return tuple(s.numel() for s in self.shapes)

    @property
    def dim(self) -> int:
        """D, the length of the flat vector."""
        return sum(self.numels)

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Dict of tensors -> flat (D,) vector (a copy)."""
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat (D,) vector -> dict of views shaped like the parameters."""
        if flat.shape != (self.dim,):
            raise InputError(
                f"expected a flat vector of shape ({self.dim},), got {tuple(flat.shape)}"
            )
        pieces = torch.split(flat, self.numels)
        return {n: piece.view(shape) for n, piece, shape in zip(self.names, pieces, self.shapes)}
