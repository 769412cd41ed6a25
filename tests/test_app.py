"""The Hydra app: composition, bad overrides, the default job end to end, resume after a kill."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from scipy.integrate import trapezoid  # np.trapezoid needs numpy >= 2.0
from torch import nn

from pipeline.app import CONFIG_DIR, execute
from pipeline.curvature import HessianOperator
from pipeline.data import build_dataset
from pipeline.data.subsets import batches
from pipeline.linalg import lanczos
from pipeline.models import build_from_config
from pipeline.runner import run

from helpers import wait_for_marks

GROUPS = {
    group: sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
    for group in ("model", "data", "curvature", "algorithm", "cluster", "experiment")
}


def app(*overrides, env=None, prefix=(), **kwargs):
    """Run ``python -m pipeline *overrides`` (after the command ``prefix``).

    ``python -m pipeline *overrides`` (after the command ``prefix``, e.g. one that drops
    privileges).
    """
    env = env or {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_AUTH_MODE": "disabled",
    }
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pipeline", *overrides],
        capture_output=True,
        text=True,
        env=env,
        **kwargs,
    )


@pytest.mark.parametrize(
    "group, option", [(g, o) for g, options in GROUPS.items() for o in options]
)
def test_every_config_group_option_composes(group, option):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(
            "config",
            overrides=[f"{group}={option}"] if group != "experiment" else [f"+experiment={option}"],
        )
    assert cfg.algorithm.name and cfg.model.name
    if "k" in cfg.algorithm:  # eigensolvers; trace, density and sketch take no k
        assert cfg.algorithm.k > 0


def test_the_deprecated_hvp_mode_key_still_picks_the_product_mode_with_a_warning(caplog):
    from pipeline.job import compile_job

    with caplog.at_level("WARNING", logger="pipeline"):
        job = compile_job(_compose("curvature=ggn", "curvature.hvp_mode=graph-reuse"))
    assert (
        job.curvature.product_mode == "graph-reuse"
        and job.problem.operator_options["product_mode"] == "graph-reuse"
    )
    assert "curvature.hvp_mode is deprecated: use curvature.product_mode" in caplog.text
    assert "hvp_mode" not in job.config["curvature"]  # results.json records the new key only
    # a store of either resumes
    assert job.fingerprint == compile_job(_compose("curvature=ggn")).fingerprint


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher.max_num_timeout == 3


def test_experiment_parameter_counts_match_the_paper():
    from pipeline.job import plain
    from pipeline.models import PAPER_PARAMETER_COUNTS, build_from_config

    for experiment in GROUPS["experiment"]:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            cfg = compose("config", overrides=[f"+experiment={experiment}"])
        model = build_from_config(plain(cfg.model))
        assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMETER_COUNTS[cfg.model.name]


@pytest.mark.parametrize(
    "override, message",
    [
        ("algorithm.bogus=1", "bogus"),
        ("algorithm.k=ten", "k"),
        ("cluster.num_workers=[1]", "num_workers"),
        # a key the chosen algorithm does not take
        ("algorithm=trace algorithm.outer=3", "algorithm.outer"),
        ("algorithm=density algorithm.tol=0.1", "algorithm.tol"),
    ],
)
def test_bad_override_fails_at_composition(override, message):
    with pytest.raises(ConfigCompositionException) as refused:
        _compose(*override.split())
    assert message in f"{refused.value} {refused.value.__cause__}"


def test_a_composition_error_on_the_command_line_has_no_traceback(tmp_path):
    result = app("algorithm.k=ten", f"hydra.run.dir={tmp_path}")
    assert (
        result.returncode != 0
        and "algorithm.k" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algorithm.k=7030"], "1 <= k < D = 7030"),
        (["data=mnist"], "data.root"),
        (["data=mnist", "data.root=/nonexistent"], "not found in /nonexistent"),
        (["dtype=float16"], "dtype must be one of"),
        (["cluster=ray"], "set RAY_ADDRESS or cluster.address"),
        (["task=train"], "task must be"),
        (["algorithm.name=eigsh"], "algorithm.name must be one of"),
        (["cluster.mode=local", "cluster.num_workers=0"], "num_workers must be at least 1"),
        (["algorithm=seigh", "algorithm.memory_gb=-1"], "memory_gb"),
        (["algorithm.tol=-1"], "algorithm.tol must be a positive relative residual"),
        (["model.checkpoint=/nonexistent.pt"], "does not exist (model.checkpoint)"),
        (["data.subset=3"], "data.subset=3 is smaller than the 10 classes"),
        (["data.batch_size=0"], "data.batch_size must be a positive integer"),
        (["data.batch_size=big"], "data.batch_size must be a positive integer or 'auto'"),
        # a text file
        ([f"model.checkpoint={Path(__file__).resolve()}"], "is not a file torch.save wrote"),
        (
            ["curvature=ggn", "curvature.product_mode=reverse-over-reverse"],
            "curvature.product_mode must be one of auto, forward-over-reverse, graph-reuse",
        ),
        (["algorithm.which=BE"], "algorithm.which must be one of LM, LA, SA"),
        (
            ["algorithm=seigh", "algorithm.inner_kind=ssrft"],
            "algorithm.inner_kind must be one of rademacher, gaussian",
        ),
        (
            ["algorithm=seigh", "algorithm.target_tol=0", "algorithm.growth=1"],
            "algorithm.target_tol must be a positive relative residual",
        ),
        (
            ["algorithm=seigh", "algorithm.growth=1"],
            "algorithm.growth (adaptive SEIGH's size factor per step) must be above 1",
        ),
    ],
)
def test_bad_values_exit_with_one_line_reason(tmp_path, overrides, message, caplog, monkeypatch):
    """In this process (the command line's own exit code and stderr: the test below)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    algorithm = [] if any(o.startswith("algorithm=") for o in overrides) else ["algorithm=lanczos"]
    with caplog.at_level("INFO", logger="pipeline"):
        code = execute(_compose("cluster=none", *algorithm, *overrides), tmp_path)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert (
        code == 2
        and len(errors) == 1
        and message in errors[0].getMessage()
        and "\n" not in errors[0].getMessage()
    )
    assert not errors[0].exc_info  # no traceback


def test_a_bad_value_on_the_command_line_exits_2_with_one_line_on_stderr(tmp_path):
    result = app(
        "cluster=none", f"model.checkpoint={Path(__file__).resolve()}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 2
    message = "is not a file torch.save wrote"
    assert message in result.stderr and message not in result.stdout  # errors go to stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_default_job_end_to_end_matches_in_process_lanczos(tmp_path):
    result = app(f"hydra.run.dir={tmp_path}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["algorithm"] == "seigh" and record["num_params"] == 7030
    assert record["config"]["cluster"]["num_workers"] == 2
    assert {"spectrum.png", "convergence.png", "summary.png"} <= set(record["figures"])
    assert all((tmp_path / f).stat().st_size > 0 for f in record["figures"])
    np.testing.assert_allclose(np.load(tmp_path / "eigenvalues.npy"), record["eigenvalues"])
    x, y = build_dataset(record["config"]["data"])
    model = build_from_config(record["config"]["model"])
    op = HessianOperator(model, nn.functional.cross_entropy, batches(x, y, 250))
    reference = lanczos(op, 10, tol=1e-6)
    assert record["num_params"] == op.shape[0]
    assert max(record["residuals"]) <= 1e-3 and all(record["converged"])
    # residual r bounds the eigenvalue error by r |lambda| (and by r^2 |lambda|^2 / gap when
    # separated)
    np.testing.assert_allclose(record["eigenvalues"], reference.eigenvalues.numpy(), rtol=2e-3)


@pytest.mark.slow
def test_resume_after_kill_measures_only_what_is_missing(tmp_path):
    # one product mode for both runs: auto may time its way to another mode, equal only to rounding
    overrides = [
        "cluster=none",
        "curvature.product_mode=graph-reuse",
        "algorithm.outer=60",
        "algorithm.inner=120",
        "algorithm.block_size=4",
        "algorithm.refine_tol=null",
        "algorithm.error_test_vectors=0",
        "output.plots=false",
        f"hydra.run.dir={tmp_path}",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done_path = tmp_path / "store.zarr" / "inner_done"
    wait_for_marks(done_path, 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    marked = int(np.asarray(zarr.open_array(str(done_path), mode="r")[:]).sum())
    assert 3 <= marked < 30 and not (tmp_path / "results.json").exists()
    assert execute(_compose(*overrides[:-1]), tmp_path) == 0  # the rerun, in this process
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["extra"]["measured_now"] <= 180 - 4 * marked
    clean = tmp_path / "clean"
    clean.mkdir()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=overrides[:-1])
    uninterrupted = run(cfg, clean)  # the same job in this process, never killed
    np.testing.assert_allclose(record["eigenvalues"], uninterrupted["eigenvalues"], rtol=1e-12)


@pytest.mark.slow
def test_driver_killed_during_post_processing_then_rerun_gives_the_clean_result(tmp_path):
    overrides = [
        "cluster=none",
        "curvature.product_mode=graph-reuse",
        "algorithm.outer=60",
        "algorithm.inner=120",
        "algorithm.memory_gb=0.0002",
        "algorithm.refine_tol=null",
        "algorithm.error_test_vectors=0",
        "output.plots=false",
        f"hydra.run.dir={tmp_path}",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = tmp_path / "store.zarr" / "eigenvectors"  # created when V = Q U starts streaming
    deadline = time.time() + 120
    while time.time() < deadline and not started.exists() and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert execute(_compose(*overrides[:-1]), tmp_path) == 0  # the rerun, in this process
    record = json.loads((tmp_path / "results.json").read_text())
    # every block had been measured; nothing reused half-written
    assert record["extra"]["measured_now"] == 0
    clean = tmp_path / "clean"
    clean.mkdir()
    # the same job in this process, never killed, with row blocks of the default size (the sums in
    # another order: rounding)
    uninterrupted = run(
        _compose(*[o for o in overrides[:-1] if not o.startswith("algorithm.memory_gb")]), clean
    )
    np.testing.assert_allclose(record["eigenvalues"], uninterrupted["eigenvalues"], rtol=1e-12)


def test_full_traceback_on_request(tmp_path):
    result = app(
        "cluster=none",
        "algorithm=lanczos",
        "algorithm.k=7030",
        f"hydra.run.dir={tmp_path}",
        env={**os.environ, "RAY_AUTH_MODE": "disabled", "HYDRA_FULL_ERROR": "1"},
    )
    assert (
        result.returncode == 2
        and "Traceback" in result.stderr
        and "1 <= k < D = 7030" in result.stderr
    )


def test_changed_config_in_same_dir_is_refused_before_ray_and_keeps_the_records(tmp_path):
    base = [
        "algorithm.outer=20",
        "algorithm.inner=40",
        "algorithm.refine_tol=null",
        "output.plots=false",
        f"hydra.run.dir={tmp_path}",
    ]
    assert app("cluster=none", *base).returncode == 0
    records = {path: path.read_bytes() for path in (tmp_path / ".hydra").glob("*.yaml")}
    result = app("cluster=local", *base, "seed=1")  # Ray would start after the checks
    assert result.returncode == 2
    assert "another configuration" in result.stderr and "seed: 0 -> 1" in result.stderr
    # refused before Ray started and before the plan
    assert "Ray" not in result.stderr and "plan:" not in result.stderr
    # .hydra/ still says what the store holds
    assert records and {path: path.read_bytes() for path in records} == records


def test_k_above_the_dimension_is_refused_before_ray_starts(tmp_path):
    result = app("cluster=local", "algorithm.k=100000", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "1 <= k < D = 7030" in result.stderr
    assert "Ray" not in result.stderr and "plan:" not in result.stderr


def test_density_and_landscape_outputs(tmp_path):
    density_dir, landscape_dir = tmp_path / "density", tmp_path / "landscape"
    density_dir.mkdir()
    landscape_dir.mkdir()
    assert (
        execute(
            _compose(
                "cluster=none",
                "algorithm=density",
                "algorithm.num_probes=2",
                "algorithm.num_steps=12",
            ),
            density_dir,
        )
        == 0
    )
    record = json.loads((density_dir / "results.json").read_text())
    assert "density.png" in record["figures"] and record["matvecs"] == 24
    saved = np.load(density_dir / "density.npz")
    assert abs(trapezoid(saved["density"], saved["grid"]) - 1) < 1e-3
    assert (
        execute(
            _compose(
                "cluster=none",
                "algorithm=lanczos",
                "algorithm.k=2",
                "output.landscape=true",
                "output.landscape_vectors=2",
                "output.landscape_points=5",
                "output.landscape_radius=0.02",
            ),
            landscape_dir,
        )
        == 0
    )
    record = json.loads((landscape_dir / "results.json").read_text())
    assert "landscape.png" in record["figures"]
    losses = np.asarray(record["landscape_losses"])  # (2 vectors, 5 points) at t = -0.02 .. 0.02
    t = 0.01
    # second difference ~ v^T H v
    curvature = (losses[:, 3] + losses[:, 1] - 2 * losses[:, 2]) / t**2
    np.testing.assert_allclose(curvature, record["eigenvalues"], rtol=0.05)


def test_unconverged_results_are_flagged_and_eigenvectors_kept(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="pipeline"):
        assert (
            execute(
                _compose(
                    "cluster=none", "algorithm=power", "algorithm.k=3", "algorithm.max_iter=4"
                ),
                tmp_path,
            )
            == 0
        )
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["all_converged"] is False and not all(record["converged"])
    assert "missed the relative residual tol=0.001" in caplog.text
    V = np.load(tmp_path / record["eigenvectors"])
    x, y = build_dataset(record["config"]["data"])
    op = HessianOperator(
        build_from_config(record["config"]["model"]),
        nn.functional.cross_entropy,
        batches(x, y, 250),
    )
    values = np.asarray(record["eigenvalues"])
    HV = (op @ torch.from_numpy(V).float()).double().numpy()
    residuals = np.linalg.norm(HV - V * values, axis=0) / np.abs(values)
    np.testing.assert_allclose(residuals, record["residuals"], rtol=1e-3)


def test_resume_with_other_batching_and_product_mode_reuses_the_measurements(tmp_path):
    base = [
        "cluster=none",
        "algorithm.outer=20",
        "algorithm.inner=40",
        "algorithm.refine_tol=null",
        "output.plots=false",
    ]
    assert execute(_compose(*base), tmp_path) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert (
        execute(
            _compose(*base, "data.batch_size=64", "curvature.product_mode=graph-reuse"), tmp_path
        )
        == 0
    )
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["extra"]["measured_now"] == 0
    np.testing.assert_allclose(again["eigenvalues"], first["eigenvalues"], rtol=1e-12)


def test_unreachable_cluster_fails_fast_with_a_reason(tmp_path):
    start = time.perf_counter()
    result = app(
        "cluster=ray",
        "cluster.address=127.0.0.1:1",
        "cluster.connect_timeout_s=5",
        f"hydra.run.dir={tmp_path}",
        timeout=120,
    )
    assert result.returncode == 2 and time.perf_counter() - start < 60
    output = result.stdout + result.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in output and "Traceback" not in output


def test_a_sigterm_that_surfaces_wrapped_in_another_error_still_ends_in_its_one_line(
    tmp_path, monkeypatch, caplog
):
    """TorchScript turns the SIGTERM's exception raised inside a scripted decomposition into a
    RuntimeError ("Terminated: <EMPTY MESSAGE>"): once the signal came, whatever surfaces ends the
    run as stopped by SIGTERM (143, one line), not as a crash with a traceback."""
    import pipeline.app

    def interrupted_inside_torchscript(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt as stop:
            raise RuntimeError(
                f"The following operation failed in the TorchScript interpreter. {stop!r}"
            ) from None

    monkeypatch.setattr(pipeline.app, "run_job", interrupted_inside_torchscript)
    with caplog.at_level(logging.ERROR, logger="pipeline"):
        code = execute(_compose("cluster=none"), tmp_path)
    assert code == 143
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("stopped by SIGTERM"), errors


@pytest.mark.slow
# SIGINT and Ray runs: test_signals.py
def test_sigterm_stops_cleanly_and_the_rerun_resumes(tmp_path):
    sig, code = signal.SIGTERM, 143
    overrides = [
        "cluster=none",
        "algorithm.outer=60",
        "algorithm.inner=120",
        "algorithm.block_size=4",
        "algorithm.refine_tol=null",
        "algorithm.error_test_vectors=0",
        "output.plots=false",
        f"hydra.run.dir={tmp_path}",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *overrides],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    done_path = tmp_path / "store.zarr" / "inner_done"
    wait_for_marks(done_path, 3)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == code, output[-2000:]
    assert "every completed block is kept" in output and "Traceback" not in output
    assert not (tmp_path / "store.zarr.lock").exists()
    marked = sum(
        int(np.asarray(zarr.open_array(str(tmp_path / "store.zarr" / name), mode="r")[:]).sum())
        for name in ("inner_done", "outer_done")
    )
    assert execute(_compose(*overrides[:-1]), tmp_path) == 0  # the rerun, in this process
    assert (
        json.loads((tmp_path / "results.json").read_text())["extra"]["measured_now"]
        == 180 - 4 * marked
    )


def test_model_and_data_that_do_not_fit_are_refused_before_ray_starts(tmp_path):
    # digits are 16x16 = 256 inputs
    result = app("model.widths=[64,20,10]", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert (
        "the model does not accept the data" in result.stderr and "Traceback" not in result.stderr
    )
    assert "started a local Ray" not in result.stderr


def test_unusable_run_directory_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for target in (afile, afile / "run"):
        result = app("cluster=none", f"hydra.run.dir={target}")
        assert (
            result.returncode == 2
            and "is a file, not a directory" in result.stderr
            and "choose another hydra.run.dir" in result.stderr
        )
        assert "Traceback" not in result.stderr


def test_a_read_only_run_directory_is_refused_in_one_line_for_a_user_without_root_s_override(
    tmp_path,
):
    """A read-only run dir is refused in one line for a user without root's override.

    A run dir the user may not write to (mode 555), run by this user stripped of the capability that
    lets root write anywhere (as a non-root user: the interpreter under /root stays readable).
    """
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    run_dir = tmp_path / "results"
    run_dir.mkdir(mode=0o555)
    result = app(
        "cluster=none",
        f"hydra.run.dir={run_dir / 'run'}",
        prefix=["setpriv", "--bounding-set=-dac_override,-dac_read_search"],
    )
    assert (
        result.returncode == 2
        and result.stderr.strip()
        == f"error: {run_dir} is not writable by this user: choose another hydra.run.dir"
    )
    assert list(run_dir.iterdir()) == []


def _compose(*overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose("config", overrides=list(overrides))


def test_rerun_with_a_larger_sketch_grows_the_store_and_adaptive_seigh_runs_from_the_config(
    tmp_path,
):
    base = [
        "cluster=none",
        "dtype=float64",
        "data.subset=100",
        "algorithm.k=4",
        "algorithm.block_size=10",
        "algorithm.error_test_vectors=0",
        "algorithm.refine_tol=null",
        "output.plots=false",
    ]
    run(_compose(*base, "algorithm.outer=20", "algorithm.inner=40"), tmp_path)
    grown = run(_compose(*base, "algorithm.outer=30", "algorithm.inner=60"), tmp_path)
    assert grown["extra"]["measured_now"] == 30  # only the new columns; same seed, same operator
    fresh = run(_compose(*base, "algorithm.outer=30", "algorithm.inner=60"), tmp_path / "fresh")
    np.testing.assert_allclose(grown["eigenvalues"], fresh["eigenvalues"], rtol=1e-10)
    # D = 210
    adaptive = run(
        _compose(
            *base,
            "curvature.params=[11.*]",
            "algorithm.outer=4",
            "algorithm.block_size=2",
            "algorithm.target_tol=1e-4",
            "algorithm.max_matvecs=600",
        ),
        tmp_path / "adaptive",
    )
    steps = adaptive["extra"]["adaptive"]
    assert (
        steps[0]["outer"] == 4 and steps[-1]["worst_residual"] <= 1e-4 and adaptive["all_converged"]
    )
    assert adaptive["extra"]["adaptive_matvecs"] == steps[-1]["matvecs"] <= 600 and len(steps) >= 2


def test_a_bug_keeps_its_traceback_and_is_not_reported_as_a_user_error(tmp_path):
    """Only PipelineError (bad input, missing files, cluster trouble) becomes a one-line exit 2;
    an error from a bug, such as torch's generic RuntimeError, keeps its traceback."""
    from pipeline.errors import InputError, PipelineError

    # callers catching ValueError still do
    assert issubclass(InputError, ValueError) and issubclass(InputError, PipelineError)
    script = (
        "import sys, pipeline.app as app, pipeline.runner as runner\n"
        "def broken(*args, **kwargs):\n    raise RuntimeError('an internal bug')\n"
        "runner.write_results = broken\n"
        "sys.argv = ['hessian-pipeline', 'cluster=none', 'algorithm=lanczos', "
        f"'hydra.run.dir={tmp_path}']\n"
        "app.cli()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert (
        result.returncode == 1
        and "Traceback" in result.stderr
        and "an internal bug" in result.stderr
    )
    assert "error: an internal bug" not in result.stderr


def test_an_in_process_run_never_imports_ray(tmp_path):
    script = (
        "import sys, pipeline.app as app\n"
        "sys.argv = ['hessian-pipeline', 'cluster=none', 'algorithm=lanczos', 'algorithm.k=2', "
        "'data.subset=50', 'output.plots=false', "
        f"'hydra.run.dir={tmp_path}']\n"
        "app.cli()\n"
        "assert 'ray' not in sys.modules, 'cluster=none imported Ray'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "results.json").exists()
