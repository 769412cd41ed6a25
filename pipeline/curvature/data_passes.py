"""Passes over a curvature operator's data, and sample weighting.

For a data set of N samples split into batches of n_i samples with mean losses L_i, the loss is
L = (1/N) sum_i n_i L_i, so every curvature matrix is C = (1/N) sum_i n_i C_i: batches are
weighted by sample count and the operator does not depend on how samples are batched. A loss
that averages over something else (tokens: ``CausalLMLoss``) counts a batch itself
(``batch_size_fn``, default ``loss_fn.count`` where it has one, else ``sample_count``). A
sum-reduced loss (``reduction="sum"``) has L = sum_i L_i and C = sum_i C_i.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from pipeline.curvature.checks import STOCHASTIC_MODEL, NondeterminismError
from pipeline.errors import InputError

if TYPE_CHECKING:
    from pipeline.sharding.shards import Shard

Batch = tuple[Any, torch.Tensor]
NO_SHARD = (
    "data.batch_size=auto re-batches an operator built from a ProblemSpec (its data shard); this "
    "one was given its batches: set data.batch_size to a number"
)


class DataPasses:
    """The ``CurvatureOperator`` part that walks its ``data``.

    Batches moved to the operator's dtype and device (a list of batches once, kept), the sample
    count N, and the weighted sum of the batches' products (``batch_product``, from
    ``ProductModes``). ``shard``: where the batches came from, when built from a ``ProblemSpec``
    (None otherwise): what ``rebatch`` splits again.
    """

    shard: Shard | None = None

    def rebatch(self, batch_size: int) -> None:
        """Split the shard again into batches of ``batch_size`` samples (``data.batch_size=auto``).

        The products are the same (batches are weighted by their samples); the graphs kept and the
        mode choices made for the old batches are dropped.
        """
        if self.shard is None:
            raise InputError(NO_SHARD)
        self.data = self.shard.batches(batch_size)
        self._prepared = None
        self.graphs.clear()
        self.mode_choices.clear()

    def _prepare(self, batch: Batch) -> tuple[Any, torch.Tensor, int]:
        try:
            inputs, targets = batch
        except (TypeError, ValueError):
            raise InputError("each batch of data must be an (inputs, targets) pair") from None
        inputs = move_to(inputs, self.dtype, self.device)
        targets = move_to(targets, self.dtype, self.device)
        return inputs, targets, self.batch_size_fn(inputs, targets)

    @property
    def num_samples(self) -> int:
        """N, the samples in this operator's data.

        N, the samples in this operator's data (a DataLoader's data set is counted, not loaded).
        """
        dataset = getattr(self.data, "dataset", None)
        # a DataLoader's data set is counted, not loaded, where a batch counts its samples
        if (
            dataset is not None
            and hasattr(dataset, "__len__")
            and self.batch_size_fn is sample_count
        ):
            return len(dataset)
        return sum(n for _, _, n in self.batches())

    def batches(self) -> Iterator[tuple[Any, torch.Tensor, int]]:
        """(inputs, targets, n) of every batch on the operator's device and dtype.

        A list or tuple of batches is converted once and kept; other iterables are converted per
        pass.
        """
        if self._prepared is not None:
            yield from self._prepared
            return
        if not isinstance(self.data, (list, tuple)):
            yield from map(self._prepare, self.data)
            return
        prepared = []
        for batch in self.data:
            prepared.append(self._prepare(batch))
            yield prepared[-1]
        self._prepared = prepared

    def _first_batch(self) -> tuple[Any, torch.Tensor, int]:
        """The first batch as products see it.

        The first batch as products see it (a list of batches is prepared whole first, so the
        objects, and the graphs kept for them, are the ones every later pass uses).
        """
        if isinstance(self.data, (list, tuple)) and self._prepared is None:
            for _ in self.batches():
                pass
        return next(iter(self.batches()))

    def weighted_sum(self, V: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum_i w_i C_i V, N).

        The unnormalised product over this operator's data and its size, w_i = n_i for mean-reduced
        losses, 1 for summed ones.

        Distributed workers all-reduce both parts; ``normalise`` turns them into C V.
        """
        total = torch.zeros_like(V)
        count = 0
        for index, batch in enumerate(self.batches()):
            count += self.accumulate(total, index, batch, V)
        if count == 0:
            raise InputError(
                "data is empty: the data set yielded no samples; check the data config and subset "
                "size"
            )
        return total, count

    def accumulate(
        self, total: torch.Tensor, index: int, batch: tuple[Any, torch.Tensor, int], V: torch.Tensor
    ) -> int:
        """Add w_i C_i V of batch ``index`` (a prepared (inputs, targets, n)) to total; return n.

        A batch whose product is not finite raises, naming it.
        """
        inputs, targets, n = batch
        if n == 0:
            return 0
        try:
            product = self.batch_product(inputs, targets, V)
        except RuntimeError as error:
            if "randomness" in str(error):
                raise NondeterminismError(STOCHASTIC_MODEL) from error
            raise
        if not torch.isfinite(product).all():
            self._raise_nonfinite(index, inputs, targets)
        total.add_(product, alpha=n if self.reduction == "mean" else 1)  # no n * product copy
        return n

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.normalise(*self.weighted_sum(V))

    def normalise(self, total: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
        """C V from ``weighted_sum``'s parts (summed over workers).

        Total / N for a mean loss, total for a sum.
        """
        return total.div_(count) if self.reduction == "mean" else total  # in place: no copy


def cast_floating(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype`` where it is floating point (labels keep their integer type)."""
    return t.to(dtype) if t.is_floating_point() else t


def sample_count(inputs: Any, targets: torch.Tensor) -> int:
    """A batch's sample count: the first dimension of its inputs (of the first tensor in a dict)."""
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    if isinstance(first, (tuple, list)):
        first = first[0]
    return int(first.shape[0])


def move_to(x: Any, dtype: torch.dtype, device: torch.device) -> Any:
    """Move tensors (and tuples, lists, dicts of tensors) to device; floating ones to dtype."""
    if isinstance(x, torch.Tensor):
        return cast_floating(x.to(device, non_blocking=True), dtype)
    if isinstance(x, (tuple, list)):
        return type(x)(move_to(t, dtype, device) for t in x)
    if isinstance(x, dict):
        return {key: move_to(value, dtype, device) for key, value in x.items()}
    return x
