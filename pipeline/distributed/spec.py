"""What a worker needs to rebuild the problem by itself: picklable factories, not live objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.curvature import CURVATURES, CurvatureOperator
from pipeline.distributed.sharding import shard_batches


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

    def __post_init__(self) -> None:
        if self.curvature not in CURVATURES:
            raise ValueError(f"unknown curvature {self.curvature!r}; choose one of {sorted(CURVATURES)}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    def num_samples(self) -> int:
        """Size of the whole data set (checked on the driver before any worker starts)."""
        dataset = self.dataset_factory()
        return int(dataset[0].shape[0]) if isinstance(dataset, tuple) else len(dataset)

    def build(self, num_shards: int = 1, rank: int = 0, device: str | torch.device = "cpu") -> CurvatureOperator:
        """The curvature operator on shard ``rank`` of ``num_shards`` (the whole data for 1 shard)."""
        model = self.model_factory().to(device)
        batches = shard_batches(self.dataset_factory(), num_shards, rank, self.batch_size)
        dtype = getattr(torch, self.dtype) if isinstance(self.dtype, str) else self.dtype
        return CURVATURES[self.curvature](model, self.loss_fn, batches, params=self.params, dtype=dtype, **self.operator_options)
