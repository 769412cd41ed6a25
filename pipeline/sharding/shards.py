"""Balanced, deterministic sharding of a data set by sample index, and a shard's batches."""

from __future__ import annotations

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
    if isinstance(dataset, tuple) and len(dataset) == 2:
        dataset = TensorDataset(*dataset)
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
        raise InputError(
            "a data set must be an (inputs, targets) pair or a sized map-style Dataset, got "
            f"{type(dataset).__name__}"
        )
    shard = shard_indices(len(dataset), num_shards, rank)
    if isinstance(dataset, TensorDataset):
        inputs, targets = (t[shard.start : shard.stop] for t in dataset.tensors)
        return list(zip(torch.split(inputs, batch_size), torch.split(targets, batch_size)))
    return DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False)
