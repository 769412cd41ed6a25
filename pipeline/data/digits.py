"""scikit-learn's handwritten digits, upsampled like the paper's 16x16 MNIST.

scikit-learn's handwritten digits (1,797 images of 8x8), upsampled like the paper's 16x16 MNIST.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.errors import InputError

SPLITS = ("all", "train", "test")


def load_digits(size: int = 16, split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as images (N, 1, size, size) float32 and labels (N,) int64.

    Images (N, 1, size, size) float32 scaled to [0, 1] (bilinear upsampling) and labels (N,) int64.
    ``split``: all 1,797 images, or a fixed split by index (every fifth image is test).
    """
    if split not in SPLITS:
        raise InputError(f"digits split must be one of {SPLITS}, got {split!r}")
    pixels, targets = digits_table()
    images = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    labels = torch.tensor(targets, dtype=torch.int64)
    if split != "all":
        keep = (torch.arange(labels.shape[0]) % 5 == 0) == (split == "test")
        images, labels = images[keep], labels[keep]
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images, labels


def digits_table() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as scikit-learn ships them: pixels (N, 64) in 0..16 and labels (N,).

    Read from the package's data file without importing scikit-learn (a second of CPU in every
    command and every Ray worker that loads the digits); its own loader where the file has moved.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return bunch.data, bunch.target
    with gzip.open(path, "rt") as table:
        rows = np.loadtxt(table, delimiter=",")
    return rows[:, :-1], rows[:, -1].astype(np.int64)
