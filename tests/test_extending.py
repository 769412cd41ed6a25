"""A new solver, curvature or store backend is its own module (and, for the first two, its yaml):
toy ones written to a temporary directory on the package's path are found, composed and run
without any other file changing."""

import json
import sys
import textwrap

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import pipeline.curvature
import pipeline.solvers
import pipeline.store
from pipeline.app import CONFIG_DIR
from pipeline.config import register
from pipeline.runner import run

# D = 210
SMALL = [
    "cluster=none",
    "dtype=float64",
    "data.subset=100",
    "output.plots=false",
    "curvature.params=[11.*]",
]

TOY_SOLVER = """
from dataclasses import dataclass

from pipeline.linalg import power_iteration
from pipeline.solvers.base import EigenConfig, Solver
from pipeline.solvers.outcomes import EigenOutcome


@dataclass
class ToyConfig(EigenConfig):
    name: str = "toy"
    k: int = 1
    iterations: int = 300


def run(a, op, *, seed, store=None, problem=None):
    return EigenOutcome.of(power_iteration(op, a.k, tol=a.tol, max_iter=a.iterations, seed=seed),
    {})


def matvecs(a, dim):
    return a.k * a.iterations, "k x iterations"


SOLVER = Solver("toy", ToyConfig, run, matvecs)
"""

TOY_CURVATURE = '''
from pipeline.curvature.hessian import HessianOperator


class DoubledHessian(HessianOperator):
    """2 H: the Hessian of twice the loss."""

    KIND = "doubled_hessian"

    def normalise(self, total, count):
        return 2 * super().normalise(total, count)
'''

TOY_STORE = """
from pipeline.store.memory import MemoryStore

URL_SCHEME = "toy"
OPENED = []


def open_url(url):
    OPENED.append(url)
    return MemoryStore()
"""


@pytest.fixture
def extended(tmp_path, monkeypatch):
    """``extended(package, module, source)``: the module written beside ``package``'s own (on its
    ``__path__``), forgotten again afterwards."""

    def extend(package, name: str, source: str) -> None:
        folder = tmp_path / package.__name__.replace(".", "_")
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
        monkeypatch.delitem(sys.modules, f"{package.__name__}.{name}", raising=False)

    yield extend
    for name in [
        name
        for name in sys.modules
        if name.startswith(("pipeline.solvers.toy", "pipeline.curvature.toy", "pipeline.store.toy"))
    ]:
        del sys.modules[name]


def _conf(tmp_path, group: str, name: str, text: str) -> str:
    folder = tmp_path / "conf" / group
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def _run(run_dir, *overrides):
    run_dir.mkdir()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return run(compose("config", overrides=[*SMALL, *overrides]), run_dir)


def test_a_new_solver_is_its_module_and_its_yaml(tmp_path, extended, monkeypatch):
    extended(pipeline.solvers, "toy_solver", TOY_SOLVER)
    monkeypatch.setitem(pipeline.solvers.SOLVERS, "toy", pipeline.solvers.discover()["toy"])
    register()  # its schema in Hydra's algorithm group, as at start-up
    searchpath = _conf(tmp_path, "algorithm", "toy", "defaults: [toy_schema]\n")
    record = _run(tmp_path / "toy", searchpath, "algorithm=toy")
    lanczos = _run(tmp_path / "lanczos", "algorithm=lanczos", "algorithm.k=1", "algorithm.tol=1e-8")
    assert record["algorithm"] == "toy" and record["matvecs"] <= 300
    # a residual r bounds the eigenvalue's error by r |lambda|
    assert abs(record["eigenvalues"][0] - lanczos["eigenvalues"][0]) <= record["residuals"][
        0
    ] * abs(record["eigenvalues"][0])
    assert (
        json.loads((tmp_path / "toy" / "results.json").read_text())["config"]["algorithm"][
            "iterations"
        ]
        == 300
    )


def test_a_new_curvature_is_its_module_and_its_yaml(tmp_path, extended, monkeypatch):
    extended(pipeline.curvature, "toy_curvature", TOY_CURVATURE)
    monkeypatch.setitem(
        pipeline.curvature.CURVATURES,
        "doubled_hessian",
        pipeline.curvature.discover()["doubled_hessian"],
    )
    searchpath = _conf(
        tmp_path, "curvature", "doubled_hessian", "defaults: [schema]\nkind: doubled_hessian\n"
    )
    lanczos = ["algorithm=lanczos", "algorithm.k=3", "algorithm.tol=1e-8"]
    doubled = _run(tmp_path / "doubled", searchpath, "curvature=doubled_hessian", *lanczos)
    hessian = _run(tmp_path / "hessian", *lanczos)
    assert doubled["curvature"] == "doubled_hessian"
    np.testing.assert_allclose(
        doubled["eigenvalues"], 2 * np.asarray(hessian["eigenvalues"]), rtol=1e-6
    )


def test_a_new_store_backend_is_one_module(tmp_path, extended):
    from pipeline.linalg import seigh

    from helpers import synthetic

    extended(pipeline.store, "toy_store", TOY_STORE)
    with pipeline.store.open_store("toy://anywhere") as store:
        result = seigh(
            synthetic(120, seed=2),
            k=3,
            outer=20,
            inner=40,
            block_size=10,
            store=store,
            error_test_vectors=0,
        )
    assert sys.modules["pipeline.store.toy_store"].OPENED == ["toy://anywhere"]
    assert store.saved_result() is not None and result.eigenvalues.shape == (3,)
    # paths still go to Zarr
    assert type(pipeline.store.open_store(str(tmp_path / "s.zarr"))).__name__ == "RunStore"
