"""Data sets (digits, synthetic, MNIST idx, CIFAR pickles, ImageNet folders) and fixed subsets."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Subset

from pipeline.data.cifar import load_cifar
from pipeline.data.digits import load_digits
from pipeline.data.imagenet import ImageFolder
from pipeline.data.mnist import load_mnist
from pipeline.data.subsets import batches, class_balanced_indices
from pipeline.data.synthetic import synthetic
from pipeline.errors import InputError

NAMES = ("digits", "synthetic", "mnist", "cifar10", "cifar100", "imagenet")


def build_dataset(config: dict[str, Any]) -> Any:
    """The (optionally class-balanced ``subset``-sized) data set named by ``config['name']``:
    an (inputs, targets) pair of tensors, or a lazily loading Dataset for ImageNet."""
    name = config["name"]
    if name not in NAMES:
        raise InputError(f"unknown data set {name!r} (data.name); choose one of {NAMES}")
    root = config.get("root")
    if name in ("mnist", "cifar10", "cifar100", "imagenet") and not root:
        raise InputError(f"data set {name} needs data.root=/path/to/{name}")
    split = config.get("split", "train")
    if name == "digits":
        data = load_digits(config.get("image_size", 16), split)
    elif name == "synthetic":
        data = synthetic(config["samples"], config["input_shape"], config["num_classes"], config.get("seed", 0))
    elif name == "mnist":
        data = load_mnist(root, split, config.get("image_size", 16), config.get("holdout", 0), config.get("seed", 0))
    elif name in ("cifar10", "cifar100"):
        data = load_cifar(root, 10 if name == "cifar10" else 100, split)
    else:
        data = ImageFolder(root, split, crop=config.get("image_size") or 224)
    subset = config.get("subset")
    if not subset:
        return data
    targets = data.targets if isinstance(data, ImageFolder) else data[1]
    index = class_balanced_indices(targets, subset, seed=config.get("seed", 0))
    if isinstance(data, ImageFolder):
        return Subset(data, index.tolist())
    return data[0][index], data[1][index]


__all__ = ["NAMES", "ImageFolder", "batches", "build_dataset", "class_balanced_indices", "load_cifar", "load_digits", "load_mnist", "synthetic"]
