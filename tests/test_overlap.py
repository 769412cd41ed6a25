"""Magnitude-mask overlap against constructed eigenspaces, chance baseline, and the CPU-sized
reproduction end to end."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from pipeline.analysis.overlap import magnitude_mask, mask_overlap, overlap_table
from pipeline.app import CONFIG_DIR
from pipeline.job import compile_job
from pipeline.models import build_from_config
from pipeline.reproduce import reproduce
from pipeline.train import train_with_checkpoints


def test_magnitude_mask_picks_largest_absolute_values():
    theta = np.array([0.1, -5.0, 2.0, 0.0, -3.0])
    assert sorted(magnitude_mask(theta, 3).tolist()) == [1, 2, 4]
    with pytest.raises(ValueError, match="mask size"):
        magnitude_mask(theta, 0)


def test_overlap_of_constructed_eigenspaces_equals_the_formula():
    dim, k = 50, 4
    rng = np.random.default_rng(0)
    theta = rng.normal(size=dim)
    mask = magnitude_mask(theta, k)
    outside = np.setdiff1d(np.arange(dim), mask)
    inside_basis = np.zeros((dim, k))
    inside_basis[mask, np.arange(k)] = 1.0  # eigenvectors living on the mask
    assert mask_overlap(inside_basis, mask, k) == pytest.approx(1.0)
    outside_basis = np.zeros((dim, k))
    outside_basis[outside[:k], np.arange(k)] = 1.0
    assert mask_overlap(outside_basis, mask, k) == pytest.approx(0.0)
    # v_i = cos(a) e_mask_i + sin(a) e_outside_i: ||V[M, :k]||_F^2 / k = cos(a)^2
    angle = 0.3
    mixed = np.cos(angle) * inside_basis + np.sin(angle) * outside_basis
    assert mask_overlap(mixed, mask, k) == pytest.approx(np.cos(angle) ** 2)
    table = overlap_table(mixed, theta, k, random_masks=0)
    np.testing.assert_allclose(table["chance"], np.arange(1, k + 1) / dim)
    # every k: v_1..v_k put cos^2 of their mass on the first k mask entries (ranked by |theta|)
    np.testing.assert_allclose(table["magnitude"], np.cos(angle) ** 2)
    np.testing.assert_allclose(table["best"], np.cos(angle) ** 2)  # the mask rows are the largest


def test_random_masks_give_the_chance_baseline():
    dim, k = 400, 20
    vectors, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(dim, k)))
    draws = 2000
    table = overlap_table(vectors, np.ones(dim), k, random_masks=draws, seed=2)
    # E[overlap] = k/D for a uniform mask
    np.testing.assert_allclose(table["random_mean"][4:], table["chance"][4:], rtol=0.05)
    assert table["random_p05"][-1] < k / dim < table["random_p95"][-1]


def test_overlap_table_matches_brute_force_for_every_k(tmp_path):
    dim, max_k, draws = 9, 5, 7
    rng = np.random.default_rng(3)
    vectors, _ = np.linalg.qr(rng.normal(size=(dim, 6)))
    theta = rng.normal(size=dim)
    table = overlap_table(vectors, theta, max_k, random_masks=draws, seed=11, row_block=4)
    ks = range(1, max_k + 1)
    np.testing.assert_allclose(
        table["magnitude"], [mask_overlap(vectors, magnitude_mask(theta, k), k) for k in ks]
    )
    perms = np.random.default_rng(11)
    random = np.array(
        [
            [mask_overlap(vectors, perm[:k], k) for k in ks]
            for perm in (perms.permutation(dim) for _ in range(draws))
        ]
    )
    np.testing.assert_allclose(table["random_mean"], random.mean(axis=0))
    np.testing.assert_allclose(table["random_p05"], np.percentile(random, 5, axis=0))
    best = [
        max(
            mask_overlap(vectors, np.array(mask), k)
            for mask in itertools.combinations(range(dim), k)
        )
        for k in ks
    ]
    np.testing.assert_allclose(table["best"], best)  # every mask of size k tried
    assert np.all(table["best"] >= table["magnitude"] - 1e-12) and np.all(
        table["best"] >= table["random_p95"] - 1e-12
    )
    np.testing.assert_allclose(table["chance"], np.arange(1, max_k + 1) / dim)
    import zarr

    stored = zarr.open_array(
        tmp_path / "v.zarr", mode="w", shape=vectors.shape, chunks=(4, 3), dtype="f8"
    )
    stored[:] = vectors
    again = overlap_table(stored, theta, max_k, random_masks=draws, seed=11, row_block=100)
    for key in table:
        np.testing.assert_allclose(again[key], table[key], err_msg=key)


def test_training_checkpoints_are_saved_and_reused(tmp_path):
    x = torch.randn(64, 1, 16, 16)
    y = torch.randint(0, 10, (64,))
    model = build_from_config({"name": "tanh_mlp"})
    first = train_with_checkpoints(
        model, (x, y), (x, y), lr=0.3, batch_size=16, checkpoint_steps=[0, 5], out_dir=tmp_path
    )
    assert [c["step"] for c in first] == [0, 5] and first[1]["train_loss"] < first[0]["train_loss"]
    again = train_with_checkpoints(
        build_from_config({"name": "tanh_mlp"}), (x, y), (x, y), 0.3, 16, [0, 5], tmp_path
    )
    assert again == first
    assert 0.0 <= first[1]["test_accuracy"] <= 1.0
    state = torch.load(first[1]["path"], weights_only=True)
    assert not torch.equal(
        state["1.weight"], torch.load(first[0]["path"], weights_only=True)["1.weight"]
    )


def test_cpu_sized_reproduction_end_to_end(tmp_path):
    overrides = [
        "+experiment=digits_overlap",
        "reproduce.checkpoint_steps=[0,30]",
        "algorithm.outer=30",
        "reproduce.exact=false",
        "algorithm.inner=60",
        "algorithm.k=10",
        "algorithm.block_size=30",
        "reproduce.overlap_ks=[1,5,10]",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=overrides)
    record = reproduce(compile_job(cfg), tmp_path)
    saved = json.loads((tmp_path / "overlap.json").read_text())
    assert set(saved["splits"]) == {"train", "test"} and saved["ks"] == [1, 5, 10]
    entry = saved["splits"]["test"]["30"]
    assert set(entry["overlap"]) == {"1", "5", "10"} and "exact" not in entry
    for row in entry["overlap"].values():
        assert (
            0.0
            <= row["random_p05"]
            <= row["random_mean"]
            <= row["random_p95"]
            <= row["best"]
            <= 1.0
        )
        assert row["magnitude"] <= row["best"] and row["ratio"] == pytest.approx(
            row["magnitude"] / row["chance"]
        )
    assert entry["overlap"]["10"]["chance"] == pytest.approx(10 / 7030)
    stored = np.load(tmp_path / "step_30" / "test" / "overlap.npz")  # every k in 1..K
    assert stored["magnitude"].shape == (10,) and stored["magnitude"][4] == pytest.approx(
        entry["overlap"]["5"]["magnitude"]
    )
    assert (tmp_path / "overlap_train.png").stat().st_size > 0 and (
        tmp_path / "overlap_test.png"
    ).exists()
    assert "| test | 30 |" in (tmp_path / "overlap.md").read_text()
    assert record["checkpoints"][1]["step"] == 30
    # each decomposition is a normal run with its own resumable store
    assert (tmp_path / "step_30" / "test" / "store.zarr").exists()


def test_exact_reference_matches_the_dense_hessian_and_scores_approximations():
    from pipeline.analysis.exact import compare, dense_matrix, exact_eigenpairs
    from pipeline.curvature import HessianOperator

    from helpers import classification_data, dense_hessian, small_mlp

    model = small_mlp()
    x, y = classification_data(40, (6,))
    loss = torch.nn.functional.cross_entropy
    op = HessianOperator(model, loss, [(x[:25], y[:25]), (x[25:], y[25:])])
    truth = dense_hessian(model, loss, x, y)
    torch.testing.assert_close(dense_matrix(op, block=7), truth, rtol=1e-10, atol=1e-12)
    values, vectors = exact_eigenpairs(op, 5)
    want = torch.linalg.eigvalsh(truth)
    np.testing.assert_allclose(
        values, want[torch.argsort(want.abs(), descending=True)[:5]].numpy(), rtol=1e-10
    )
    assert np.all(np.diff(np.abs(values)) <= 0)
    same = compare(values, vectors, values, -vectors, top=3)  # signs do not matter
    assert (
        same["top_max_rel_error"] == 0
        and same["top_subspace_sine"] < 1e-12
        and min(same["top_vector_cosines"]) == pytest.approx(1)
    )
    rotated = vectors.copy()
    # leaves the top-3 subspace by 0.1 rad
    rotated[:, 0] = np.cos(0.1) * vectors[:, 0] + np.sin(0.1) * vectors[:, 4]
    off = compare(values, vectors, values * np.array([1.02, 1, 1, 1, 1]), rotated, top=3)
    assert off["top_max_rel_error"] == pytest.approx(0.02) and off[
        "top_subspace_sine"
    ] == pytest.approx(np.sin(0.1))
    assert off["top_vector_cosines"][0] == pytest.approx(np.cos(0.1))


MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def test_mnist_experiment_is_the_papers_protocol():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=["+experiment=mnist_mlp"])
    assert list(cfg.reproduce.checkpoint_steps) == list(range(0, 1001, 100))
    assert (cfg.reproduce.lr, cfg.reproduce.batch_size, cfg.data.holdout, cfg.data.image_size) == (
        0.3,
        500,
        10000,
        16,
    )
    assert (
        dict(cfg.reproduce.splits) == {"train": 500, "test": 500}
        and cfg.reproduce.random_masks == 10
    )
    assert (
        cfg.algorithm.outer,
        cfg.algorithm.inner,
        cfg.algorithm.k,
        cfg.algorithm.error_test_vectors,
    ) == (355, 710, 355, 30)


@pytest.mark.slow
@pytest.mark.skipif(
    not (MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="real MNIST not in ../shared/data/mnist",
)
def test_reduced_mnist_experiment_end_to_end_against_the_dense_hessian(tmp_path):
    from pipeline.data import build_dataset
    from pipeline.models import build_from_config

    from helpers import dense_hessian

    overrides = [
        "+experiment=mnist_mlp",
        f"data.root={MNIST}",
        "reproduce.checkpoint_steps=[0,100]",
        "reproduce.splits={train: 100, test: 100}",
        "data.batch_size=50",
        "algorithm.k=30",
        "algorithm.outer=60",
        "algorithm.inner=120",
        "algorithm.block_size=30",
        "algorithm.error_test_vectors=5",
        "reproduce.overlap_ks=[1,10,30]",
        "reproduce.random_masks=4",
        "reproduce.exact_steps=null",
        # the last two layers: D = 630, so the exact eigh is quick
        "curvature.params=[9.*,11.*]",
        "dtype=float64",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=overrides)
    record = reproduce(compile_job(cfg), tmp_path)
    accuracy = [c["test_accuracy"] for c in record["checkpoints"]]
    # real MNIST: SGD at lr 0.3 learns within 100 steps (paper protocol)
    assert accuracy[0] < 0.2 < 0.4 < accuracy[1]
    for split in ("train", "test"):
        for step in (0, 100):
            entry = record["splits"][split][step]
            exact = entry["exact"]
            # a small sketch: the top is right
            assert (
                exact["eigenvalue_rel_errors"][0] < 0.05
                and len(exact["eigenvalue_rel_errors"]) == 30
            )
            stored = np.load(tmp_path / f"step_{step}" / split / "overlap.npz")
            assert stored["exact_magnitude"].shape == (30,) and np.all(
                stored["best"] >= stored["magnitude"] - 1e-12
            )
    # the exact eigenvalues are those of the dense Hessian from torch.func on the same 100 training
    # images
    model = build_from_config(
        {"name": "tanh_mlp", "checkpoint": record["checkpoints"][1]["path"]}
    ).double()
    x, y = build_dataset(
        {
            "name": "mnist",
            "root": str(MNIST),
            "split": "train",
            "holdout": 10000,
            "subset": 100,
            "seed": 0,
        }
    )
    truth = torch.linalg.eigvalsh(
        dense_hessian(
            model,
            torch.nn.functional.cross_entropy,
            x.double(),
            y,
            names=["9.weight", "9.bias", "11.weight", "11.bias"],
        )
    )
    want = truth[torch.argsort(truth.abs(), descending=True)[:30]].numpy()
    np.testing.assert_allclose(
        record["splits"]["train"][100]["exact"]["eigenvalues"], want, rtol=1e-8, atol=1e-12
    )
    report = (tmp_path / "overlap.md").read_text()
    assert "| train | 100 |" in report and "SEIGH against the exact eigendecomposition" in report
    assert (tmp_path / "overlap_train.png").stat().st_size > 0
