"""Fixed, class-balanced subsets and batching."""

from __future__ import annotations

import torch

from pipeline.errors import InputError


def class_balanced_indices(
    targets: torch.Tensor, size: int, seed: int = 0, key: str = "data.subset"
) -> torch.Tensor:
    """``size`` seeded sample indices with classes as equal as possible.

    ``size`` sample indices with classes as equal as possible (the first size % C classes get one
    more), drawn without replacement by a seeded permutation; returned sorted. ``key`` names the
    setting in errors: a size below the class count C is refused (classes would be left out).
    """
    classes = torch.unique(targets)
    if size <= 0 or size > targets.shape[0]:
        raise InputError(
            f"subset size ({key}) must be in 1..{targets.shape[0]} (the data set size), got {size}"
        )
    if size < len(classes):
        raise InputError(
            f"{key}={size} is smaller than the {len(classes)} classes of the data: a "
            "class-balanced subset would "
            f"leave classes out; use at least {len(classes)} (or null for all samples)"
        )
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for rank, label in enumerate(classes.tolist()):
        members = torch.nonzero(targets == label).flatten()
        want = size // len(classes) + (1 if rank < size % len(classes) else 0)
        if want > members.numel():
            raise InputError(
                f"class {label} has only {members.numel()} samples, a balanced subset of {size} "
                f"needs {want}"
            )
        chosen.append(members[torch.randperm(members.numel(), generator=gen)[:want]])
    return torch.sort(torch.cat(chosen)).values


def batches(
    inputs: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive (inputs, targets) batches; the last may be smaller."""
    if batch_size <= 0:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    return list(zip(torch.split(inputs, batch_size), torch.split(targets, batch_size)))
