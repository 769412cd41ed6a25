"""Deployment files (jobs/, docker/, README commands) call the CLI with overrides that exist;
the SLURM scripts build the commands they should, checked under fake srun / scontrol / sbatch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployment import ROOT, compose_overrides, overrides_in

DOCKER_INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}
RAY = str(Path(sys.executable).parent / "ray")


@pytest.mark.parametrize(
    "script",
    sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "jobs").rglob("*")
        if p.suffix in (".sh", ".sbatch")
    ),
)
def test_job_scripts_pass_bash_n(script):
    result = subprocess.run(["bash", "-n", ROOT / script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _commands_of(name: str) -> list[list[str]]:
    text = (ROOT / name).read_text()
    if name == "jobs/k8s/rayjob.yaml":
        text = yaml.safe_load(text)["spec"]["entrypoint"]
    if name == "pipeline/conf/config.yaml":
        text = yaml.safe_load(text)["hydra"]["help"]["template"]
    return overrides_in(text)


@pytest.mark.parametrize(
    "name",
    [
        "README.md",
        "REPRODUCING.md",
        "jobs/k8s/rayjob.yaml",
        "docker/compose.yaml",
        "docker/Dockerfile",
        "jobs/ray/submit.sh",
        "pipeline/conf/config.yaml",
    ],
)
def test_every_documented_command_composes(name):
    commands = _commands_of(name)
    assert commands, f"no pipeline command found in {name}"
    for overrides in commands:
        # raises on a key that does not exist or a value of the wrong type
        compose_overrides(overrides)


def test_a_misspelt_override_is_caught_by_the_check():
    with pytest.raises(Exception, match="algorithm.kk"):
        compose_overrides(["algorithm.kk=3"])


def test_rayjob_manifest_joins_its_cluster():
    manifest = yaml.safe_load((ROOT / "jobs/k8s/rayjob.yaml").read_text())
    assert manifest["kind"] == "RayJob"
    cfg = compose_overrides(_commands_of("jobs/k8s/rayjob.yaml")[0])
    # sized from the RayJob's GPUs
    assert cfg.cluster.mode == "ray" and cfg.cluster.num_workers is None
    workers = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (
        workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    )


def test_compose_file_runs_as_the_host_user_with_a_gpu_worker():
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    assert set(compose["services"]) == {"head", "worker"}
    assert all(service["user"].startswith("${UID") for service in compose["services"].values())
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "gpus_per_worker=0" not in (ROOT / "docker/compose.yaml").read_text()


def test_dockerfile_uses_the_tested_torch_and_writable_outputs():
    instructions, continued = [], False
    text = (ROOT / "docker/Dockerfile").read_text()
    for line in text.splitlines():
        stripped = line.strip()
        if not continued and stripped and not stripped.startswith("#"):
            instructions.append(stripped.split()[0])
        continued = stripped.endswith("\\")
    assert instructions[0] in ("ARG", "FROM") and set(instructions) <= DOCKER_INSTRUCTIONS
    assert "USER" in instructions and "ENTRYPOINT" in instructions
    tested = (ROOT / ".ci/constraints.txt").read_text().split("torch==")[1].split()[0]
    assert f"TORCH_VERSION={tested}" in text
    assert "chmod 1777 /app /app/outputs" in text and "pip install -e" not in text


def _shim(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path):
    """A directory of fake SLURM commands that record their arguments, a fake environment with
    bin/activate, and the variables SLURM sets in a job."""
    bin_dir, env_dir, record = tmp_path / "bin", tmp_path / "env", tmp_path / "calls"
    bin_dir.mkdir()
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "activate").write_text("export FAKE_ENV_ACTIVE=yes\n")
    record.mkdir()
    _shim(
        bin_dir,
        "srun",
        f'printf "%s\\n" "$@" > {record}/srun; echo "$FAKE_ENV_ACTIVE" > {record}/env\n',
    )
    _shim(
        bin_dir,
        "scontrol",
        f'echo "$@" >> {record}/scontrol; [[ $1 == show ]] && printf "node7\\nnode8\\n"; true\n',
    )
    _shim(
        bin_dir,
        "sbatch",
        f'printf "%s\\n" "$@" > {record}/sbatch; test -d logs || {{ echo "logs/ missing" >&2; exit '
        "1; }\n",
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HESSIAN_ENV": str(env_dir),
        "SLURM_JOB_ID": "4321",
        "SLURM_JOB_NAME": "hessian-seigh",
        "SLURM_JOB_NODELIST": "node[7-8]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_CPUS_PER_TASK": "32",
        "SLURM_GPUS_PER_NODE": "gpu:4",
        "SLURM_SUBMIT_DIR": str(tmp_path),
    }
    return env, record


def test_sbatch_script_builds_ray_and_pipeline_commands_that_exist(fake_slurm, tmp_path):
    env, record = fake_slurm
    result = subprocess.run(
        [
            "bash",
            ROOT / "jobs/slurm/seigh.sbatch",
            "+experiment=mnist_mlp",
            "data.root=/data/mnist",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    argv = (record / "srun").read_text().splitlines()
    assert (record / "env").read_text().strip() == "yes"  # HESSIAN_ENV was activated
    assert (record / "scontrol").read_text().startswith("show hostnames node[7-8]")
    ray_args, pipeline_args = (
        argv[argv.index("symmetric-run") + 1 : argv.index("--")],
        argv[argv.index("hessian-pipeline") + 1 :],
    )
    assert ray_args[:4] == ["--address", "node7:24321", "--min-nodes", "2"]
    help_text = subprocess.run(
        [RAY, "symmetric-run", "--help"], capture_output=True, text=True
    ).stdout
    help_text += subprocess.run([RAY, "start", "--help"], capture_output=True, text=True).stdout
    for option in (a for a in ray_args if a.startswith("--")):
        assert option in help_text, f"ray has no option {option}"
    cfg = compose_overrides(pipeline_args)
    assert (
        cfg.cluster.mode,
        cfg.cluster.num_workers,
        cfg.cluster.cpus_per_worker,
        cfg.cluster.gpus_per_worker,
    ) == ("ray", 8, 8, 1)
    assert cfg.cluster.address == "node7:24321" and cfg.task == "reproduce"
    # one per submission; a requeue keeps the job id
    output_dir = tmp_path / "outputs" / "hessian-seigh-4321"
    assert f"hydra.run.dir={output_dir}" in pipeline_args and output_dir.is_dir()


def test_sbatch_script_without_an_environment_names_the_fix(fake_slurm, tmp_path):
    env, record = fake_slurm
    result = subprocess.run(
        ["bash", ROOT / "jobs/slurm/seigh.sbatch"],
        capture_output=True,
        text=True,
        env={**env, "HESSIAN_ENV": str(tmp_path / "missing")},
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "set HESSIAN_ENV" in result.stderr
    assert not (record / "srun").exists()


def test_slurm_submit_creates_the_log_dir_before_sbatch(fake_slurm, tmp_path):
    env, record = fake_slurm
    result = subprocess.run(
        ["bash", ROOT / "jobs/slurm/submit.sh", "algorithm.k=5"],
        capture_output=True,
        text=True,
        env={**env, "SBATCH_ARGS": "--nodes=1"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "logs").is_dir()
    assert (record / "sbatch").read_text().splitlines() == [
        "--nodes=1",
        str(ROOT / "jobs/slurm/seigh.sbatch"),
        "algorithm.k=5",
    ]


@pytest.fixture
def cluttered_checkout(tmp_path):
    """A copy of the checkout's jobs/ and pipeline/ with what a researcher's checkout also holds:
    a 4 GiB (sparse) data file and a run directory; and a fake `ray` that records its arguments
    and the files of the working directory it would upload."""
    checkout, bin_dir, record = tmp_path / "checkout", tmp_path / "bin", tmp_path / "calls"
    (checkout / "data").mkdir(parents=True)
    for part in ("jobs", "pipeline"):
        subprocess.run(["cp", "-r", ROOT / part, checkout / part], check=True)
    with open(checkout / "data" / "imagenet.tar", "wb") as big:
        big.truncate(4 << 30)
    (checkout / "outputs" / "run" / "store.zarr").mkdir(parents=True)
    (checkout / "outputs" / "run" / "store.zarr" / "chunk").write_bytes(b"x" * 4096)
    bin_dir.mkdir()
    record.mkdir()
    _shim(
        bin_dir,
        "ray",
        f'printf "%s\\n" "$@" > {record}/ray\n'
        f"dir=$(grep -A1 -x -- --working-dir {record}/ray | tail -n 1)\n"
        f'[[ -n $dir ]] && (cd "$dir" && find . -type f | sort) > {record}/files; true\n',
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RAY_ADDRESS": "http://head:8265",
        "OUTPUT_DIR": "/shared/run",
    }
    return checkout, env, record


def test_ray_submit_uploads_the_package_only(cluttered_checkout):
    checkout, env, record = cluttered_checkout
    result = subprocess.run(
        ["bash", checkout / "jobs/ray/submit.sh", "algorithm.k=5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    files = (record / "files").read_text().split()
    shipped = sorted(
        f"./{p.relative_to(checkout)}"
        for p in (checkout / "pipeline").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    # no data, no run dirs, no bytecode
    assert files == shipped and "./pipeline/conf/config.yaml" in files
    argv = (record / "ray").read_text().splitlines()
    assert argv[-3:] == ["cluster=ray", "hydra.run.dir=/shared/run", "algorithm.k=5"]
    assert "uploading the pipeline package (" in result.stderr


def test_ray_submit_ships_nothing_with_ship_none_and_refuses_an_oversized_package(
    cluttered_checkout,
):
    checkout, env, record = cluttered_checkout
    result = subprocess.run(
        ["bash", checkout / "jobs/ray/submit.sh"],
        capture_output=True,
        text=True,
        env={**env, "SHIP": "none"},
    )
    assert (
        result.returncode == 0 and "--working-dir" not in (record / "ray").read_text().splitlines()
    )
    (record / "ray").unlink()
    # a large file put inside the package
    (checkout / "pipeline" / "weights.pt").write_bytes(b"\0" * (2 << 20))
    result = subprocess.run(
        ["bash", checkout / "jobs/ray/submit.sh"],
        capture_output=True,
        text=True,
        env={**env, "SHIP_LIMIT_MB": "1"},
    )
    assert (
        result.returncode == 2
        and "over SHIP_LIMIT_MB=1" in result.stderr
        and "remove large files" in result.stderr
    )
    assert not (record / "ray").exists()  # nothing sent
