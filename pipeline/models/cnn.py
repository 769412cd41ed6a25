"""DeepOBS' CIFAR networks in plain torch.

3c3d (CIFAR-10, 895,210 parameters) and All-CNN-C (CIFAR-100, 1,387,108 parameters). TensorFlow
"same" padding with stride 2 pads right/bottom.
"""

from __future__ import annotations

from torch import nn


def _same_pool() -> nn.Sequential:
    """3x3 max-pool, stride 2, TF 'same' padding (after ReLU, zero padding equals -inf padding)."""
    return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, stride=2))


def c3d3(num_classes: int = 10) -> nn.Sequential:
    """3c3d: conv5x5(64)-pool-conv3x3(96)-pool-conv3x3(128, same)-pool-fc512-fc256-fc, ReLU."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 5),
        nn.ReLU(),
        _same_pool(),
        nn.Conv2d(64, 96, 3),
        nn.ReLU(),
        _same_pool(),
        nn.Conv2d(96, 128, 3, padding=1),
        nn.ReLU(),
        _same_pool(),
        nn.Flatten(),
        nn.Linear(128 * 3 * 3, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


def _strided(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(channels_in, channels_out, 3, stride=2)
    )


def all_cnn_c(num_classes: int = 100) -> nn.Sequential:
    """All-CNN-C (Springenberg et al. 2015) as in DeepOBS.

    All-CNN-C (Springenberg et al. 2015) as in DeepOBS, with its dropout (inactive in eval mode).
    """
    return nn.Sequential(
        nn.Dropout(0.2),
        nn.Conv2d(3, 96, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(96, 96, 3, padding=1),
        nn.ReLU(),
        _strided(96, 96),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv2d(96, 192, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1),
        nn.ReLU(),
        _strided(192, 192),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv2d(192, 192, 3),
        nn.ReLU(),
        nn.Conv2d(192, 192, 1),
        nn.ReLU(),
        nn.Conv2d(192, num_classes, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
