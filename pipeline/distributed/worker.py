"""The worker actor: a model replica on its data shard, all-reducing partial products."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Any

import numpy as np
import ray
import torch

from pipeline.basics import peak_rss_bytes
from pipeline.curvature.graph_cache import available_bytes
from pipeline.distributed import process_group
from pipeline.distributed.actor_group import PROBE, PeerFailed
from pipeline.distributed.torch_backend import TorchRank
from pipeline.linalg.measurer import split_columns
from pipeline.linalg.random_matrices import random_columns
from pipeline.linalg.streaming import WriteBehind
from pipeline.sharding.spec import ProblemSpec
from pipeline.store.protocol import ColumnWriter


class CurvatureWorker(TorchRank):
    """Rank ``rank`` of ``world_size``.

    Builds its shard's operator, joins the process group and returns sum-reduced, sample-weighted
    products (rank 0 returns them, the others None).
    """

    def __init__(
        self,
        spec: ProblemSpec,
        rank: int,
        world_size: int,
        threads: int | None = None,
        device: str = "cpu",
    ):
        """One rank's operator on its data shard, on ``device``.

        ``device`` is chosen by the driver from the resources it gave the workers (cuda when each
        has a GPU).
        """
        self.spec, self.rank, self.world_size = spec, rank, world_size
        # Ray forwards a worker's stderr to the driver: choices such as product_mode=auto show there
        _log_to_stderr()
        sys.unraisablehook = _quiet_on_exit
        self.device = torch.device(device)
        if threads:
            torch.set_num_threads(threads)
        self.op = None
        self.writes = WriteBehind()
        self._phase = ("idle", time.monotonic())

    # ---- setup ------------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        """Build the model replica and the shard's operator; report what the driver needs."""
        self.op = self.spec.build(self.world_size, self.rank, self.device)
        return {
            "dim": self.op.shape[0],
            "dtype": str(self.op.dtype).removeprefix("torch."),
            "pid": os.getpid(),
            "device": str(self.device),
            "weights": self.op.weights_digest(),
            "node": ray.get_runtime_context().get_node_id(),
            "samples": self.op.num_samples,
            "memory_available": available_bytes(torch.device("cpu")),
        }

    @ray.method(concurrency_group=PROBE)
    def phase(self) -> tuple[str, float]:
        """(what this rank is doing, for how many seconds): answered while a product runs."""
        what, since = self._phase
        return what, time.monotonic() - since

    def _enter(self, what: str) -> None:
        self._phase = (what, time.monotonic())

    # ---- products ---------------------------------------------------------------------------
    def matmat(self, V: np.ndarray) -> tuple[torch.Tensor | None, dict[str, float]]:
        """(H V on rank 0 else None, timings) for V (D, b).

        (H V on rank 0 else None, timings) for V (D, b), a read-only view into the object store.
        """
        with warnings.catch_warnings():
            # the view is read-only; it is never written
            warnings.simplefilter("ignore", UserWarning)
            block = torch.from_numpy(V)
        return self._reduced_product(block.to(self.device, self.op.dtype))

    def measure(
        self,
        kind: str,
        seed: int,
        columns: range,
        writer: ColumnWriter | None,
        width: int | None = None,
    ) -> tuple[torch.Tensor | None, dict[str, float]]:
        """H Omega[:, columns] with Omega generated here, in products of at most ``width`` columns.

        Rank 0 writes it in the background while the next block is computed (``wait_for_writes``
        waits for it), or returns it.
        """
        product, timings = None, {}
        for part in split_columns(columns, width):
            reduced, part_timings = self._reduced_product(
                random_columns(
                    kind, seed, self.op.shape[0], part, dtype=self.op.dtype, device=self.device
                )
            )
            for key, value in part_timings.items():
                timings[key] = timings.get(key, 0.0) + value
            if reduced is None:  # not rank 0
                continue
            if len(part) == len(columns):
                product = reduced
                continue
            # the parts go straight into the block: no list of parts and no concatenated copy
            product = (
                product
                if product is not None
                else reduced.new_empty(reduced.shape[0], len(columns))
            )
            product[:, part.start - columns.start : part.stop - columns.start] = reduced
        if writer is not None and product is not None:
            self._enter("waiting for its previous block to be written to the store")
            timings["write_wait_s"] = self.writes.submit(writer.write, columns, product)
            self._enter("idle")
            product = None
        return product, timings

    def expect(self, products: int) -> None:
        """The products the driver's algorithm announces (``Operator.expect``).

        This shard's mode choice weighs them.
        """
        self.op.expect(products)

    def pass_seconds(self, width: int) -> float:
        """Seconds of this rank's share of one product of a (D, ``width``) block.

        This shard's product, timed on its first batch and scaled by its samples
        (``CurvatureOperator.pass_seconds``; it settles the block's product mode, kept for the
        run), plus a measurement block's test columns generated and all-reduced, timed: every
        rank must call it.
        """
        seconds = self.op.pass_seconds(width) or 0.0
        start = time.perf_counter()
        block = random_columns(
            "rademacher", 0, self.op.shape[0], range(width), dtype=self.op.dtype, device=self.device
        )
        process_group.all_reduce_sum(block)
        return seconds + time.perf_counter() - start

    def width_fit(
        self, widest: int, budget_bytes: int | None, fixed_bytes: int, sharing: dict[str, int]
    ) -> dict[str, Any]:
        """This rank's widest product that fits its memory (``CurvatureOperator.width_fit``).

        ``sharing``: workers per node id; a worker shares its node's memory (or its GPU) with them.
        ``fixed_bytes`` (the store blocks a measurement holds) count on rank 0, which assembles and
        writes them; every rank sizes its probes for them, as rank 0's fit binds.
        """
        fit = self.op.width_fit(
            widest, budget_bytes, *self._share(fixed_bytes, sharing), probe_fixed_bytes=fixed_bytes
        )
        return fit.as_dict()

    def batch_fit(
        self, width: int, budget_bytes: int | None, fixed_bytes: int, sharing: dict[str, int]
    ) -> dict[str, Any]:
        """This rank's largest batch that fits its memory (``CurvatureOperator.batch_fit``).

        Shared and fixed memory, and the probes, as for ``width_fit``.
        """
        fit = self.op.batch_fit(
            width, budget_bytes, *self._share(fixed_bytes, sharing), probe_fixed_bytes=fixed_bytes
        )
        return fit.as_dict()

    def rebatch(self, batch_size: int) -> None:
        """This rank's shard split again into batches of ``batch_size`` samples."""
        self.op.rebatch(batch_size)

    def _share(self, fixed_bytes: int, sharing: dict[str, int]) -> tuple[int, int]:
        """(the fixed bytes this rank holds: rank 0's alone, the workers on this rank's node)."""
        node = ray.get_runtime_context().get_node_id()
        return (fixed_bytes if self.rank == 0 else 0), sharing[node]

    def probe_share(self) -> float:
        """What this rank's ``pass_seconds`` at a new width costs, in products of its shard."""
        return self.op.probe_share()

    def wait_for_writes(self) -> None:
        """Wait until this rank's background writes are done."""
        self.writes.wait()

    def peak_rss(self) -> int:
        """This worker process's peak resident memory in bytes."""
        return peak_rss_bytes()

    def _reduced_product(self, V: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """All-reduce (sum_i w_i C_i V, N) over the ranks (see ``CurvatureOperator.weighted_sum``).

        A rank whose shard fails (NaN loss, bad data) still joins the collectives, so no peer is
        left blocked: every rank learns of the failure from the reduced flag, the failing one raises
        its error, the others PeerFailed.
        """
        start = time.perf_counter()
        error = None
        self._enter("computing its partial product")
        try:
            total, count = self.op.weighted_sum(V)
        except Exception as caught:  # re-raised below, after the peers have been told
            error, total, count = caught, torch.zeros_like(V), 0
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        computed = time.perf_counter()
        status = torch.tensor(
            [float(count), float(error is not None)], dtype=torch.float64, device=self.device
        )
        self._enter("waiting in the all-reduce")
        try:
            process_group.all_reduce_sum(status)
            if error is not None:
                raise error
            if status[1] > 0:
                raise PeerFailed("another worker failed on its shard")
            process_group.all_reduce_sum(total)
        finally:
            self._enter("idle")
        reduced = time.perf_counter()
        timings = {"compute_s": computed - start, "allreduce_s": reduced - computed}
        if self.rank != 0:
            return None, timings
        return self.op.normalise(total, status[0].to(total.dtype)).cpu(), timings

    def pid(self) -> int:
        """This worker's process id."""
        return os.getpid()


def _quiet_on_exit(unraisable: Any) -> None:
    """Ray stops a worker by raising SystemExit from its SIGTERM handler.

    Raised inside a weakref or garbage-collector callback (a write-behind thread pool's), Python
    would print it to the driver's log as an "Exception ignored" traceback. Anything else is
    reported as usual.
    """
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def _log_to_stderr() -> None:
    """INFO and above of this package's loggers on stderr, once per worker process."""
    logger = logging.getLogger("pipeline")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
