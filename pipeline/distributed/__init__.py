"""Ray engine: worker actors on data shards, all-reduced products, the RayOperator."""

from pipeline.distributed.actor_group import ActorGroup, WorkerDied, WorkerHung
from pipeline.distributed.group import WorkerGroup
from pipeline.distributed.head_watch import ClusterLost, watching_head
from pipeline.distributed.operator import RayOperator
from pipeline.distributed.runtime import init_ray, keep_local_ray, release_ray, sharing_local_ray
from pipeline.distributed.torch_backend import TorchBackend

# re-exported: the recipe the workers build
from pipeline.sharding import ProblemSpec, shard_batches, shard_indices

__all__ = [
    "ActorGroup",
    "ClusterLost",
    "ProblemSpec",
    "RayOperator",
    "TorchBackend",
    "WorkerDied",
    "WorkerGroup",
    "WorkerHung",
    "init_ray",
    "keep_local_ray",
    "release_ray",
    "shard_batches",
    "sharing_local_ray",
    "shard_indices",
    "watching_head",
]
