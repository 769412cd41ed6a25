"""SGD training with parameter checkpoints at chosen steps (the paper's Table 1 settings)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 1024) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(dim=1) == y).sum()) for x, y in zip(inputs.split(batch_size), targets.split(batch_size)))
    return correct / targets.shape[0]


def train_with_checkpoints(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    lr: float,
    batch_size: int,
    checkpoint_steps: Sequence[int],
    out_dir: Path,
    seed: int = 0,
) -> list[dict]:
    """Plain SGD on cross-entropy with shuffled mini-batches (seeded); saves ``step_<s>.pt``
    (state dict) at every step in ``checkpoint_steps`` with its test accuracy, listed in
    ``checkpoints.json``. Existing checkpoints are reused (a rerun continues, not restarts)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = sorted(set(int(s) for s in checkpoint_steps))
    if not steps or steps[0] < 0:
        raise ValueError(f"checkpoint steps must be non-negative, got {list(checkpoint_steps)}")
    manifest_path = out_dir / "checkpoints.json"
    manifest = {entry["step"]: entry for entry in json.loads(manifest_path.read_text())} if manifest_path.exists() else {}
    if all(step in manifest for step in steps):
        return [manifest[step] for step in steps]
    x, y = train
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.functional.cross_entropy
    order, cursor = torch.randperm(x.shape[0], generator=gen), 0
    for step in range(steps[-1] + 1):
        if step in steps:
            path = out_dir / f"step_{step}.pt"
            torch.save(model.state_dict(), path)
            with torch.no_grad():
                train_loss = float(loss_fn(model.eval()(x), y))
            manifest[step] = {"step": step, "path": str(path), "test_accuracy": accuracy(model, *test), "train_loss": train_loss}
            log.info("step %d: test accuracy %.3f, train loss %.4f", step, manifest[step]["test_accuracy"], manifest[step]["train_loss"])
            manifest_path.write_text(json.dumps(sorted(manifest.values(), key=lambda e: e["step"]), indent=2))
        if step == steps[-1]:
            break
        if cursor + batch_size > x.shape[0]:
            order, cursor = torch.randperm(x.shape[0], generator=gen), 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        model.train()
        optimizer.zero_grad()
        loss = loss_fn(model(x[index]), y[index])
        if not torch.isfinite(loss):
            raise ValueError(f"training diverged at step {step} (loss {loss.item()}): lower train.lr")
        loss.backward()
        optimizer.step()
    return [manifest[step] for step in steps]
