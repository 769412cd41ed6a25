"""Data loaders on tiny files written in each real format; model parameter counts."""

import gzip
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.data import build_dataset, class_balanced_indices, load_cifar, load_digits, load_mnist
from pipeline.data.imagenet import ImageFolder
from pipeline.data.mnist import read_idx
from pipeline.distributed import ProblemSpec, shard_batches
from pipeline.models import (
    PAPER_PARAMETER_COUNTS,
    build,
    build_from_config,
    load_checkpoint,
    tanh_mlp,
)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETER_COUNTS))
def test_parameter_counts_equal_the_papers_table_1(name):
    assert sum(p.numel() for p in build(name).parameters()) == PAPER_PARAMETER_COUNTS[name]


@pytest.mark.parametrize(
    "name, shape, classes",
    [
        ("tanh_mlp", (1, 16, 16), 10),
        ("3c3d", (3, 32, 32), 10),
        ("allcnnc", (3, 32, 32), 100),
        ("resnet18", (3, 64, 64), 1000),
    ],
)
def test_models_map_inputs_to_logits(name, shape, classes):
    assert build(name).eval()(torch.randn(2, *shape)).shape == (2, classes)


def test_seeded_initialisation_and_checkpoint_loading(tmp_path):
    a = build_from_config({"name": "tanh_mlp", "init_seed": 3})
    b = build_from_config({"name": "tanh_mlp", "init_seed": 3})
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    torch.save({"model": a.state_dict()}, tmp_path / "ckpt.pt")
    c = build_from_config(
        {"name": "tanh_mlp", "init_seed": 4, "checkpoint": str(tmp_path / "ckpt.pt")}
    )
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    with pytest.raises(FileNotFoundError, match="model.checkpoint"):
        build_from_config({"name": "tanh_mlp", "checkpoint": str(tmp_path / "missing.pt")})
    with pytest.raises(ValueError, match="unknown model"):
        build_from_config({"name": "vgg"})


def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28))
    labels = np.arange(12) % 10
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    x, y = load_mnist(tmp_path, "test", size=28)
    assert x.shape == (12, 1, 28, 28)
    np.testing.assert_allclose(x[:, 0].numpy(), images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), labels)
    assert load_mnist(tmp_path, "test", size=16)[0].shape == (12, 1, 16, 16)
    with pytest.raises(FileNotFoundError, match="data.root"):
        load_mnist(tmp_path, "train")


def test_idx_truncated_is_rejected(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(3))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def _cifar_batch(n, rng, label_key):
    return {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: list(rng.integers(0, 10, n)),
    }


def test_cifar10_pickles(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": _cifar_batch(4, rng, b"labels") for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(3, rng, b"labels")
    for name, content in batches.items():
        (folder / name).write_bytes(pickle.dumps(content))
    x, y = load_cifar(tmp_path, 10, "train")
    assert x.shape == (20, 3, 32, 32) and y.tolist() == sum(
        (b[b"labels"] for n, b in batches.items() if n != "test_batch"), []
    )
    raw = batches["data_batch_1"][b"data"][0].reshape(3, 32, 32) / 255.0
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
    np.testing.assert_allclose(
        x[0].numpy(), (raw - mean[:, None, None]) / std[:, None, None], rtol=1e-5, atol=1e-5
    )
    assert load_cifar(tmp_path, 10, "test")[0].shape == (3, 3, 32, 32)


def test_cifar100_pickles_use_fine_labels(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    content = {
        b"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8),
        b"fine_labels": [99, 3, 50, 0, 7],
        b"coarse_labels": [1] * 5,
    }
    (folder / "test").write_bytes(pickle.dumps(content))
    x, y = load_cifar(tmp_path, 100, "test")
    assert y.tolist() == [99, 3, 50, 0, 7] and x.shape == (5, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="data.root"):
        load_cifar(tmp_path, 100, "train")


def _imagenet(tmp_path, classes=("n01440764", "n01443537"), per_class=3):
    from PIL import Image

    rng = np.random.default_rng(3)
    for name in classes:
        folder = tmp_path / "val" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(
                folder / f"img{i}.JPEG"
            )
    return tmp_path


def test_imagenet_class_folders(tmp_path):
    root = _imagenet(tmp_path)
    data = ImageFolder(root, "val", resize=36, crop=32)
    assert len(data) == 6 and data.classes == ["n01440764", "n01443537"]
    x, label = data[4]
    assert x.shape == (3, 32, 32) and label == 1
    assert abs(float(x.mean())) < 3  # normalised
    loader = shard_batches(data, 2, 1, batch_size=2)
    assert [b[1].tolist() for b in loader] == [[1, 1], [1]]
    subset = build_dataset(
        {"name": "imagenet", "root": str(root), "split": "val", "subset": 4, "image_size": 32}
    )
    assert len(subset) == 4 and sorted(subset.dataset.targets[subset.indices].tolist()) == [
        0,
        0,
        1,
        1,
    ]
    with pytest.raises(FileNotFoundError, match="data.root"):
        ImageFolder(root, "train")


def test_digits_and_class_balanced_subset():
    x, y = load_digits(16)
    assert x.shape == (1797, 1, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    index = class_balanced_indices(y, 500, seed=0)
    counts = torch.bincount(y[index], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 500
    assert torch.equal(index, class_balanced_indices(y, 500, seed=0))
    assert not torch.equal(index, class_balanced_indices(y, 500, seed=1))
    with pytest.raises(ValueError, match="subset size"):
        class_balanced_indices(y, 5000)


def test_digits_read_without_scikit_learn_equal_its_loader(monkeypatch):
    """The digits file read directly (no sklearn import in commands and workers) holds what
    scikit-learn's loader returns, and its loader is used where the file is not found."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits as sklearn_digits

    from pipeline.data import digits

    bunch = sklearn_digits()
    pixels, labels = digits.digits_table()
    assert np.array_equal(pixels, bunch.data) and np.array_equal(labels, bunch.target)
    x, _ = load_digits(8)
    assert torch.equal(x[:, 0], torch.tensor(bunch.images, dtype=torch.float32) / 16.0)
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipeline.data.digits import load_digits; load_digits(); "
            "print('sklearn' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.stdout.strip() == "False", imported.stderr
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
    moved = digits.digits_table()
    assert np.array_equal(moved[0], bunch.data) and np.array_equal(moved[1], bunch.target)


def test_synthetic_and_missing_root():
    x, y = build_dataset(
        {"name": "synthetic", "samples": 50, "input_shape": [4], "num_classes": 3, "seed": 1}
    )
    assert x.shape == (50, 4) and int(y.max()) <= 2
    with pytest.raises(ValueError, match="data.root"):
        build_dataset({"name": "cifar10"})
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset({"name": "svhn"})


def test_problem_spec_counts_samples_of_a_dataset(tmp_path):
    root = _imagenet(tmp_path)
    spec = ProblemSpec(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)),
        lambda: ImageFolder(root, "val", crop=16),
    )
    assert spec.num_samples() == 6
    # 256 inputs, 768 given
    mismatched = ProblemSpec(lambda: build("tanh_mlp"), lambda: ImageFolder(root, "val", crop=16))
    with pytest.raises(ValueError, match="the model does not accept the data"):
        mismatched.num_samples()


def _foreign_file(kind: str, path) -> None:
    """Write a file that is not a torch.save checkpoint: text, empty, truncated, a zip of text."""
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save(tanh_mlp((256, 20, 10)).state_dict(), path)
        path.write_bytes(path.read_bytes()[:500])
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not tensors")


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "not a file torch.save wrote"),
        ("empty", r"empty \(0 bytes\)"),
        ("truncated", "not a file torch.save wrote"),
        ("zip", "not a file torch.save wrote"),
    ],
)
def test_unreadable_checkpoints_get_one_line_reasons(tmp_path, kind, message):
    path = tmp_path / "checkpoint.pt"
    _foreign_file(kind, path)
    with pytest.raises(ValueError, match=f"checkpoint {path} is {message}.*model.checkpoint"):
        load_checkpoint(tanh_mlp((256, 20, 10)), str(path))


@pytest.mark.parametrize(
    "content, message",
    [
        ("garbage", "not a file torch.save wrote, or is damaged"),
        ("module", "a pickled object"),
        ("other model", "does not fit the model"),
        ("tensor", "holds a Tensor, not a state dict"),
    ],
)
def test_bad_checkpoints_name_the_fix(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save(
            {
                "module": nn.Linear(2, 2),
                "other model": nn.Linear(2, 2).state_dict(),
                "tensor": torch.zeros(3),
            }[content],
            path,
        )
    with pytest.raises(ValueError, match=message):
        load_checkpoint(tanh_mlp((256, 20, 10)), str(path))


def test_mnist_resize_is_antialiased_bilinear_like_pil(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 28, 28)).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(6), False)
    x, _ = load_mnist(tmp_path, "test", size=16)
    ours = x[:, 0].numpy() * 255
    # uint8 levels, as ToTensor() on a PIL image gives
    assert np.allclose(ours, np.round(ours), atol=1e-3)
    smooth = torch.nn.functional.interpolate(
        torch.from_numpy(images[:, None].astype(np.float64)),
        size=(16, 16),
        mode="bilinear",
        antialias=True,
    )[:, 0].numpy()
    sharp = torch.nn.functional.interpolate(
        torch.from_numpy(images[:, None].astype(np.float64)),
        size=(16, 16),
        mode="bilinear",
        antialias=False,
    )[:, 0].numpy()
    assert np.abs(ours - smooth).max() <= 1.0  # torch's antialiased filter is PIL's, up to rounding
    assert np.abs(ours - sharp).max() > 20  # plain bilinear (no antialiasing) is a different image


def test_mnist_validation_holdout_is_seeded_disjoint_and_complete(tmp_path):
    images = np.arange(20 * 28 * 28).reshape(20, 28, 28) % 256
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(20), False)  # labels as image ids
    train = load_mnist(tmp_path, "train", size=28, holdout=5, seed=3)
    validation = load_mnist(tmp_path, "validation", size=28, holdout=5, seed=3)
    assert len(train[1]) == 15 and len(validation[1]) == 5
    assert set(train[1].tolist()).isdisjoint(validation[1].tolist()) and set(
        train[1].tolist()
    ) | set(validation[1].tolist()) == set(range(20))
    # images follow their labels
    torch.testing.assert_close(
        train[0][:, 0], torch.from_numpy(images[train[1].numpy()] / 255.0).float()
    )
    torch.testing.assert_close(
        load_mnist(tmp_path, "train", size=28, holdout=5, seed=3)[0], train[0]
    )
    assert not torch.equal(
        load_mnist(tmp_path, "validation", size=28, holdout=5, seed=4)[0], validation[0]
    )
    with pytest.raises(ValueError, match="data.holdout"):
        load_mnist(tmp_path, "validation", size=28)
    with pytest.raises(ValueError, match="between 1 and 19"):
        load_mnist(tmp_path, "train", size=28, holdout=20)


MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(
    not (MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="real MNIST not in ../shared/data/mnist",
)
def test_real_mnist_split_as_in_the_paper():
    train = build_dataset(
        {"name": "mnist", "root": str(MNIST), "split": "train", "holdout": 10000, "subset": None}
    )
    validation = build_dataset(
        {
            "name": "mnist",
            "root": str(MNIST),
            "split": "validation",
            "holdout": 10000,
            "subset": None,
        }
    )
    test = build_dataset(
        {"name": "mnist", "root": str(MNIST), "split": "test", "holdout": 10000, "subset": None}
    )
    assert (len(train[1]), len(validation[1]), len(test[1])) == (50000, 10000, 10000)
    assert (
        train[0].shape[1:] == (1, 16, 16)
        and 0 <= float(train[0].min())
        and float(train[0].max()) <= 1
    )
    assert torch.bincount(test[1]).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
