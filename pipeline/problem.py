"""From a composed config to a curvature operator: in process, or on Ray workers."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.config import CurvatureConfig, DataConfig, fingerprinted, operator_options
from pipeline.data import build_dataset
from pipeline.errors import InputError
from pipeline.linalg import Operator
from pipeline.models import build_from_config
from pipeline.sharding import ProblemSpec

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
MODES = ("none", "local", "ray")


def plain(node: Any) -> Any:
    """A resolved, plain-Python copy of a config node (raises on missing ??? values)."""
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=True) if isinstance(node, DictConfig) else node


def problem_spec(cfg: DictConfig) -> ProblemSpec:
    """Picklable recipe of the model, data and curvature named by the config."""
    curvature = plain(cfg.curvature)
    return ProblemSpec(
        model_factory=functools.partial(build_from_config, plain(cfg.model)),
        dataset_factory=functools.partial(build_dataset, plain(cfg.data)),
        curvature=curvature["kind"],
        batch_size=cfg.data.batch_size,
        params=curvature["params"],
        dtype=cfg.dtype,
        operator_options=operator_options(curvature),
    )


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """What determines the operator, hence the measurements: model, data and subset, curvature
    and parameter selection, dtype. Not what only changes how products are computed (batch size,
    product mode, determinism check, workers; the schema fields marked ``HOW``): a run may
    resume with other values of those."""
    return {"model": plain(cfg.model), "data": fingerprinted(DataConfig, plain(cfg.data)),
            "curvature": fingerprinted(CurvatureConfig, plain(cfg.curvature)), "dtype": cfg.dtype}


@contextlib.contextmanager
def open_operator(cfg: DictConfig, spec: ProblemSpec) -> Iterator[Operator]:
    """The operator for ``cluster.mode``: ``none`` builds it here; ``local`` starts Ray with
    num_workers x cpus_per_worker CPUs (all of this machine's when cpus_per_worker is null); ``ray`` joins $RAY_ADDRESS (or cluster.address).
    A null num_workers / cpus_per_worker / gpus_per_worker is sized from the cluster's resources.
    Workers and a Ray instance started here are shut down on exit."""
    cluster = cfg.cluster
    if cluster.mode == "none":
        device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else ("cpu" if cfg.device == "auto" else cfg.device)
        op = spec.build(1, 0, device)
        if cfg.curvature.check_determinism:
            op.check_determinism()
        yield op
        return
    spec.preview()  # the data fits the model: checked before Ray starts (the one build of the data on the driver)
    from pipeline.distributed import RayOperator, init_ray, release_ray, watching_head  # Ray is imported only for cluster=local / ray

    watch = contextlib.nullcontext()
    if cluster.mode == "ray":
        address = cluster.address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise InputError("cluster=ray joins an existing cluster: set RAY_ADDRESS or cluster.address (or use cluster=local)")
        started = init_ray(address=address, connect_timeout_s=cluster.connect_timeout_s)
        watch = watching_head(address, cluster.connect_timeout_s)
    else:
        cpus = round(cluster.num_workers * cluster.cpus_per_worker) if cluster.num_workers and cluster.cpus_per_worker else None  # None: all
        started = init_ray(num_cpus=cpus)
    with watch:
        try:
            with RayOperator(spec, cluster.num_workers, cluster.cpus_per_worker, cluster.gpus_per_worker, cluster.max_failures,
                             call_timeout_s=cluster.call_timeout_s) as op:
                group = op.group
                log.info("%d Ray workers ready on %d nodes (%g CPUs, %g GPUs each), D=%d, dtype=%s", group.num_workers,
                         len({info["node"] for info in group.info}), group.cpus_per_worker, group.gpus_per_worker, op.shape[0], op.dtype)
                yield op
        finally:
            if started:
                release_ray()
