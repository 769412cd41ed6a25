"""Ray engine: worker actors on data shards, all-reduced products, the RayOperator."""

from pipeline.distributed.group import WorkerDied, WorkerGroup
from pipeline.distributed.operator import RayOperator
from pipeline.distributed.runtime import init_ray
from pipeline.distributed.sharding import shard_batches, shard_indices
from pipeline.distributed.spec import ProblemSpec

__all__ = ["ProblemSpec", "RayOperator", "WorkerDied", "WorkerGroup", "init_ray", "shard_batches", "shard_indices"]
