"""Data sets (digits, synthetic, MNIST idx, CIFAR pickles, ImageNet folders) and fixed subsets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Subset

from pipeline.data.cifar import load_cifar
from pipeline.data.digits import load_digits
from pipeline.data.imagenet import ImageFolder
from pipeline.data.mnist import load_mnist
from pipeline.data.subsets import batches, class_balanced_indices
from pipeline.data.synthetic import synthetic
from pipeline.data.tokens import TokenSequences, load_tokens
from pipeline.errors import InputError


def _digits(config: dict[str, Any]) -> Any:
    return load_digits(config.get("image_size", 16), config.get("split", "train"))


def _synthetic(config: dict[str, Any]) -> Any:
    return synthetic(
        config["samples"], config["input_shape"], config["num_classes"], config.get("seed", 0)
    )


def _mnist(config: dict[str, Any]) -> Any:
    return load_mnist(
        config["root"],
        config.get("split", "train"),
        config.get("image_size", 16),
        config.get("holdout", 0),
        config.get("seed", 0),
    )


def _cifar(classes: int) -> Callable[[dict[str, Any]], Any]:
    return lambda config: load_cifar(config["root"], classes, config.get("split", "train"))


def _imagenet(config: dict[str, Any]) -> Any:
    return ImageFolder(
        config["root"], config.get("split", "train"), crop=config.get("image_size") or 224
    )


# name -> (loader of a data config, whether it needs data.root): the data group's options
DATASETS: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]] = {
    "digits": (_digits, False),
    "synthetic": (_synthetic, False),
    "mnist": (_mnist, True),
    "cifar10": (_cifar(10), True),
    "cifar100": (_cifar(100), True),
    "imagenet": (_imagenet, True),
    "tokens": (load_tokens, True),
}
NAMES = tuple(DATASETS)


def build_dataset(config: dict[str, Any]) -> Any:
    """The (optionally class-balanced ``subset``-sized) data set named by ``config['name']``.

    An (inputs, targets) pair of tensors, or a lazily loading Dataset for ImageNet.
    """
    name = config["name"]
    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r} (data.name); choose one of {NAMES}")
    load, needs_root = DATASETS[name]
    if needs_root and not config.get("root"):
        raise InputError(f"data set {name} needs data.root=/path/to/{name}")
    data = load(config)
    subset = config.get("subset")
    if not subset:
        return data
    if isinstance(data, TokenSequences):  # no classes to balance
        return data.subset(subset, config.get("seed", 0))
    targets = data.targets if isinstance(data, ImageFolder) else data[1]
    index = class_balanced_indices(targets, subset, seed=config.get("seed", 0))
    if isinstance(data, ImageFolder):
        return Subset(data, index.tolist())
    return data[0][index], data[1][index]


__all__ = [
    "DATASETS",
    "NAMES",
    "ImageFolder",
    "TokenSequences",
    "batches",
    "build_dataset",
    "class_balanced_indices",
    "load_cifar",
    "load_digits",
    "load_mnist",
    "synthetic",
]
