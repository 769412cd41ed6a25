"""Magnitude-mask overlap against constructed eigenspaces, chance baseline, and the CPU-sized
reproduction end to end."""

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from pipeline.analysis.overlap import magnitude_mask, mask_overlap, overlap_curve, random_mask_overlap
from pipeline.app import CONFIG_DIR, run
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
    curve = overlap_curve(mixed, theta, [1, 2, 4])
    assert curve["chance"] == [1 / dim, 2 / dim, 4 / dim]
    # k=1: the mask is the single largest entry, v_1 puts cos^2 on it
    assert curve["overlap"][0] == pytest.approx(np.cos(angle) ** 2)


def test_random_masks_give_the_chance_baseline():
    dim, k = 400, 20
    vectors, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(dim, k)))
    samples = random_mask_overlap(vectors, k, draws=2000, seed=2)
    stderr = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(samples.mean() - k / dim) < 4 * stderr


def test_training_checkpoints_are_saved_and_reused(tmp_path):
    x = torch.randn(64, 1, 16, 16)
    y = torch.randint(0, 10, (64,))
    model = build_from_config({"name": "tanh_mlp"})
    first = train_with_checkpoints(model, (x, y), (x, y), lr=0.3, batch_size=16, checkpoint_steps=[0, 5], out_dir=tmp_path)
    assert [c["step"] for c in first] == [0, 5] and first[1]["train_loss"] < first[0]["train_loss"]
    again = train_with_checkpoints(build_from_config({"name": "tanh_mlp"}), (x, y), (x, y), 0.3, 16, [0, 5], tmp_path)
    assert again == first
    assert 0.0 <= first[1]["test_accuracy"] <= 1.0
    state = torch.load(first[1]["path"], weights_only=True)
    assert not torch.equal(state["1.weight"], torch.load(first[0]["path"], weights_only=True)["1.weight"])


def test_cpu_sized_reproduction_end_to_end(tmp_path):
    overrides = ["+experiment=digits_overlap", "reproduce.checkpoint_steps=[0,30]", "algorithm.outer=30",
                 "algorithm.inner=60", "algorithm.k=10", "algorithm.block_size=30", "reproduce.overlap_ks=[1,5,10]"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=overrides)
    record = reproduce(cfg, tmp_path, run)
    saved = json.loads((tmp_path / "overlap.json").read_text())
    assert set(saved["splits"]) == {"train", "test"}
    curve = saved["splits"]["test"]["30"]
    assert curve["k"] == [1, 5, 10] and len(curve["overlap"]) == 3
    assert all(0.0 <= value <= 1.0 for value in curve["overlap"])
    assert curve["chance"][-1] == pytest.approx(10 / 7030)
    assert (tmp_path / "overlap_train.png").stat().st_size > 0 and (tmp_path / "overlap_test.png").exists()
    assert record["checkpoints"][1]["step"] == 30
    # each decomposition is a normal run with its own resumable store
    assert (tmp_path / "step_30" / "test" / "store.zarr").exists()
