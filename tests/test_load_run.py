"""``pipeline.load_run``: any algorithm's run directory read back.

``pipeline.load_run``: any algorithm's run directory read back, equal to what the run computed.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import pipeline
from pipeline import outputs
from pipeline.app import CONFIG_DIR
from pipeline.runner import run
from pipeline.solvers import outcomes
from pipeline.store import StoredMatrix

# D = 210
SMALL = [
    "cluster=none",
    "dtype=float64",
    "data.subset=100",
    "output.plots=false",
    "curvature.params=[11.*]",
]


def _run(tmp_path, *overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=[*SMALL, *overrides])
    return run(cfg, tmp_path), tmp_path


@pytest.mark.parametrize(
    "algorithm",
    [
        ["algorithm=lanczos", "algorithm.k=4"],
        [
            "algorithm=seigh",
            "algorithm.k=4",
            "algorithm.outer=40",
            "algorithm.inner=80",
            "algorithm.block_size=10",
        ],
    ],
)
def test_eigensolver_runs_load_with_their_vectors(tmp_path, algorithm):
    record, run_dir = _run(tmp_path, *algorithm)
    loaded = pipeline.load_run(run_dir)
    assert loaded.algorithm == record["algorithm"] and loaded.record["matvecs"] == record["matvecs"]
    np.testing.assert_array_equal(loaded.eigenvalues, record["eigenvalues"])
    np.testing.assert_array_equal(loaded.residuals, record["residuals"])
    assert loaded.flags["all_converged"] == all(loaded.converged) == record["all_converged"]
    # small: eigenvectors.npy for SEIGH too
    assert isinstance(loaded.eigenvectors, np.ndarray) and loaded.eigenvectors.shape == (210, 4)
    vectors = torch.from_numpy(loaded.eigenvectors)
    torch.testing.assert_close(
        vectors.T @ vectors, torch.eye(4, dtype=torch.float64), atol=1e-8, rtol=0
    )


def test_large_stored_vectors_stay_in_the_store_and_load_by_row_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(outcomes, "VECTORS_NPY_MAX_BYTES", 100)
    record, run_dir = _run(
        tmp_path,
        "algorithm=seigh",
        "algorithm.k=3",
        "algorithm.outer=30",
        "algorithm.inner=60",
        "algorithm.block_size=10",
    )
    assert not (run_dir / "eigenvectors.npy").exists()
    loaded = pipeline.load_run(run_dir)
    assert isinstance(loaded.eigenvectors, StoredMatrix) and loaded.eigenvectors.shape == (210, 3)
    assert loaded.eigenvectors[:5].shape == (5, 3)
    np.testing.assert_array_equal(loaded.eigenvalues, record["eigenvalues"])


@pytest.mark.parametrize(
    "algorithm",
    [
        ["algorithm=trace", "algorithm.num_matvecs=30"],
        ["algorithm=density", "algorithm.num_probes=2", "algorithm.num_steps=10"],
    ],
)
def test_trace_and_density_runs_load_without_eigenpairs(tmp_path, algorithm):
    record, run_dir = _run(tmp_path, *algorithm)
    loaded = pipeline.load_run(run_dir)
    assert (
        loaded.eigenvalues is None
        and loaded.eigenvectors is None
        and loaded.converged is None
        and loaded.flags == {}
    )
    assert loaded.record["trace"] == record["trace"]


@pytest.mark.parametrize(
    "algorithm",
    [
        ["algorithm=power", "algorithm.k=2", "algorithm.max_iter=5"],
        ["algorithm=sketch", "algorithm.sketch_size=12"],
        [
            "algorithm=lanczos",
            "algorithm.k=2",
            "output.landscape=true",
            "output.landscape_points=3",
            "output.plots=true",
        ],
    ],
)
def test_every_key_of_results_json_is_in_the_documented_schema(tmp_path, algorithm):
    record, run_dir = _run(tmp_path, *algorithm)
    documented = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    assert (
        record["schema_version"] == outputs.SCHEMA_VERSION
        and f"schema version {outputs.SCHEMA_VERSION}" in documented
    )
    keys = set(json.loads((run_dir / "results.json").read_text()))
    assert {key for key in keys if f"`{key}`" not in documented} == set()
    assert {name for name in record.get("figures", [])} <= {p.name for p in run_dir.glob("*.png")}


def test_unfinished_and_damaged_run_dirs_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="has not finished: rerun its command"):
        pipeline.load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        pipeline.load_run(tmp_path / "absent")
    (tmp_path / "results.json").write_text(json.dumps({"algorithm": "lanczos"})[:-3])
    with pytest.raises(ValueError, match="results.json is damaged"):
        pipeline.load_run(tmp_path)
