"""What a worker needs to rebuild the problem by itself: picklable factories, not live objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.curvature import CURVATURES, CurvatureOperator
from pipeline.errors import InputError
from pipeline.sharding.shards import shard_batches


@dataclass
class ProblemSpec:
    """A curvature problem that every worker can build for its own shard.

    ``model_factory()`` returns the model (weights loaded); ``dataset_factory()`` returns an
    (inputs, targets) pair of tensors or a map-style Dataset; both must be picklable (module-level
    functions or functools.partial of them). ``loss_fn(outputs, targets)`` is the batch mean.
    """

    model_factory: Callable[[], nn.Module]
    dataset_factory: Callable[[], Any]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
    curvature: str = "hessian"
    batch_size: int = 128
    params: Any = None
    dtype: str | None = None
    operator_options: dict[str, Any] = field(default_factory=dict)
    _num_samples: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.curvature not in CURVATURES:
            raise InputError(f"unknown curvature {self.curvature!r}; choose one of {sorted(CURVATURES)}")
        if self.batch_size <= 0:
            raise InputError(f"batch_size must be positive, got {self.batch_size}")

    def num_samples(self) -> int:
        """Size of the whole data set, after checking on the driver, before any worker (or Ray)
        starts, that its first sample goes through the model and the loss. Computed once."""
        if self._num_samples is None:
            dataset = self.dataset_factory()
            inputs, targets = (dataset[0][:1], dataset[1][:1]) if isinstance(dataset, tuple) else next(iter(
                torch.utils.data.DataLoader(dataset, batch_size=1)))
            model = self.model_factory().eval()
            if self.torch_dtype is not None:
                model, inputs = model.to(self.torch_dtype), inputs.to(self.torch_dtype) if inputs.is_floating_point() else inputs
            try:
                with torch.no_grad():
                    self.loss_fn(model(inputs), targets)
            except (RuntimeError, IndexError, ValueError, TypeError) as error:
                raise InputError(f"the model does not accept the data: {str(error).splitlines()[0]}; check the model "
                                 "(input size, channels, num_classes) against the data (image_size, input_shape, classes)") from None
            self._num_samples = int(dataset[0].shape[0]) if isinstance(dataset, tuple) else len(dataset)
        return self._num_samples

    def build(self, num_shards: int = 1, rank: int = 0, device: str | torch.device = "cpu") -> CurvatureOperator:
        """The curvature operator on shard ``rank`` of ``num_shards`` (the whole data for 1 shard)."""
        model = self.model_factory().to(device)
        batches = shard_batches(self.dataset_factory(), num_shards, rank, self.batch_size)
        return CURVATURES[self.curvature](model, self.loss_fn, batches, params=self.params, dtype=self.torch_dtype, **self.operator_options)

    @property
    def torch_dtype(self) -> torch.dtype | None:
        return getattr(torch, self.dtype) if isinstance(self.dtype, str) else self.dtype
