"""A composed config compiled once into a typed, frozen ``Job``: what the app hands the library.

The Hydra config (a DictConfig) stops at the app: ``compile_job`` resolves it, builds each part
as its schema dataclass (``pipeline.config``; the algorithm as its solver's config), checks it
once (``pipeline.preflight``) and returns the Job; everything below takes the Job or its parts.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline import config as schema
from pipeline.config import fingerprinted, operator_options
from pipeline.data import build_dataset
from pipeline.models import build_from_config
from pipeline.models.losses import loss_named
from pipeline.preflight import check_job
from pipeline.sharding import ProblemSpec
from pipeline.solvers import Solver, solver_for

log = logging.getLogger(__name__)


def plain(node: Any) -> Any:
    """A resolved, plain-Python copy of a config node (raises on missing ??? values)."""
    return (
        OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        if isinstance(node, DictConfig)
        else node
    )


@dataclass(frozen=True)
class Job:
    """One run's settings, typed and checked.

    Attributes:
        config: the plain, resolved config: what results.json records and what the typed parts
            are built from.
        solver: the registered solver of ``algorithm.name``; ``algorithm`` is its config
            dataclass (``solver.config``).
    """

    config: dict[str, Any] = field(repr=False)
    task: str
    seed: int
    dtype: str
    device: str
    model: schema.ModelConfig
    data: schema.DataConfig
    curvature: schema.CurvatureConfig
    solver: Solver = field(repr=False)
    algorithm: Any
    cluster: schema.ClusterConfig
    output: schema.OutputConfig
    plan: schema.PlanConfig
    reproduce: schema.ReproduceConfig
    layerwise: schema.LayerwiseConfig

    @cached_property
    def problem(self) -> ProblemSpec:
        """The picklable recipe of the model, data and curvature that every worker builds."""
        curvature = self.config["curvature"]
        return ProblemSpec(
            model_factory=functools.partial(build_from_config, self.config["model"]),
            dataset_factory=functools.partial(build_dataset, self.config["data"]),
            loss_fn=loss_named(self.model.loss),
            curvature=curvature["kind"],
            batch_size=self.data.batch_size,
            params=curvature["params"],
            dtype=self.dtype,
            operator_options=operator_options(curvature),
        )

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """What determines the operator, hence the measurements.

        Model, data and subset, curvature and parameter selection, dtype. Not what only changes how
        products are computed (batch size, product mode, determinism check, workers: the schema
        fields marked ``HOW``): a run may resume with other values of those.
        """
        return {
            "model": fingerprinted(schema.ModelConfig, self.config["model"]),
            "data": fingerprinted(schema.DataConfig, self.config["data"]),
            "curvature": fingerprinted(schema.CurvatureConfig, self.config["curvature"]),
            "dtype": self.dtype,
        }

    def with_settings(self, settings: Mapping[str, Any]) -> Job:
        """This job with ``settings`` (dotted keys, e.g.

        ``{"model.checkpoint": path}``) changed, compiled and checked again.
        """
        config = copy.deepcopy(self.config)
        for key, value in settings.items():
            *parents, name = key.split(".")
            node = config
            for parent in parents:
                node = node[parent]
            node[name] = value
        return compile_job(config)


PARTS = {
    "model": schema.ModelConfig,
    "data": schema.DataConfig,
    "curvature": schema.CurvatureConfig,
    "cluster": schema.ClusterConfig,
    # config node -> its schema
    "output": schema.OutputConfig,
    "plan": schema.PlanConfig,
    "reproduce": schema.ReproduceConfig,
    "layerwise": schema.LayerwiseConfig,
}


# (node, old key) -> its new key in that node
DEPRECATED = {("curvature", "hvp_mode"): "product_mode"}


def _rename_deprecated(config: dict[str, Any]) -> None:
    """Move values set under a deprecated key to its new name (a WARNING each).

    The old key is dropped.
    """
    for (node, old), new in DEPRECATED.items():
        value = config[node].pop(old, None)
        if value is not None:
            log.warning(
                "%s.%s is deprecated: use %s.%s (it picks the product of every curvature); taking "
                "%s.%s=%s",
                node,
                old,
                node,
                new,
                node,
                new,
                value,
            )
            config[node][new] = value


def compile_job(cfg: DictConfig | Mapping[str, Any]) -> Job:
    """The Job of a composed config (or of a Job's plain ``config``), checked.

    Args:
        cfg: A Hydra-composed config, or the plain dict of one (deprecated keys are renamed with a
            WARNING).

    Returns:
        Job: every part as its schema dataclass and the algorithm as its solver's config.

    Raises:
        InputError: The first bad value, naming the setting.
    """
    config = plain(cfg) if isinstance(cfg, DictConfig) else copy.deepcopy(dict(cfg))
    _rename_deprecated(config)
    solver = solver_for(config["algorithm"]["name"])
    parts = {name: schema_of(**config[name]) for name, schema_of in PARTS.items()}
    job = Job(
        config=config,
        task=config["task"],
        seed=config["seed"],
        dtype=config["dtype"],
        device=config["device"],
        solver=solver,
        algorithm=solver.config(**config["algorithm"]),
        **parts,
    )
    check_job(job)
    return job
