"""MNIST from its idx files (optionally gzipped), resized like the paper's 16x16 MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """An idx file: magic (0, 0, dtype code 0x08 = uint8, ndim), big-endian dims, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz", root / name.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name}[.gz] not found in {root} (data.root): download MNIST's idx files there")


def load_mnist(root: str | Path, split: str = "train", size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, size, size) in [0, 1] (bilinear resize from 28x28) and labels (N,)."""
    root = Path(root)
    if split not in FILES:
        raise ValueError(f"MNIST split must be one of {sorted(FILES)}, got {split!r}")
    images = torch.from_numpy(read_idx(_find(root, FILES[split][0])).astype(np.float32) / 255.0)[:, None]
    labels = torch.from_numpy(read_idx(_find(root, FILES[split][1])).astype(np.int64))
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images, labels
