"""jobs/ scripts pass bash -n; the Dockerfile and manifests parse."""

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


@pytest.mark.parametrize("script", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "jobs").rglob("*") if p.suffix in (".sh", ".sbatch")))
def test_job_scripts_pass_bash_n(script):
    result = subprocess.run(["bash", "-n", ROOT / script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_rayjob_manifest_parses():
    manifest = yaml.safe_load((ROOT / "jobs/k8s/rayjob.yaml").read_text())
    assert manifest["kind"] == "RayJob"
    assert "python -m pipeline" in manifest["spec"]["entrypoint"]
    workers = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_compose_file_parses():
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    assert set(compose["services"]) == {"head", "worker"}


def test_dockerfile_instructions_are_valid():
    lines, continued = [], False
    for line in (ROOT / "docker/Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not continued and stripped and not stripped.startswith("#"):
            lines.append(stripped.split()[0])
        continued = stripped.endswith("\\")
    assert lines[0] == "FROM" and set(lines) <= DOCKER_INSTRUCTIONS
    assert "USER" in lines and "ENTRYPOINT" in lines
