"""Structured-config schemas: a wrong type or an unknown key fails when Hydra composes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from pipeline.curvature import CURVATURES
from pipeline.data import NAMES as DATASETS
from pipeline.models import ZOO
from pipeline.solvers import SOLVERS

CLUSTER_MODES = ("local", "none", "ray")  # local: Ray started here; none: in process; ray: an existing cluster

# Field metadata: HOW marks a setting that changes how products are computed, not their values:
# it is left out of the store's fingerprint, so a run may resume with another value.
HOW = {"fingerprint": False}


def fingerprinted(schema: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (a plain config node of ``schema``) that determine the numbers."""
    how = {f.name for f in fields(schema) if not f.metadata.get("fingerprint", True)}
    return {key: value for key, value in values.items() if key not in how}


def operator_options(values: dict[str, Any]) -> dict[str, Any]:
    """The curvature settings passed to the operator's constructor (metadata ``operator_option``)."""
    return {f.name: values[f.name] for f in fields(CurvatureConfig) if f.metadata.get("operator_option")}


@dataclass
class ModelConfig:
    name: str = "tanh_mlp"  # tanh_mlp | 3c3d | allcnnc | resnet18 | target
    widths: Optional[list[int]] = None  # tanh_mlp only
    num_classes: Optional[int] = None  # 3c3d, allcnnc, resnet18
    target: Optional[dict[str, Any]] = None  # {_target_: torchvision.models.resnet18, ...} for name=target
    checkpoint: Optional[str] = None  # torch.save'd state dict, loaded weights-only
    init_seed: int = 0  # initial weights when no checkpoint is given


@dataclass
class DataConfig:
    name: str = "digits"  # digits | synthetic | mnist | cifar10 | cifar100 | imagenet
    root: Optional[str] = None
    split: str = "train"
    subset: Optional[int] = 500  # fixed class-balanced subset size; null = all samples
    seed: int = 0
    batch_size: int = field(default=128, metadata=HOW)
    image_size: Optional[int] = 16
    holdout: int = 0  # MNIST: training images held out (seeded) as the validation split; the paper: 10000
    samples: int = 512  # synthetic only
    input_shape: list[int] = field(default_factory=lambda: [1, 16, 16])  # synthetic only
    num_classes: int = 10  # synthetic only


@dataclass
class CurvatureConfig:
    kind: str = "hessian"  # hessian | ggn | fisher
    # auto (time each mode once, keep the fastest) | forward-over-reverse | graph-reuse | reverse-over-reverse, compiled (Hessian only)
    product_mode: str = field(default="auto", metadata={**HOW, "operator_option": True})
    hvp_mode: Optional[str] = field(default=None, metadata=HOW)  # deprecated name of product_mode (also GGN and Fisher products)
    # product graphs kept across products, in GiB of saved tensors; null: a quarter of the memory available; 0: off
    graph_cache_gb: Optional[float] = field(default=None, metadata={**HOW, "operator_option": True})
    params: Optional[list[str]] = None  # name globs / "re:" regexes; null = all trainable
    check_determinism: bool = field(default=False, metadata=HOW)


@dataclass
class ClusterConfig:
    mode: str = "local"  # none (in process) | local (Ray started here) | ray (existing cluster)
    num_workers: Optional[int] = 2  # null: one per GPU of the cluster (one per node without GPUs)
    cpus_per_worker: Optional[float] = None  # null: the CPUs divided among the workers
    gpus_per_worker: Optional[float] = None  # null: one GPU each if there is one per worker
    address: Optional[str] = None  # mode=ray: default $RAY_ADDRESS
    max_failures: int = 3  # dead or hung workers replaced in a row before the run stops
    connect_timeout_s: float = 60.0  # mode=ray: give up if the cluster does not answer within this
    # a product not answered within max(this, 10x the slowest so far) is a hung worker: killed, replaced, redone
    call_timeout_s: float = 1800.0


@dataclass
class OutputConfig:
    plots: bool = True
    store: str = "store.zarr"  # relative to the run dir
    landscape: bool = False  # loss along the top eigenvectors
    landscape_vectors: int = 3
    landscape_points: int = 21
    landscape_radius: float = 1.0
    progress_interval_s: float = 30.0  # off a terminal: a progress line this often (on one: a bar)
    tracker: Optional[str] = None  # null | mlflow | tensorboard (pip install "hessian-pipeline[track]")
    tracker_uri: Optional[str] = None  # mlflow: a tracking URI; null: $MLFLOW_TRACKING_URI, else a file store in <run dir>/mlruns


@dataclass
class ReproduceConfig:
    """task=reproduce: SGD settings of the paper's Table 1, checkpoints, Hessian splits, overlap ks."""

    lr: float = 0.3
    batch_size: int = 500
    checkpoint_steps: list[int] = field(default_factory=lambda: [0, 2000, 4000, 6000, 8000])
    test_split: str = "test"  # accuracy of the checkpoints is measured here
    splits: dict[str, Optional[int]] = field(default_factory=lambda: {"train": 500, "test": 500})  # split -> subset
    overlap_ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100, 200, 355])
    random_masks: int = 10  # random-mask draws per k (mean and 5-95% band)
    exact: Optional[bool] = None  # dense float64 eigh on the same samples; null: when D <= exact_max_dim
    exact_max_dim: int = 20000
    exact_steps: Optional[list[int]] = None  # checkpoints that get the exact reference; null: all
    loader_workers: int = 0  # DataLoader processes for training (ImageNet: 8+)


@dataclass
class PlanConfig:
    """task=plan, and the prediction every run logs: flag a run longer than ``time_limit``; a
    store larger than the free disk is refused before anything starts unless ``allow_overcommit``."""

    time_limit: Optional[str] = None  # a SLURM --time value (e.g. 24:00:00); default $SBATCH_TIMELIMIT / $SLURM_TIMELIMIT
    allow_overcommit: bool = False  # start even when the store will not fit in the free space under the run dir


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)
    algorithm: Any = MISSING  # a registered solver's config (pipeline.solvers), chosen by the algorithm group
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    reproduce: ReproduceConfig = field(default_factory=ReproduceConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    task: str = "eigen"  # eigen (one decomposition) | reproduce (train -> decompose -> overlap) | plan (predict cost, plan.json)
    seed: int = 0
    dtype: str = "float32"  # float32 | float64
    device: str = "auto"  # auto | cpu | cuda (mode=none)


def help_groups() -> str:
    """The ``--help`` lines listing each config group's options, the default first, from the
    registries (models, data sets, curvatures, solvers, cluster modes) and the experiment files."""
    experiments = sorted(path.stem for path in (Path(__file__).resolve().parent / "conf" / "experiment").glob("*.yaml"))
    groups = {"model": (ModelConfig.name, [*ZOO, "target"]), "data": (DataConfig.name, DATASETS),
              "curvature": (CurvatureConfig.kind, CURVATURES), "algorithm": ("seigh", SOLVERS),  # conf/config.yaml's default
              "cluster": (ClusterConfig.mode, CLUSTER_MODES)}
    lines = [f"  {group:<11} " + " | ".join([default, *sorted(set(options) - {default})]) for group, (default, options) in groups.items()]
    return "\n".join([*lines, f"  {'experiment':<11} " + " | ".join(experiments),
                      " " * 14 + "(add with +experiment=NAME; sets task=reproduce)"])


def register() -> None:
    if not OmegaConf.has_resolver("help_groups"):
        OmegaConf.register_new_resolver("help_groups", help_groups)  # the --help template's group lists
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for group, node in (("model", ModelConfig), ("data", DataConfig), ("curvature", CurvatureConfig), ("cluster", ClusterConfig)):
        store.store(group=group, name="schema", node=node)
    for name, solver in SOLVERS.items():
        store.store(group="algorithm", name=f"{name}_schema", node=solver.config)
