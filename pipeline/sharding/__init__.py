"""The problem recipe and its data shards, below both the in-process and the Ray paths.

A picklable ``ProblemSpec`` builds the curvature operator of shard r of N anywhere (this process or
a worker), so ``cluster=none`` never imports Ray.
"""

from pipeline.sharding.shards import shard_batches, shard_indices
from pipeline.sharding.spec import ProblemSpec

__all__ = ["ProblemSpec", "shard_batches", "shard_indices"]
