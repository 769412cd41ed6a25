"""CIFAR-10/100 from the python pickles (cifar-10-batches-py, cifar-100-python)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import InputError, MissingFileError

MEAN_STD = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _unpickle(path: Path) -> dict:
    if not path.exists():
        raise MissingFileError(
            f"{path} not found (data.root): extract the CIFAR python archive there"
        )
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def load_cifar(
    root: str | Path, classes: int = 10, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) normalised per channel and labels (N,) int64 (fine labels for 100)."""
    root = Path(root)
    if classes == 10:
        folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").exists() else root
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    elif classes == 100:
        folder = root / "cifar-100-python" if (root / "cifar-100-python").exists() else root
        names = ["train" if split == "train" else "test"]
        label_key = b"fine_labels"
    else:
        raise InputError(f"CIFAR has 10 or 100 classes, got {classes}")
    if split not in ("train", "test"):
        raise InputError(f"CIFAR split must be 'train' or 'test', got {split!r}")
    parts = [_unpickle(folder / name) for name in names]
    data = (
        np.concatenate([p[b"data"] for p in parts]).reshape(-1, 3, 32, 32).astype(np.float32)
        / 255.0
    )
    labels = np.concatenate([np.asarray(p[label_key]) for p in parts]).astype(np.int64)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD[classes])
    return (torch.from_numpy(data) - mean) / std, torch.from_numpy(labels)
