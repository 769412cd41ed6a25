"""The solver registry: every registered algorithm composes from its own schema only, takes its
defaults from the library function it runs, and spends the products the plan predicts."""

import inspect
from dataclasses import fields

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from pipeline.job import compile_job
from pipeline.linalg import (
    adaptive_seigh,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    power_iteration,
    seigh,
    sketch_eigs,
    slq_density,
)
from pipeline.solvers import SOLVERS, solver_for

from deployment import compose_overrides
from helpers import synthetic

LIBRARY_FUNCTIONS = {
    "lanczos": [lanczos],
    "power": [power_iteration],
    "density": [slq_density],
    "seigh": [seigh, adaptive_seigh],
    "trace": [hutchpp_trace, hutchinson_trace],
    "sketch": [sketch_eigs],
}
RENAMED = {"memory_gb": "memory_bytes"}  # config field -> function parameter (GiB -> bytes)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_config_defaults_are_the_library_defaults(name):
    """Every config field the library function also takes has the function's default (k, the
    question asked, is not a tuning default and is left out): every registered solver."""
    config, checked = SOLVERS[name].config(), 0
    for function in LIBRARY_FUNCTIONS[name]:
        parameters = inspect.signature(function).parameters
        for field in fields(config):
            parameter = RENAMED.get(field.name, field.name)
            if (
                field.name == "k"
                or parameter not in parameters
                or parameters[parameter].default is inspect.Parameter.empty
            ):
                continue
            value = getattr(config, field.name)
            assert (value * 2**30 if parameter == "memory_bytes" else value) == parameters[
                parameter
            ].default, (name, field.name)
            checked += 1
    assert checked >= 1


def test_a_key_of_another_algorithm_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        compose_overrides(["algorithm=trace", "algorithm.outer=3"])
    with pytest.raises(ConfigCompositionException):
        compose_overrides(["algorithm=lanczos", "algorithm.k=many"])


def test_an_unknown_algorithm_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match="density, lanczos, power, seigh, sketch, trace"):
        solver_for("arnoldi")


EXACT_COUNTS = {  # overrides under which the plan's count is exact, not a bound
    "trace": ["algorithm.num_matvecs=30", "algorithm.block_size=7"],
    "density": ["algorithm.num_probes=3", "algorithm.num_steps=10"],
    "sketch": ["algorithm.sketch_size=12"],
    "seigh": [
        "algorithm.k=3",
        "algorithm.outer=10",
        "algorithm.inner=20",
        "algorithm.block_size=5",
        "algorithm.refine_tol=null",
        "algorithm.error_test_vectors=2",
    ],
    "power": ["algorithm.k=2", "algorithm.max_iter=4", "algorithm.tol=1e-14"],
}


@pytest.mark.parametrize("name", sorted(EXACT_COUNTS))
def test_every_solver_spends_what_the_plan_predicts_and_reports_it(name):
    cfg = compose_overrides([f"algorithm={name}", "seed=3", *EXACT_COUNTS[name]])
    op = synthetic(60, spectrum=torch.logspace(0, -3, 60))
    job = compile_job(cfg)
    outcome = job.solver.run(job.algorithm, op, seed=job.seed, problem={"test": name})
    predicted, _ = solver_for(name).matvecs(job.algorithm, op.shape[0])
    assert outcome.matvecs == outcome.record()["matvecs"] == op.matvecs == predicted
    assert (
        OmegaConf.get_type(cfg.algorithm) is SOLVERS[name].config
        and type(job.algorithm) is SOLVERS[name].config
    )


def test_lanczos_block_size_is_auto_or_a_positive_integer():
    from pipeline.errors import InputError

    assert compose_overrides(["algorithm=lanczos"]).algorithm.block_size == "auto"
    solver_for("lanczos").check(
        compose_overrides(["algorithm=lanczos", "algorithm.block_size=4"]).algorithm
    )
    with pytest.raises(
        InputError, match="algorithm.block_size must be 'auto' or a positive integer, got 'wide'"
    ):
        solver_for("lanczos").check(
            compose_overrides(["algorithm=lanczos", "algorithm.block_size=wide"]).algorithm
        )
    assert (
        solver_for("lanczos").matvecs(
            compose_overrides(["algorithm=lanczos", "algorithm.k=10"]).algorithm, 1000
        )[0]
        == 3 * 30
    )
