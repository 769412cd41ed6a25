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

# local: Ray started here; none: in process; ray: an existing cluster
CLUSTER_MODES = ("local", "none", "ray")

# Field metadata: HOW marks a setting that changes how products are computed, not their values:
# it is left out of the store's fingerprint, so a run may resume with another value.
HOW = {"fingerprint": False}
# ADDED marks a setting added after stores were made: at its default it is left out of the
# fingerprint, so those stores still resume (a set value is fingerprinted as usual).
ADDED = {"fingerprint": "unless default"}


def fingerprinted(schema: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (a plain config node of ``schema``) that determine the numbers."""
    how = {f.name for f in fields(schema) if f.metadata.get("fingerprint", True) is False}
    added = {
        f.name: f.default
        for f in fields(schema)
        if f.metadata.get("fingerprint") == ADDED["fingerprint"]
    }
    return {
        key: value
        for key, value in values.items()
        if key not in how and not (key in added and value == added[key])
    }


def operator_options(values: dict[str, Any]) -> dict[str, Any]:
    """The curvature settings passed to the operator's constructor.

    The curvature settings passed to the operator's constructor (metadata ``operator_option``).
    """
    return {
        f.name: values[f.name] for f in fields(CurvatureConfig) if f.metadata.get("operator_option")
    }


@dataclass
class ModelConfig:
    """``model``: a zoo network or any ``_target_``, and its checkpoint."""

    name: str = "tanh_mlp"  # tanh_mlp | 3c3d | allcnnc | resnet18 | tiny_gpt | target
    widths: Optional[list[int]] = None  # tanh_mlp only
    num_classes: Optional[int] = None  # 3c3d, allcnnc, resnet18
    # {_target_: torchvision.models.resnet18, ...} for name=target
    target: Optional[dict[str, Any]] = None
    checkpoint: Optional[str] = None  # torch.save'd state dict, loaded weights-only
    init_seed: int = 0  # initial weights when no checkpoint is given
    # cross_entropy (classification) | causal_lm (next-token, mean over real tokens)
    loss: str = field(default="cross_entropy", metadata=ADDED)
    # tiny_gpt only
    vocab_size: Optional[int] = field(default=None, metadata=ADDED)
    context: Optional[int] = field(default=None, metadata=ADDED)
    layers: Optional[int] = field(default=None, metadata=ADDED)
    width: Optional[int] = field(default=None, metadata=ADDED)
    heads: Optional[int] = field(default=None, metadata=ADDED)


@dataclass
class DataConfig:
    """``data``: the data set, its split, the fixed subset and the batches."""

    name: str = "digits"  # digits | synthetic | mnist | cifar10 | cifar100 | imagenet | tokens
    root: Optional[str] = None
    split: str = "train"
    subset: Optional[int] = 500  # fixed class-balanced subset size; null = all samples
    seed: int = 0
    # samples per batch, or auto: the largest whose products fit a worker's memory (measured)
    batch_size: Any = field(default=128, metadata=HOW)
    image_size: Optional[int] = 16
    # MNIST: training images held out (seeded) as the validation split; the paper: 10000
    holdout: int = 0
    samples: int = 512  # synthetic only
    input_shape: list[int] = field(default_factory=lambda: [1, 16, 16])  # synthetic only
    num_classes: int = 10  # synthetic only
    context: int = field(default=64, metadata=ADDED)  # tokens only: tokens per sequence


@dataclass
class CurvatureConfig:
    """``curvature``: the matrix (Hessian, GGN, Fisher), its product mode and parameters."""

    kind: str = "hessian"  # hessian | ggn | fisher
    # auto (time each mode once, keep the fastest) | forward-over-reverse | graph-reuse |
    # reverse-over-reverse, compiled (Hessian only)
    product_mode: str = field(default="auto", metadata={**HOW, "operator_option": True})
    # deprecated name of product_mode (also GGN and Fisher products)
    hvp_mode: Optional[str] = field(default=None, metadata=HOW)
    # product graphs kept across products, in GiB of saved tensors; null: a quarter of the memory
    # available; 0: off
    graph_cache_gb: Optional[float] = field(default=None, metadata={**HOW, "operator_option": True})
    params: Optional[list[str]] = None  # name globs / "re:" regexes; null = all trainable
    check_determinism: bool = field(default=False, metadata=HOW)


@dataclass
class ClusterConfig:
    """``cluster``: in process, a local Ray, or an existing cluster, and its workers."""

    mode: str = "local"  # none (in process) | local (Ray started here) | ray (existing cluster)
    num_workers: Optional[int] = 2  # null: one per GPU of the cluster (one per node without GPUs)
    cpus_per_worker: Optional[float] = None  # null: the CPUs divided among the workers
    gpus_per_worker: Optional[float] = None  # null: one GPU each if there is one per worker
    address: Optional[str] = None  # mode=ray: default $RAY_ADDRESS
    max_failures: int = 3  # dead or hung workers replaced in a row before the run stops
    connect_timeout_s: float = 60.0  # mode=ray: give up if the cluster does not answer within this
    # a product not answered within max(this, 10x the slowest so far) is a hung worker: killed,
    # replaced, redone
    call_timeout_s: float = 1800.0
    # memory a worker may use, for algorithm.product_width=auto; null: 80% of its node's memory
    # (90% of its GPU's) shared by the workers on it
    worker_memory_gb: Optional[float] = None


@dataclass
class OutputConfig:
    """``output``: plots, the store's location and the loss landscape."""

    plots: bool = True
    store: str = "store.zarr"  # relative to the run dir
    landscape: bool = False  # loss along the top eigenvectors
    landscape_vectors: int = 3
    landscape_points: int = 21
    landscape_radius: float = 1.0
    progress_interval_s: float = 30.0  # off a terminal: a progress line this often (on one: a bar)
    # null | mlflow | tensorboard (pip install "hessian-pipeline[track]")
    tracker: Optional[str] = None
    # mlflow: a tracking URI; null: $MLFLOW_TRACKING_URI, else a file store in <run dir>/mlruns
    tracker_uri: Optional[str] = None


@dataclass
class ReproduceConfig:
    """task=reproduce: the paper's training, checkpoints, splits and overlap ks.

    task=reproduce: SGD settings of the paper's Table 1, checkpoints, Hessian splits, overlap ks.
    """

    lr: float = 0.3
    batch_size: int = 500
    checkpoint_steps: list[int] = field(default_factory=lambda: [0, 2000, 4000, 6000, 8000])
    test_split: str = "test"  # accuracy of the checkpoints is measured here
    # split -> subset
    splits: dict[str, Optional[int]] = field(default_factory=lambda: {"train": 500, "test": 500})
    overlap_ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100, 200, 355])
    random_masks: int = 10  # random-mask draws per k (mean and 5-95% band)
    # dense float64 eigh on the same samples; null: when D <= exact_max_dim
    exact: Optional[bool] = None
    exact_max_dim: int = 20000
    exact_steps: Optional[list[int]] = None  # checkpoints that get the exact reference; null: all
    loader_workers: int = 0  # DataLoader processes for training (ImageNet: 8+)


@dataclass
class PlanConfig:
    """task=plan, and the prediction every run logs: flag a run longer than ``time_limit``.

    A store larger than the free disk is refused before anything starts unless ``allow_overcommit``.
    """

    # a SLURM --time value (e.g. 24:00:00); default $SBATCH_TIMELIMIT / $SLURM_TIMELIMIT
    time_limit: Optional[str] = None
    # start even when the store will not fit in the free space under the run dir
    allow_overcommit: bool = False


@dataclass
class LayerwiseConfig:
    """task=layerwise: the parameter blocks and what is computed for each.

    Each block's top-k eigenpairs come from the job's algorithm (dense where the block is small).
    """

    # modules (each module with parameters of its own) | a list of name globs / "re:" regexes
    blocks: Any = "modules"
    trace_matvecs: int = 60  # Hutch++ products per block
    density: bool = False  # an SLQ spectral density per block
    # blocks up to this many parameters: exact, from their dense matrix (D products)
    dense_max_dim: int = 1000


@dataclass
class Config:
    """The whole job: one group per concern, as composed by Hydra."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)
    # a registered solver's config (pipeline.solvers), chosen by the algorithm group
    algorithm: Any = MISSING
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    reproduce: ReproduceConfig = field(default_factory=ReproduceConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    layerwise: LayerwiseConfig = field(default_factory=LayerwiseConfig)
    # eigen (one decomposition) | reproduce (train -> decompose -> overlap) | plan (predict cost,
    # plan.json) | layerwise (every parameter block's spectrum)
    task: str = "eigen"
    seed: int = 0
    dtype: str = "float32"  # float32 | float64
    device: str = "auto"  # auto | cpu | cuda (mode=none)


def help_groups() -> str:
    """The ``--help`` lines listing each config group's options.

    The ``--help`` lines listing each config group's options, the default first, from the registries
    (models, data sets, curvatures, solvers, cluster modes) and the experiment files.
    """
    experiments = sorted(
        path.stem
        for path in (Path(__file__).resolve().parent / "conf" / "experiment").glob("*.yaml")
    )
    groups = {
        "model": (ModelConfig.name, [*ZOO, "target"]),
        "data": (DataConfig.name, DATASETS),
        # conf/config.yaml's default
        "curvature": (CurvatureConfig.kind, CURVATURES),
        "algorithm": ("seigh", SOLVERS),
        "cluster": (ClusterConfig.mode, CLUSTER_MODES),
    }
    lines = [
        f"  {group:<11} " + " | ".join([default, *sorted(set(options) - {default})])
        for group, (default, options) in groups.items()
    ]
    return "\n".join(
        [
            *lines,
            f"  {'experiment':<11} " + " | ".join(experiments),
            " " * 14 + "(add with +experiment=NAME; sets task=reproduce)",
        ]
    )


def register() -> None:
    """Register the schemas and the ``help_groups`` resolver with Hydra."""
    if not OmegaConf.has_resolver("help_groups"):
        # the --help template's group lists
        OmegaConf.register_new_resolver("help_groups", help_groups)
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for group, node in (
        ("model", ModelConfig),
        ("data", DataConfig),
        ("curvature", CurvatureConfig),
        ("cluster", ClusterConfig),
    ):
        store.store(group=group, name="schema", node=node)
    for name, solver in SOLVERS.items():
        store.store(group="algorithm", name=f"{name}_schema", node=solver.config)
