"""What a worker needs to rebuild the problem by itself: picklable factories, not live objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.curvature import CURVATURES, CurvatureOperator
from pipeline.curvature.data_passes import move_to
from pipeline.curvature.params import flat_parameters, weights_digest
from pipeline.errors import InputError
from pipeline.sharding.shards import Shard

AUTO = "auto"
# the batch size of an operator built for data.batch_size=auto, until its fit re-batches it
AUTO_START = 16


@dataclass(frozen=True)
class Preview:
    """The problem as the driver sees it before workers start.

    N samples, dimension D, the dtype of theta and the SHA-1 of theta
    (``pipeline.curvature.params.weights_digest``).
    """

    num_samples: int
    dim: int
    dtype: torch.dtype
    weights: str


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
    batch_size: int | str = 128  # or "auto": settled by the memory fit (``rebatch``)
    params: Any = None
    dtype: str | None = None
    operator_options: dict[str, Any] = field(default_factory=dict)
    _preview: Preview | None = field(default=None, init=False, repr=False)
    # the preview's, reused by an in-process build
    _dataset: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.curvature not in CURVATURES:
            raise InputError(
                f"unknown curvature {self.curvature!r}; choose one of {sorted(CURVATURES)}"
            )
        if self.batch_size != AUTO and (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size <= 0
        ):
            raise InputError(
                "batch_size (data.batch_size) must be a positive integer or 'auto', got "
                f"{self.batch_size!r}"
            )

    def num_samples(self) -> int:
        """Size of the whole data set (see ``preview``)."""
        return self.preview().num_samples

    def preview(self) -> Preview:
        """What the driver learns of the problem before any worker starts.

        What the driver learns of the problem before any worker (or Ray) starts, after checking that
        the first sample goes through the model and the loss: sample count, D, dtype and the weights
        digest. The model and the data are built here once, then cached.
        """
        if self._preview is None:
            dataset = self.dataset_factory()
            inputs, targets = (
                (dataset[0][:1], dataset[1][:1])
                if isinstance(dataset, tuple)
                else next(iter(torch.utils.data.DataLoader(dataset, batch_size=1)))
            )
            model = self.model_factory().eval()
            view, theta = flat_parameters(model, self.params, self.torch_dtype)
            if self.torch_dtype is not None:
                model, inputs = (
                    model.to(self.torch_dtype),
                    move_to(inputs, self.torch_dtype, torch.device("cpu")),
                )
            try:
                with torch.no_grad():
                    self.loss_fn(model(inputs), targets)
            except (RuntimeError, IndexError, ValueError, TypeError) as error:
                raise InputError(
                    f"the model does not accept the data: {str(error).splitlines()[0]}; check the "
                    "model "
                    "(input size, channels, num_classes) against the data (image_size, "
                    "input_shape, classes)"
                ) from None
            count = int(dataset[0].shape[0]) if isinstance(dataset, tuple) else len(dataset)
            self._preview = Preview(count, view.dim, theta.dtype, weights_digest(theta))
            self._dataset = dataset
        return self._preview

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for workers without the driver's data: each builds (and shards) its own."""
        return {**self.__dict__, "_dataset": None}

    def build(
        self, num_shards: int = 1, rank: int = 0, device: str | torch.device = "cpu"
    ) -> CurvatureOperator:
        """The curvature operator on shard ``rank`` of ``num_shards``.

        The curvature operator on shard ``rank`` of ``num_shards`` (the whole data for 1 shard).
        """
        model = self.model_factory().to(device)
        dataset = self._dataset if self._dataset is not None else self.dataset_factory()
        shard = Shard(dataset, num_shards, rank)
        batch_size = AUTO_START if self.batch_size == AUTO else self.batch_size
        op = CURVATURES[self.curvature](
            model,
            self.loss_fn,
            shard.batches(batch_size),
            params=self.params,
            dtype=self.torch_dtype,
            **self.operator_options,
        )
        op.shard = shard
        return op

    @property
    def torch_dtype(self) -> torch.dtype | None:
        """The dtype the operator computes in, as a torch dtype (None: the model's)."""
        return getattr(torch, self.dtype) if isinstance(self.dtype, str) else self.dtype
