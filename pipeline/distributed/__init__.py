"""Ray engine: worker actors on data shards, all-reduced products, the RayOperator."""

from pipeline.distributed.actor_group import ActorGroup, WorkerDied
from pipeline.distributed.group import WorkerGroup
from pipeline.distributed.operator import RayOperator
from pipeline.distributed.runtime import init_ray
from pipeline.distributed.torch_backend import TorchBackend
from pipeline.sharding import ProblemSpec, shard_batches, shard_indices  # re-exported: the recipe the workers build

__all__ = ["ActorGroup", "ProblemSpec", "RayOperator", "TorchBackend", "WorkerDied", "WorkerGroup", "init_ray", "shard_batches",
           "shard_indices"]
