"""Real cluster clients: a Ray head started with `ray start` and a job sent with
jobs/ray/submit.sh (the Jobs API through the dashboard), and a two-node Ray cluster whose
workers write one store that equals the single-process result."""

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deployment import ROOT
from helpers import wait_for_marks

pytestmark = pytest.mark.ray

BIN = Path(sys.executable).parent
SMALL_SEIGH = [
    "dtype=float64",
    "data.subset=100",
    "algorithm.k=3",
    "algorithm.outer=30",
    "algorithm.inner=60",
    "algorithm.block_size=10",
    "algorithm.refine_tol=null",
    "output.plots=false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    # workers at normal priority, as seigh.sbatch starts them: Ray's nice 15 starves them beside
    # other tests
    return {
        **env,
        "PATH": f"{BIN}:{env['PATH']}",
        "RAY_AUTH_MODE": "disabled",
        "RAY_worker_niceness": "0",
        **extra,
    }


def _wait_for(url_port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", url_port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listens on port {url_port} after {timeout_s} s")


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _in_process(overrides: list[str], run_dir: Path) -> dict:
    """The record of the same job run in this process (cluster=none): the reference."""
    from hydra import compose, initialize_config_dir

    from pipeline.app import CONFIG_DIR
    from pipeline.runner import run

    run_dir.mkdir(parents=True)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return run(compose("config", overrides=[*overrides, "cluster=none"]), run_dir)


@contextlib.contextmanager
def started_head(dashboard: bool) -> Iterator[tuple[str, str, str]]:
    """`ray start --head --block` (with a dashboard or without), session files under a short temp
    dir; stopped (with all its processes) afterwards. Yields the GCS address, the dashboard's http
    address and the temp dir."""
    # short: Ray's socket paths have a length limit
    temp_dir = tempfile.mkdtemp(prefix="rh-", dir="/tmp")
    port, dashboard_port = _free_port(), _free_port()
    # the agents' ports too: their defaults (52365, ...) collide with another Ray on this machine (a
    # parallel test process)
    agents = [
        f"--{name}={_free_port()}"
        for name in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    ]
    options = [
        f"--include-dashboard={str(dashboard).lower()}",
        f"--dashboard-port={dashboard_port}",
        "--dashboard-host=127.0.0.1",
    ]
    head = subprocess.Popen(
        [
            BIN / "ray",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            *options,
            *agents,
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(dashboard_port if dashboard else port, timeout_s=90)
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", temp_dir
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=3)
        # `ray start --block` can take half a minute to stop: its session is killed whole
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def ray_head():
    """A head with a dashboard (the Jobs API): yields the dashboard's http address."""
    pytest.importorskip("aiohttp", reason="needs ray[default] (pip install -e .[cluster])")
    with started_head(dashboard=True) as (_, dashboard, _):
        yield dashboard


def _submitted(dashboard: str, run_dir: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    """jobs/ray/submit.sh with ``overrides``, waiting for the job to end (its log on stdout)."""
    deadline = time.monotonic() + 120
    # the dashboard answers before its job agent is up: "No available agent to submit job, please
    # try again later"
    while True:
        result = subprocess.run(
            ["bash", ROOT / "jobs/ray/submit.sh", *overrides],
            capture_output=True,
            text=True,
            timeout=420,
            env=_env(RAY_ADDRESS=dashboard, OUTPUT_DIR=str(run_dir)),
        )
        if "No available agent" not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(1)


def _measuring_interval(run_dir: Path) -> tuple[float, float]:
    """When a run's workers wrote their first and last completion marks (file times)."""
    marks = [
        path.stat().st_mtime
        for name in ("inner_done", "outer_done")
        for path in (run_dir / "store.zarr" / name / "c").iterdir()
    ]
    return min(marks), max(marks)


# the product mode pinned: a job alone and in a sweep compute alike
SWEEP = [*SMALL_SEIGH, "curvature.product_mode=reverse-over-reverse"]


@functools.cache
def _solo_eigenvalues(seed: int) -> list[float]:
    """The eigenvalues of the SWEEP job with ``seed`` run alone in this process (computed once per
    test process: the sweep tests share them)."""
    with tempfile.TemporaryDirectory() as folder:
        return _in_process([*SWEEP, f"seed={seed}"], Path(folder) / "solo")["eigenvalues"]


@pytest.mark.slow
def test_three_jobs_sent_at_once_to_one_head_queue_for_its_cpus_each_with_its_solo_eigenvalues(
    ray_head, tmp_path
):
    # the head's 2 CPUs: two jobs at a time, the third queued
    seeds, one_cpu = range(3), ["cluster.num_workers=1", "cluster.cpus_per_worker=1"]
    # three `ray job submit`s at once, each with its own run dir
    with ThreadPoolExecutor(len(seeds)) as pool:
        jobs = list(
            pool.map(
                lambda seed: _submitted(
                    ray_head, tmp_path / f"job{seed}", [*SWEEP, *one_cpu, f"seed={seed}"]
                ),
                seeds,
            )
        )
    for seed, job in zip(seeds, jobs):
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        log = job.stdout + job.stderr
        assert (
            "succeeded" in log
            and "uploading the pipeline package" in log
            and f"run directory: {tmp_path / f'job{seed}'}" in log
        )
        assert "1 Ray workers ready on 1 nodes (1 CPUs, 0 GPUs each)" in log
    intervals = [_measuring_interval(tmp_path / f"job{seed}") for seed in seeds]
    at_once = max(
        sum(start <= moment <= end for start, end in intervals) for moment, _ in intervals
    )
    # queued for the head's 2 CPUs, never more jobs' workers than that at once
    assert at_once <= 2, intervals
    solo = [_solo_eigenvalues(seed) for seed in seeds]
    for seed in seeds:
        record = _results(tmp_path / f"job{seed}")
        assert record["config"]["cluster"]["mode"] == "ray" and record["config"]["seed"] == seed
        np.testing.assert_allclose(record["eigenvalues"], solo[seed], rtol=1e-10)
    # the seeds' sketches differ: a job that ran another's would show
    assert len({round(values[0], 6) for values in solo}) == len(seeds)


@pytest.mark.slow
def test_a_multirun_shares_one_local_ray_and_each_job_gives_its_solo_eigenvalues(tmp_path):
    sweep = [*SWEEP, "cluster=local", "cluster.num_workers=1"]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--multirun",
            "seed=0,1",
            *sweep,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=420,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("started a local Ray instance") == 1, run.stderr[-3000:]
    assert run.stderr.count("using the local Ray instance of the previous job") == 1
    for seed in range(2):
        record = _results(tmp_path / "sweep" / str(seed))
        assert record["config"]["seed"] == seed
        np.testing.assert_allclose(record["eigenvalues"], _solo_eigenvalues(seed), rtol=1e-10)


CLUSTER_SCRIPT = """  # argv: Ray's temp dir (also $RAY_TMPDIR), then the pipeline overrides
import json, subprocess, sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    run = subprocess.run([sys.executable, "-m", "pipeline", "cluster=ray",
    f"cluster.address={cluster.address}", "cluster.num_workers=2",
                          "cluster.cpus_per_worker=1", *sys.argv[2:]], capture_output=True,
                          text=True)
    print(json.dumps({"code": run.returncode, "log": run.stderr}))
finally:
    cluster.shutdown()
"""


@pytest.mark.slow
def test_two_node_cluster_writes_one_store_equal_to_the_single_process_result(tmp_path):
    two_nodes, single = tmp_path / "two_nodes", tmp_path / "single"
    temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                CLUSTER_SCRIPT,
                temp_dir,
                *SMALL_SEIGH,
                f"hydra.run.dir={two_nodes}",
            ],
            capture_output=True,
            text=True,
            env=_env(RAY_TMPDIR=temp_dir),
            timeout=420,
        )
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    run = json.loads(out.stdout.strip().splitlines()[-1])
    assert run["code"] == 0, run["log"][-3000:]
    # one CPU per node forces one worker on each
    assert "2 Ray workers ready on 2 nodes (1 CPUs, 0 GPUs each)" in run["log"]
    got, want = _results(two_nodes), _in_process(SMALL_SEIGH, single)
    np.testing.assert_allclose(got["eigenvalues"], want["eigenvalues"], rtol=1e-10)
    np.testing.assert_allclose(got["residuals"], want["residuals"], rtol=1e-6, atol=1e-12)
    assert (two_nodes / "store.zarr").is_dir() and not any(
        p.name.endswith(".zarr") for p in two_nodes.iterdir() if p.name != "store.zarr"
    )


def _pid_of(program: str, temp_dir: str) -> int:
    """The pid of the process running ``program`` with ``temp_dir`` on its command line.

    The pid of the process running ``program`` with ``temp_dir`` on its command line (one head's
    GCS).
    """
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if (
            entry.name.isdigit()
            and command[0].endswith(program.encode())
            and any(temp_dir.encode() in part for part in command)
        ):
            return int(entry.name)
    raise LookupError(f"no {program} under {temp_dir}")


def _workers_of(raylet: int) -> list[int]:
    """The pids of the Ray workers (``ray::...`` processes) a raylet started."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == raylet and command.startswith(b"ray::"):
            found.append(int(entry.name))
    assert found, f"no workers under raylet {raylet}"
    return found


@pytest.mark.slow
def test_a_lost_head_ends_the_driver_in_one_line_within_the_timeout_and_a_new_head_resumes(
    tmp_path,
):
    run_dir, single = tmp_path / "run", tmp_path / "single"
    overrides = [
        *SMALL_SEIGH,
        "algorithm.block_size=3",
        "curvature.product_mode=graph-reuse",
        "cluster.num_workers=2",
        "cluster.connect_timeout_s=20",
    ]
    with started_head(dashboard=False) as (address, _, temp_dir):
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "cluster=ray",
                f"cluster.address={address}",
                *overrides,
                f"hydra.run.dir={run_dir}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        wait_for_marks(run_dir / "store.zarr" / "inner_done", 3)
        # the head's node fails: its workers freeze (else they finish the products without the GCS)
        # and its GCS dies
        frozen = _workers_of(_pid_of("raylet", temp_dir))
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        os.kill(_pid_of("gcs_server", temp_dir), signal.SIGKILL)
        lost = time.monotonic()
        output, _ = driver.communicate(timeout=120)
        took = time.monotonic() - lost
        for pid in frozen:
            # gone already: the raylet ends its workers once the GCS is lost
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert driver.returncode == 2 and took < 20, output[-3000:]  # within cluster.connect_timeout_s
    ours = [line for line in output.splitlines() if "[ERROR]" in line]
    assert (
        len(ours) == 1
        and "lost the Ray cluster: its head at" in ours[0]
        and "rerun the same command" in ours[0]
    ), output[-3000:]
    assert "Traceback" not in output
    with started_head(dashboard=False) as (address, _, _):
        rerun = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "cluster=ray",
                f"cluster.address={address}",
                *overrides,
                f"hydra.run.dir={run_dir}",
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
        )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = _results(run_dir)
    # some blocks (on a busy machine, where the test acts seconds after the third mark: all of
    # them) came from the store
    assert resumed["extra"]["measured_now"] < 90
    np.testing.assert_allclose(
        resumed["eigenvalues"], _in_process(overrides, single)["eigenvalues"], rtol=1e-10
    )
