"""Shared helpers for tests of the deployment files: which pipeline overrides a command passes,
and whether they compose against the packaged config (unknown keys and bad types fail)."""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir

from pipeline.app import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent
COMMAND = re.compile(r"(?:hessian-pipeline|python -m pipeline)\b([^\n`#|]*)")


def overrides_in(text: str) -> list[list[str]]:
    """Every ``hessian-pipeline ...`` / ``python -m pipeline ...`` command line in ``text``, as
    its key=value overrides: options (--help), placeholders ([key=value]) and shell-variable values
    are left out, a sweep (``k=10,20``) stands for its first value."""
    commands = []
    for match in COMMAND.finditer(text):
        tokens = [t.strip("'\"") for t in match.group(1).split()]
        overrides = [
            t for t in tokens if "=" in t and not t.startswith(("-", "[")) and "$" not in t
        ]
        commands.append([o if "[" in o else o.split(",")[0] for o in overrides])
    return commands


def compose_overrides(overrides: list[str]):
    """The composed config for a command's overrides (Hydra's own ``hydra.*`` keys excluded:
    Hydra checks those itself); raises if a key does not exist or a value has the wrong type."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(
            "config", overrides=[o for o in overrides if not o.lstrip("+").startswith("hydra.")]
        )


# SEIGH on 100 digits in process, float64, no refinement: a run in seconds
SMALL = [
    "cluster=none",
    "dtype=float64",
    "data.subset=100",
    "algorithm.k=4",
    "algorithm.outer=20",
    "algorithm.inner=40",
    "algorithm.block_size=10",
    "algorithm.error_test_vectors=3",
    "algorithm.refine_tol=null",
    "output.plots=false",
]
