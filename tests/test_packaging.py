"""The package installs and runs the way users expect: a wheel carries its configs, the README's
Python snippet runs as written, --help lists what exists, progress shows without a terminal."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.app import CONFIG_DIR
from pipeline.progress import ProgressLog, set_log_interval, tracked

from deployment import ROOT, compose_overrides

GROUPS = ("model", "data", "curvature", "algorithm", "cluster", "experiment")


def _env():
    return {
        **{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")},
        "RAY_AUTH_MODE": "disabled",
    }


@pytest.mark.slow
def test_wheel_installs_non_editable_and_runs_from_another_directory(tmp_path):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            wheels,
            ROOT,
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("hessian_pipeline-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr
    elsewhere.mkdir()
    env = {**_env(), "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline; print(pipeline.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)  # the installed copy, not the repository
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "cluster=none",
            "algorithm=lanczos",
            "algorithm.k=2",
            "data.subset=50",
            "output.plots=false",
            "hydra.run.dir=run",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
    )
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "run" / "results.json").exists()
    assert (
        f"run directory: {elsewhere / 'run'}" in result.stderr
        and f"done: results in {elsewhere / 'run'}" in result.stderr
    )


def test_readme_python_snippet_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    result = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path, env=_env()
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr and "missed the relative residual" not in result.stderr
    assert (tmp_path / "run.zarr").is_dir()


def test_help_lists_every_group_option_and_composable_overrides():
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, env=_env()
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "schema" not in text
    for group in GROUPS:
        line = re.search(rf"^  {group} +(.*)$", text, re.M).group(1)
        listed = {option.strip() for option in line.split("|")}
        assert listed == {p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml")}, group
    common = text.split("Common overrides:")[1].split("Examples:")[0]
    overrides = []
    for line in common.splitlines():  # leading key=value tokens, then the explanation
        for token in line.split():
            if "=" not in token:
                break
            overrides.append(token)
    assert len(overrides) >= 10
    compose_overrides(overrides)
    assert len(re.findall(r"^  hessian-pipeline", text.split("Examples:")[1], re.M)) == 3


def test_progress_off_a_terminal_is_logged_with_rate_and_eta(caplog, monkeypatch):
    clock = iter(range(0, 1000, 10))  # every call 10 s later
    monkeypatch.setattr("pipeline.progress.time.monotonic", lambda: next(clock))
    set_log_interval(25)
    try:
        with caplog.at_level(logging.INFO, logger="pipeline.progress"):
            assert list(
                tracked(range(6), total=6, desc="Y measurements", unit="blocks", progress=None)
            ) == list(range(6))
    finally:
        set_log_interval(30)
    lines = [r.getMessage() for r in caplog.records]
    # calls at t = 10, 20, ... : a line when 25 s have passed since the last one, then the closing
    # line
    assert lines[:2] == [
        "Y measurements: 3/6 blocks (50%), 0.1 blocks/s, ETA 0:00:30",
        "Y measurements: 6/6 blocks (100%), 0.1 blocks/s, ETA 0:00:00",
    ]
    assert lines[-1] == "Y measurements: 6 blocks done in 0:01:10"


def test_progress_can_be_silenced_and_rejects_a_bad_interval(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        assert list(tracked(range(3), total=3, desc="x", progress=False)) == [0, 1, 2]
    assert not caplog.records
    with pytest.raises(ValueError, match="positive"):
        set_log_interval(0)
    assert ProgressLog("x", None).line(now=ProgressLog("x", None).start + 1).startswith("x: 0 it")


@pytest.mark.slow
def test_the_gpu_check_script_dry_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh --device cpu: the same three steps at toy sizes (the gpu tests
    collected and skipped, the rehearsal in process, post-processing), so the script a GPU
    session runs is known to work before it spends device time."""
    out = subprocess.run(
        ["bash", ROOT / "benchmarks/gpu_check.sh", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable, "OUT_DIR": str(tmp_path), "RAY_ADDRESS": ""},
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "skipped" in out.stdout and "planner:" in out.stdout
    assert re.search(r"^\| new \| [\d.]+ \|", out.stdout, re.MULTILINE)
    assert "gpu_check done (cpu)" in out.stdout


def test_make_bench_runs_every_benchmark_script():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run_all import RUNS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {
        "common",
        "peer_runs",
        "run_all",
    }
    assert set(RUNS) == scripts
    assert "benchmarks/run_all.py" in (ROOT / "Makefile").read_text()


def _code_lines(node) -> int:
    """A function's lines without its docstring (the formatter's layout, at 100 columns)."""
    import ast

    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_in_the_package_is_over_60_lines_without_a_reason():
    import ast

    long = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > 60:
                if "Over 60 lines:" not in (ast.get_docstring(node) or ""):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []


PUBLIC_API = [
    "pipeline.curvature.CurvatureOperator",
    "pipeline.distributed.RayOperator",
    "pipeline.linalg.lanczos",
    "pipeline.linalg.seigh",
    "pipeline.linalg.power_iteration",
    "pipeline.linalg.hutchinson_trace",
    "pipeline.linalg.hutchpp_trace",
    "pipeline.linalg.slq_density",
    "pipeline.linalg.sketch_eigs",
    "pipeline.models.build",
    "pipeline.run_dir.load_run",
    "pipeline.runner.run",
    "pipeline.runner.run_job",
    "pipeline.job.compile_job",
]


@pytest.mark.parametrize("name", PUBLIC_API)
def test_the_public_api_has_google_docstrings_naming_every_argument(name):
    """Google style (as curvlinops): an Args section naming every parameter, and Returns for a
    function; ruff's pydocstyle rules (google convention) check the rest of the package."""
    import importlib
    import inspect

    module, attribute = name.rsplit(".", 1)
    target = getattr(importlib.import_module(module), attribute)
    doc = inspect.getdoc(target) or ""
    signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    args = doc.split("Args:\n", 1)[1].split("\n\n", 1)[0] if "Args:\n" in doc else ""
    documented = set(re.findall(r"^    (\*{0,2}\w+):", args, re.MULTILINE))
    wanted = {
        ("**" if p.kind is p.VAR_KEYWORD else "*" if p.kind is p.VAR_POSITIONAL else "") + p.name
        for p in signature.parameters.values()
        if p.name != "self"
    }
    assert wanted <= documented, f"{name}: Args lacks {sorted(wanted - documented)}"
    assert documented <= wanted, f"{name}: Args names {sorted(documented - wanted)}, not parameters"
    if not inspect.isclass(target):
        assert "\nReturns:\n" in doc, f"{name} has no Returns section"
