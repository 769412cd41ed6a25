"""Balanced, deterministic sharding of a data set by sample index, and a shard's batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from pipeline.errors import InputError


def shard_indices(num_samples: int, num_shards: int, rank: int) -> range:
    """Contiguous, balanced shard ``rank`` of ``num_samples`` (sizes differ by at most one)."""
    if num_shards <= 0:
        raise InputError(f"number of shards must be positive, got {num_shards}")
    if num_shards > num_samples:
        raise InputError(
            f"cannot split {num_samples} samples into {num_shards} non-empty shards; use at most "
            f"{num_samples} workers"
        )
    base, extra = divmod(num_samples, num_shards)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def shard_batches(dataset: Any, num_shards: int, rank: int, batch_size: int) -> list | DataLoader:
    """The (inputs, targets) batches of shard ``rank``.

    ``dataset`` is an (inputs, targets) pair of tensors, a TensorDataset (both sliced directly)
    or any map-style Dataset (loaded lazily through a non-shuffling DataLoader).
    """
    if batch_size <= 0:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    dataset = as_dataset(dataset)
    shard = shard_indices(len(dataset), num_shards, rank)
    if isinstance(dataset, TensorDataset):
        inputs, targets = (t[shard.start : shard.stop] for t in dataset.tensors)
        return list(zip(torch.split(inputs, batch_size), torch.split(targets, batch_size)))
    return DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False)


def as_dataset(dataset: Any) -> Dataset:
    """``dataset`` as a sized map-style Dataset (an (inputs, targets) pair as a TensorDataset)."""
    if isinstance(dataset, tuple) and len(dataset) == 2:
        dataset = TensorDataset(*dataset)
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
        raise InputError(
            "a data set must be an (inputs, targets) pair or a sized map-style Dataset, got "
            f"{type(dataset).__name__}"
        )
    return dataset


@dataclass(frozen=True)
class Shard:
    """Shard ``rank`` of ``num_shards`` of ``dataset``, batched on demand (``shard_batches``).

    What lets an operator be re-batched (``data.batch_size=auto``) without loading its data again:
    a tensor data set is split into views, any other is read lazily.
    """

    dataset: Any
    num_shards: int
    rank: int

    def __len__(self) -> int:
        """The samples (sequences, images) of the shard."""
        return len(shard_indices(len(as_dataset(self.dataset)), self.num_shards, self.rank))

    def batches(self, batch_size: int) -> list | DataLoader:
        """The shard's batches of ``batch_size`` samples (the last one may be smaller)."""
        return shard_batches(self.dataset, self.num_shards, self.rank, batch_size)

    def first(self, samples: int) -> Any:
        """The (inputs, targets) batch of the shard's first ``samples`` samples."""
        return next(iter(self.batches(samples)))
