"""scikit-learn's handwritten digits (1,797 images of 8x8), upsampled like the paper's 16x16 MNIST."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def load_digits(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, size, size) float32 scaled to [0, 1] (bilinear upsampling) and labels (N,) int64."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images, torch.tensor(bunch.target, dtype=torch.int64)
