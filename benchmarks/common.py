"""Shared pieces of the benchmark scripts: timing and the benchmark problems."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from pipeline.data.digits import load_digits
from pipeline.data.subsets import class_balanced_indices
from pipeline.models.mlp import tanh_mlp


def count_calls(owner: object, name: str) -> dict[str, int]:
    """Replace ``owner.name`` by a wrapper counting its calls; returns the live counter."""
    calls = {"n": 0}
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    setattr(owner, name, counted)
    return calls


def best_time(
    fn: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
    statistic: Callable = statistics.median,
) -> float:
    """``statistic`` (default the median) of the wall times of ``fn`` in seconds over ``repeats``
    runs after ``warmup`` runs; ``min`` estimates the intrinsic cost on a noisy machine."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistic(times)


def digits_problem(
    widths: tuple[int, ...], samples: int = 1000, train_steps: int = 300, seed: int = 0
):
    """A tanh-MLP briefly trained (SGD, lr 0.3, full batch) on a class-balanced digits subset.

    Returns (model, loss_fn, inputs, targets); the spectrum of a trained net decays like the
    paper's, which is what the eigensolver comparisons need.
    """
    torch.manual_seed(seed)
    x, y = load_digits()
    index = class_balanced_indices(y, samples, seed=seed)
    x, y = x[index], y[index]
    model = tanh_mlp(widths)
    loss_fn = nn.functional.cross_entropy
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    for _ in range(train_steps):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return model.eval(), loss_fn, x, y
