"""Ray engine: worker actors on data shards, all-reduced products, the RayOperator."""

from pipeline.distributed.group import WorkerDied, WorkerGroup
from pipeline.distributed.operator import RayOperator
from pipeline.distributed.runtime import init_ray
from pipeline.sharding import ProblemSpec, shard_batches, shard_indices  # re-exported: the recipe the workers build

__all__ = ["ProblemSpec", "RayOperator", "WorkerDied", "WorkerGroup", "init_ray", "shard_batches", "shard_indices"]
