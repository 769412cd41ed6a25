"""scikit-learn's handwritten digits, upsampled like the paper's 16x16 MNIST.

scikit-learn's handwritten digits (1,797 images of 8x8), upsampled like the paper's 16x16 MNIST.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from pipeline.errors import InputError

SPLITS = ("all", "train", "test")


def load_digits(size: int = 16, split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as images (N, 1, size, size) float32 and labels (N,) int64.

    Images (N, 1, size, size) float32 scaled to [0, 1] (bilinear upsampling) and labels (N,) int64.
    ``split``: all 1,797 images, or a fixed split by index (every fifth image is test).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if split not in SPLITS:
        raise InputError(f"digits split must be one of {SPLITS}, got {split!r}")
    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    if split != "all":
        keep = (torch.arange(labels.shape[0]) % 5 == 0) == (split == "test")
        images, labels = images[keep], labels[keep]
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images, labels
