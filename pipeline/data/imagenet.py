"""ImageNet as class folders (root/<split>/<wnid>/*.JPEG), loaded lazily with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from pipeline.errors import InputError, MissingFileError

EXTENSIONS = {".jpeg", ".jpg", ".png"}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class ImageFolder(Dataset):
    """Map-style data set: sample i -> (image (3, crop, crop) normalised, class index).

    Classes are the sorted sub-folder names; images are resized (shorter side ``resize``),
    centre-cropped to ``crop`` and normalised with ImageNet's mean and std.
    """

    def __init__(self, root: str | Path, split: str = "train", resize: int = 256, crop: int = 224):
        folder = Path(root) / split
        if not folder.is_dir():
            raise MissingFileError(
                f"{folder} is not a directory (data.root, data.split): expected "
                f"<root>/{split}/<class>/*.JPEG"
            )
        self.classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not self.classes:
            raise InputError(f"{folder} has no class sub-folders")
        self.samples = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((folder / name).iterdir())
            if path.suffix.lower() in EXTENSIONS
        ]
        self.targets = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        self.resize, self.crop = resize, crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(array).permute(2, 0, 1)[None]
        height, width = x.shape[-2:]
        scale = self.resize / min(height, width)
        x = F.interpolate(
            x,
            size=(round(height * scale), round(width * scale)),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
        top, left = (x.shape[1] - self.crop) // 2, (x.shape[2] - self.crop) // 2
        x = x[:, top : top + self.crop, left : left + self.crop]
        return (x - MEAN) / STD, label
