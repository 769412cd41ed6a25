"""MNIST from its idx files, resized like the paper's 16x16 MNIST.

MNIST from its idx files (optionally gzipped), resized like the paper's 16x16 MNIST (torchvision's
``Resize(16)`` on PIL images, then ``ToTensor()``), with an optional seeded validation hold-out from
the 60,000 training images.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.errors import InputError, MissingFileError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An idx file: magic (0, 0, dtype code 0x08 = uint8, ndim), big-endian dims, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise InputError(f"{path} is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz", root / name.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    raise MissingFileError(
        f"{name}[.gz] not found in {root} (data.root): download MNIST's idx files there"
    )


def load_mnist(
    root: str | Path, split: str = "train", size: int = 16, holdout: int = 0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, size, size) in [0, 1] and labels (N,).

    ``split``: train, validation or test; with ``holdout`` > 0, a seeded random ``holdout`` of the
    training images is the validation split and the rest the train split (the paper holds out
    10,000).
    """
    root = Path(root)
    if split not in ("train", "validation", "test"):
        raise InputError(f"MNIST split must be train, validation or test, got {split!r}")
    if split == "validation" and not holdout:
        raise InputError(
            "MNIST's validation split is held out from the training images: set data.holdout (e.g. "
            "10000)"
        )
    pixels = read_idx(_find(root, FILES["test" if split == "test" else "train"][0]))
    labels = read_idx(_find(root, FILES["test" if split == "test" else "train"][1])).astype(
        np.int64
    )
    if split != "test" and holdout:
        if not 0 < holdout < len(labels):
            raise InputError(
                f"data.holdout must be between 1 and {len(labels) - 1} training images, got "
                f"{holdout}"
            )
        order = np.random.default_rng(seed).permutation(len(labels))
        keep = np.sort(order[:holdout] if split == "validation" else order[holdout:])
        pixels, labels = pixels[keep], labels[keep]
    images = resize_like_torchvision(pixels, size) if size != pixels.shape[-1] else pixels
    return torch.from_numpy(images.astype(np.float32) / 255.0)[:, None], torch.from_numpy(labels)


def resize_like_torchvision(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, H, W) uint8 images to (N, size, size) as torchvision does.

    (N, H, W) uint8 -> (N, size, size) uint8 as torchvision's ``Resize(size)`` does on square PIL
    images: PIL's bilinear filter (antialiased when shrinking), rounded to uint8.
    """
    return np.stack(
        [
            np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
            for image in pixels
        ]
    )
