"""SGD training with parameter checkpoints at chosen steps (the paper's Table 1 settings)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pipeline.errors import InputError
from pipeline.progress import tracked

log = logging.getLogger(__name__)


def as_dataset(data: Any) -> Dataset:
    """An (inputs, targets) pair of tensors as a TensorDataset; a Dataset as it is."""
    return TensorDataset(*data) if isinstance(data, tuple) else data


def evaluate(
    model: nn.Module, data: Any, device: torch.device, batch_size: int = 512
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` in eval mode over ``data``."""
    model.eval()
    loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in DataLoader(as_dataset(data), batch_size=batch_size):
            out = model(x.to(device))
            y = y.to(device)
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(dim=1) == y).sum())
            count += y.shape[0]
    return loss / count, correct / count


def _batches(
    data: Dataset, batch_size: int, gen: torch.Generator, workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled mini-batches (a fresh seeded permutation every epoch)."""
    while True:
        yield from DataLoader(
            data,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            generator=gen,
            num_workers=workers,
        )


def train_with_checkpoints(
    model: nn.Module,
    train: Any,
    test: Any,
    lr: float,
    batch_size: int,
    checkpoint_steps: Sequence[int],
    out_dir: Path,
    seed: int = 0,
    device: str | torch.device = "cpu",
    loader_workers: int = 0,
) -> list[dict]:
    """Plain SGD on cross-entropy, saving a checkpoint at every listed step.

    Plain SGD on cross-entropy over seeded shuffled mini-batches of ``train`` (tensor pair or
    Dataset); saves ``step_<s>.pt`` (state dict) at every step in ``checkpoint_steps`` with its
    train loss and test accuracy, listed in ``checkpoints.json``. If every checkpoint exists already
    they are reused (a rerun continues with the eigendecompositions).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = sorted(set(int(s) for s in checkpoint_steps))
    if not steps or steps[0] < 0:
        raise InputError(f"checkpoint steps must be non-negative, got {list(checkpoint_steps)}")
    manifest_path = out_dir / "checkpoints.json"
    manifest = (
        {entry["step"]: entry for entry in json.loads(manifest_path.read_text())}
        if manifest_path.exists()
        else {}
    )
    if all(step in manifest for step in steps):
        return [manifest[step] for step in steps]
    device = torch.device(device)
    model.to(device)
    train_set = as_dataset(train)
    if len(train_set) < batch_size:
        raise InputError(f"batch_size {batch_size} exceeds the {len(train_set)} training samples")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    batches = _batches(train_set, batch_size, torch.Generator().manual_seed(seed), loader_workers)
    for step in tracked(range(steps[-1] + 1), total=steps[-1] + 1, desc="training", unit="steps"):
        if step in steps:
            manifest[step] = _checkpoint(model, step, out_dir, train_set, test, device)
            manifest_path.write_text(
                json.dumps(sorted(manifest.values(), key=lambda e: e["step"]), indent=2)
            )
        if step == steps[-1]:
            continue  # the last checkpoint: no step after it
        x, y = next(batches)
        model.train()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        if not torch.isfinite(loss):
            raise InputError(
                f"training diverged at step {step} (loss {loss.item()}): lower reproduce.lr"
            )
        loss.backward()
        optimizer.step()
    return [manifest[step] for step in steps]


def _checkpoint(
    model: nn.Module, step: int, out_dir: Path, train: Any, test: Any, device: torch.device
) -> dict[str, Any]:
    """Save the state dict as ``step_<step>.pt``: its entry with train loss and test accuracy."""
    path = out_dir / f"step_{step}.pt"
    torch.save({name: t.cpu() for name, t in model.state_dict().items()}, path)
    train_loss, _ = evaluate(model, train, device)
    _, test_accuracy = evaluate(model, test, device)
    log.info("step %d: test accuracy %.3f, train loss %.4f", step, test_accuracy, train_loss)
    return {
        "step": step,
        "path": str(path),
        "test_accuracy": test_accuracy,
        "train_loss": train_loss,
    }
