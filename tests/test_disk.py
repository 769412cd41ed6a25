"""A run dir on a filesystem too small for the store (a real tmpfs; skipped where it cannot be
mounted): refused before anything starts; with plan.allow_overcommit the run that fills the disk
stops in one line (exit 2, no traceback, no logging error); a rerun while the filesystem is
read-only is refused in one line; after the disk grows the rerun resumes to the uninterrupted
eigenvalues."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from pipeline.app import CONFIG_DIR, execute
from pipeline.runner import run

SEIGH = [
    "cluster=none",
    "dtype=float64",
    "curvature.product_mode=graph-reuse",
    "algorithm.k=3",
    "algorithm.outer=60",
    "algorithm.inner=120",
    "algorithm.block_size=10",
    "algorithm.refine_tol=null",
    "algorithm.error_test_vectors=0",
    "output.plots=false",
]
# the store: 7,030 x 180 float64 measurements = 10.1 MB (+ the 7,030 x 3 eigenvectors)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _cli(*overrides):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *SEIGH, *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_a_store_that_cannot_fit_is_refused_then_a_full_disk_stops_in_one_line_and_resumes(
    small_disk, tmp_path
):
    run_dir = small_disk / "run"
    refused = _cli(f"hydra.run.dir={run_dir}")
    assert (
        refused.returncode == 2
        and "the store needs 9.8 MiB more" in refused.stderr
        and "is free under" in refused.stderr
    )
    assert (
        "plan.allow_overcommit=true" in refused.stderr
        and not (run_dir / "store.zarr" / "inner").exists()
    )

    full = _cli(f"hydra.run.dir={run_dir}", "plan.allow_overcommit=true")
    assert full.returncode == 2, full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if "ERROR" in line]
    assert (
        len(errors) == 1
        and "No space left on device writing" in errors[0]
        and "of the store still to write" in errors[0]
    )
    for noise in ("Traceback", "Logging error"):
        assert noise not in full.stderr
    assert not (run_dir / "results.json").exists()

    # the filesystem turned read-only
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    readonly = _cli(f"hydra.run.dir={run_dir}")
    assert (
        readonly.returncode == 2
        and readonly.stderr.strip()
        == f"error: {run_dir} is not writable by this user: choose another hydra.run.dir"
    )

    # writable again, space freed
    subprocess.run(["mount", "-o", "remount,rw,size=32m", str(small_disk)], check=True)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        # the rerun, in this process
        assert execute(compose("config", overrides=SEIGH), run_dir) == 0
    record = json.loads((run_dir / "results.json").read_text())
    # the blocks written before the disk filled were kept
    assert 0 < record["extra"]["measured_now"] < 180
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        uninterrupted = run(compose("config", overrides=SEIGH), tmp_path)
    np.testing.assert_allclose(record["eigenvalues"], uninterrupted["eigenvalues"], rtol=1e-12)
