"""RayOperator against the in-process operator, fault handling and bad input."""

import functools
import logging
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.curvature import GGNOperator, HessianOperator
from pipeline.distributed import ProblemSpec, RayOperator, shard_indices
from pipeline.errors import OperationError
from pipeline.linalg import lanczos, random_columns, seigh
from pipeline.store import RunStore

from helpers import (
    SlowDataset,
    data_factory,
    failing_factory,
    mlp_factory,
    split,
    tripwire_factory,
    unseeded_mlp_factory,
)

pytestmark = pytest.mark.ray

CE = nn.functional.cross_entropy


def spec(dtype=torch.float64, n=61, curvature="hessian", batch_size=16, loss_fn=CE, **kwargs):
    return ProblemSpec(
        loss_fn=loss_fn,
        model_factory=functools.partial(mlp_factory, dtype=dtype),
        dataset_factory=functools.partial(data_factory, n=n, dtype=dtype),
        curvature=curvature,
        batch_size=batch_size,
        **kwargs,
    )


def local_operator(dtype=torch.float64, n=61, cls=HessianOperator):
    x, y = data_factory(n, dtype)
    return cls(mlp_factory(dtype=dtype), CE, split(x, y, [n]))


@pytest.fixture(scope="module")
def ray_op(ray_session):
    with RayOperator(spec(), num_workers=2, cpus_per_worker=1) as op:
        yield op


def test_shards_are_balanced_and_cover_everything():
    shards = [shard_indices(61, 2, r) for r in range(2)]
    assert [len(s) for s in shards] == [31, 30]
    assert list(shards[0]) + list(shards[1]) == list(range(61))


def test_two_workers_equal_in_process_float64(ray_op):
    local = local_operator()
    assert ray_op.num_samples == local.num_samples == 61  # the shards' sizes add up
    V = torch.randn(local.shape[0], 3, dtype=torch.float64)
    torch.testing.assert_close(ray_op @ V, local @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ray_op @ V[:, 0], local @ V[:, 0], rtol=1e-10, atol=1e-12)
    assert len(ray_op.last_timings) == 2 and all(t["compute_s"] > 0 for t in ray_op.last_timings)


def test_workers_fit_their_product_width_to_their_share_of_the_node(ray_op):
    """Two workers on one node each budget 80% of half its memory; a budget below what a worker
    holds is refused from the worker, naming the fix, and not retried."""
    fit = ray_op.width_fit(16, None, 0)
    assert 1 <= fit.size <= 16 and fit.per_unit_bytes > 0
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert fit.budget_bytes <= 0.8 * physical / 2
    with pytest.raises(OperationError, match=r"data\.batch_size"):
        ray_op.width_fit(16, 2**20, 0)
    assert ray_op.failures == 0


def test_workers_fit_their_batch_and_rebatch(ray_op):
    """data.batch_size=auto on Ray: the smallest rank's fit (a free budget: its whole shard, 30 of
    61 samples), every shard re-batched (the product unchanged, and a replacement worker built
    with it), a budget below what a worker holds refused naming the fix, not retried."""
    local = local_operator()
    V = torch.randn(local.shape[0], 2, dtype=torch.float64)
    free = ray_op.batch_fit(2, None, 0)
    assert free.size == free.largest == 30 and free.unit == "sample"
    first_batch_share = ray_op.probe_share()  # proportional to a rank's first batch: 16 samples
    ray_op.rebatch(7)
    assert ray_op.probe_share() == pytest.approx(first_batch_share * 7 / 16)
    assert ray_op.group.spec.batch_size == 7
    torch.testing.assert_close(ray_op @ V, local @ V, rtol=1e-10, atol=1e-12)
    with pytest.raises(OperationError, match=r"algorithm\.product_width"):
        ray_op.batch_fit(2, 2**20, 0)
    assert ray_op.failures == 0


def test_two_workers_equal_in_process_for_a_summed_loss(ray_session):
    """A sum-reduced loss: C = sum of the batches' curvatures.

    A sum-reduced loss: C = sum of the batches' curvatures, whatever the workers and batch size.
    """
    summed = functools.partial(nn.functional.cross_entropy, reduction="sum")
    x, y = data_factory(61, torch.float64)
    local = HessianOperator(mlp_factory(), summed, split(x, y, [61]))
    V = torch.randn(local.shape[0], 2, dtype=torch.float64)
    with RayOperator(spec(loss_fn=summed, batch_size=9), num_workers=2, cpus_per_worker=1) as op:
        torch.testing.assert_close(op @ V, local @ V, rtol=1e-10, atol=1e-12)


def test_two_workers_equal_in_process_float32_ggn(ray_session):
    local = local_operator(torch.float32, cls=GGNOperator)
    V = torch.randn(local.shape[0], 2, dtype=torch.float32)
    with RayOperator(
        spec(torch.float32, curvature="ggn", batch_size=7), num_workers=2, cpus_per_worker=1
    ) as op:
        assert op.dtype == torch.float32
        result = op @ V
    expected = local @ V
    assert float((result - expected).norm() / expected.norm()) < 1e-5


def test_lanczos_through_ray_equals_in_process(ray_op):
    ours = lanczos(ray_op, 4, tol=1e-10)
    reference = lanczos(local_operator(), 4, tol=1e-10)
    torch.testing.assert_close(ours.eigenvalues, reference.eigenvalues, rtol=1e-9, atol=0)
    assert ((ours.eigenvectors.T @ reference.eigenvectors).diagonal().abs() > 1 - 1e-9).all()


def test_measure_generates_test_vectors_on_workers(ray_op):
    local = local_operator()
    columns = range(3, 6)
    expected = local @ random_columns("rademacher", 11, local.shape[0], columns)
    before = ray_op.matvecs
    torch.testing.assert_close(
        ray_op.measure("rademacher", 11, columns), expected, rtol=1e-10, atol=1e-12
    )
    assert ray_op.matvecs - before == 3


def _worker_pids(op):
    return [info["pid"] for info in op.group.info]


def test_worker_killed_between_products_is_replaced(ray_session):
    local = local_operator()
    V = torch.randn(local.shape[0], 2, dtype=torch.float64)
    with RayOperator(spec(), num_workers=2, cpus_per_worker=1) as op:
        first = op @ V
        victim = _worker_pids(op)[1]
        os.kill(victim, signal.SIGKILL)
        second = op @ V
        assert op.failures == 1
        assert victim not in _worker_pids(op)
    torch.testing.assert_close(first, second, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(second, local @ V, rtol=1e-10, atol=1e-12)


def test_worker_killed_during_a_product_is_redone(ray_session):
    dataset = SlowDataset(n=40, delay_s=0.03)
    slow = ProblemSpec(
        functools.partial(mlp_factory), functools.partial(lambda d: d, dataset), CE, batch_size=4
    )
    local = HessianOperator(mlp_factory(), CE, split(dataset.x, dataset.y, [40]))
    V = torch.randn(local.shape[0], dtype=torch.float64)
    with RayOperator(slow, num_workers=2, cpus_per_worker=1) as op:
        victim = _worker_pids(op)[0]
        timer = threading.Timer(0.3, os.kill, (victim, signal.SIGKILL))
        timer.start()
        result = op @ V  # takes ~0.6 s per product: the kill lands inside it
        timer.join()
        assert op.failures == 1
        assert victim not in _worker_pids(op)
    torch.testing.assert_close(result, local @ V, rtol=1e-10, atol=1e-12)


def test_too_many_failures_stop_with_a_clear_error(ray_session):
    op = RayOperator(spec(), num_workers=2, cpus_per_worker=1, max_failures=0)
    os.kill(_worker_pids(op)[0], signal.SIGKILL)
    with pytest.raises(RuntimeError, match="max_failures=0"):
        op @ torch.ones(op.shape[0], dtype=torch.float64)
    op.close()


def test_more_workers_than_samples(ray_session):
    with pytest.raises(ValueError, match="cannot split 3 samples into 4"):
        RayOperator(spec(n=3), num_workers=4, cpus_per_worker=1)


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_bad_worker_count(ray_session, workers):
    with pytest.raises(ValueError, match="num_workers"):
        RayOperator(spec(), num_workers=workers, cpus_per_worker=1)


def test_model_factory_that_raises(ray_session):
    broken = ProblemSpec(failing_factory, functools.partial(data_factory), CE)
    with pytest.raises(RuntimeError, match="checkpoint file /nonexistent/model.pt not found"):
        RayOperator(broken, num_workers=2, cpus_per_worker=1)


def test_workers_that_build_different_models_are_refused(ray_session):
    unseeded = ProblemSpec(unseeded_mlp_factory, functools.partial(data_factory), CE)
    with pytest.raises(
        OperationError,
        match="workers built different models: the model factory is not deterministic",
    ):
        RayOperator(unseeded, num_workers=2, cpus_per_worker=1)


def test_automatic_resources_divide_the_cluster(ray_session):
    from pipeline.distributed.group import resources_per_worker

    total = ray_session.cluster_resources()
    cpus, gpus = resources_per_worker(2, None, None)
    assert cpus == max(1, total["CPU"] // 2)
    assert gpus == (1.0 if total.get("GPU", 0) >= 2 else 0.0)
    assert resources_per_worker(2, 3, 0.5) == (3, 0.5)


class _Method:
    """An actor method's handle that records its submissions.

    An actor method's handle: records its submissions; the first sends this process ``signum``.
    """

    def __init__(self, calls: list, signum: int):
        self.calls, self.signum = calls, signum

    def remote(self, *args):
        self.calls.append(args)
        if len(self.calls) == 1:
            # the scheduler's SIGTERM (here SIGINT) arriving mid-submission
            signal.raise_signal(self.signum)
        return len(self.calls)


def _measure(*args):
    """Stands for a worker method: ``ActorGroup`` calls the actors' method of the same name."""


def test_a_signal_during_submission_is_raised_only_after_every_rank_has_the_call():
    from pipeline.distributed.actor_group import ActorGroup

    calls: list = []
    group = ActorGroup.__new__(ActorGroup)  # the submission alone: no Ray
    group.actors = [
        type("Actor", (), {"_measure": _Method(calls, signal.SIGINT)})() for _ in range(3)
    ]
    # Python's own handler, whatever an earlier test in this process left (Ray installs its own)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            group._submit(_measure, "block")
        # the handler in place again
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    # else ranks 1-2 never join rank 0 in the collective, and the exit's flush waits for ever
    assert calls == [("block",)] * 3


def test_user_errors_on_workers_are_raised_not_retried(ray_session):
    from helpers import nan_data_factory

    bad = ProblemSpec(functools.partial(mlp_factory), nan_data_factory, CE, batch_size=5)
    with RayOperator(bad, num_workers=2, cpus_per_worker=1) as op:
        with pytest.raises(ValueError, match="loss is nan on batch 1"):
            op @ torch.ones(op.shape[0], dtype=torch.float64)
        assert op.failures == 0


def test_unknown_curvature():
    with pytest.raises(ValueError, match="unknown curvature"):
        spec(curvature="kfac")


def test_backend_comes_from_the_resources_given_and_workers_leave_the_group(ray_session):
    from pipeline.distributed import TorchBackend, WorkerGroup
    from pipeline.distributed.worker import CurvatureWorker

    spec = ProblemSpec(model_factory=mlp_factory, dataset_factory=data_factory, batch_size=16)
    group = WorkerGroup(spec, 2, cpus_per_worker=1, gpus_per_worker=0)
    try:
        assert (group.device, group.backend) == ("cpu", "gloo") and {
            info["device"] for info in group.info
        } == {"cpu"}
        # each rank was in the process group, and is no longer
        assert group.run(CurvatureWorker.leave) == [True, True]
        assert group.run(CurvatureWorker.leave) == [False, False]
    finally:
        group.shutdown()
    assert group.actors == []
    for gpus, device, backend in ((1, "cuda", "nccl"), (0.5, "cuda", "gloo"), (0, "cpu", "gloo")):
        # the group's torch backend, from the GPUs each worker was given
        shared = TorchBackend(gpus)
        assert (shared.device, shared.backend) == (device, backend)


def tripwire_spec(flag, action: str) -> ProblemSpec:
    """``spec()``'s problem with ``TripwireMLP``: batches of 15 samples are rank 0's alone (its 31
    samples are 16 + 15, rank 1's 30 are 16 + 14), so the flag trips rank 0 only. Every product
    runs the forward again (no product graphs kept)."""
    return ProblemSpec(
        loss_fn=CE,
        model_factory=functools.partial(tripwire_factory, str(flag), 15, action),
        dataset_factory=functools.partial(data_factory, n=61),
        batch_size=16,
        operator_options={"product_mode": "reverse-over-reverse", "graph_cache_gb": 0},
    )


def test_a_hung_worker_is_replaced_and_the_product_redone_and_one_that_always_hangs_stops_the_run(
    ray_session, tmp_path, caplog
):
    flag = tmp_path / "hang"
    V = torch.randn(local_operator().shape[0], 2, dtype=torch.float64)
    expected = local_operator() @ V
    with RayOperator(
        tripwire_spec(flag, "hang"),
        num_workers=2,
        cpus_per_worker=1,
        max_failures=1,
        call_timeout_s=2,
    ) as op:
        op @ V  # the first call on new workers pays one-off costs: not counted
        op @ V  # the slowest call counted so far: the hang bound is max(2 s, 10x it)
        flag.write_text("once")  # rank 0 hangs in its next forward; its replacement does not
        with caplog.at_level(logging.WARNING, logger="pipeline.distributed.group"):
            torch.testing.assert_close(op @ V, expected, rtol=1e-10, atol=1e-12)
        assert op.failures == 1 and not flag.exists()
        assert re.search(
            r"rank 0 \(pid \d+ on node \w+\): computing its partial product for \d+ s", caplog.text
        )
        assert re.search(r"rank 1 \(pid \d+ on node \w+\): waiting in the all-reduce", caplog.text)
        flag.write_text("always")  # every rank 0 hangs: the first hang is retried, the second stops
        hung_pids = _worker_pids(op)
        started = time.monotonic()
        with pytest.raises(
            OperationError,
            match=r"workers hung 2 times in a row \(max_failures=1\).*rank 0 .*computing "
            r"its partial product.*cluster.call_timeout_s",
        ) as stopped:
            op @ V
        assert time.monotonic() - started < 60
        # it names the replacement that hung again
        assert f"pid {hung_pids[0]}" not in str(stopped.value)
        assert op.group.actors == []  # nothing is left running


def test_the_first_call_on_replacement_workers_is_given_the_time_of_a_first_call():
    """A replacement group repeats the first call's one-off work (imports, mode timing): its
    first call is hung only past COLD_HANG_FACTOR x the slowest first call, later ones past
    HANG_FACTOR x the slowest warm call (at least call_timeout_s)."""
    from pipeline.distributed.actor_group import COLD_HANG_FACTOR, HANG_FACTOR, ActorGroup

    group = ActorGroup.__new__(ActorGroup)  # the bound alone: no actors
    group.call_timeout_s, group.slowest_call_s, group.slowest_first_call_s = 2.0, 0.1, 5.0
    group._warm = False
    assert group.hang_bound_s() == COLD_HANG_FACTOR * 5.0
    group._warm = True
    assert group.hang_bound_s() == 2.0
    group.slowest_call_s = 1.0
    assert group.hang_bound_s() == HANG_FACTOR * 1.0


def test_a_block_that_kills_its_workers_twice_stops_naming_the_batch_size_and_the_rerun_resumes(
    ray_session, tmp_path
):
    flag, store = tmp_path / "kill", tmp_path / "store.zarr"
    settings = dict(k=3, outer=12, inner=24, seed=2, block_size=4, error_test_vectors=0)
    # rank 0 dies of SIGKILL at its 9th batch of 15 (as the OOM killer kills), then every time
    flag.write_text("8")
    with RayOperator(tripwire_spec(flag, "kill"), num_workers=2, cpus_per_worker=1) as op:
        with pytest.raises(
            OperationError,
            match=r"same block killed workers 2 times .*rank 0 .*died.*out of memory "
            r"\(the workers' nodes had [\d.]+ GiB available.*data.batch_size \(now 16\) or "
            r"algorithm.product_width",
        ):
            seigh(op, store=RunStore(store), **settings)
        assert op.failures == 2
    kept = RunStore(store)
    done = sum(int(np.asarray(kept.group[name + "_done"][:]).sum()) for name in ("outer", "inner"))
    assert 0 < done < 9  # some of the 3 + 6 blocks were measured and kept
    flag.unlink()
    with RayOperator(tripwire_spec(flag, "kill"), num_workers=2, cpus_per_worker=1) as op:
        # half a block per product: the workers split it
        resumed = seigh(op, store=RunStore(store), product_width=2, **settings)
        # only the missing blocks were measured
        assert resumed.info["measured_now"] == 36 - 4 * done
    uninterrupted = seigh(local_operator(), store=RunStore(tmp_path / "clean.zarr"), **settings)
    torch.testing.assert_close(resumed.eigenvalues, uninterrupted.eigenvalues, rtol=1e-9, atol=0)


def test_workers_queue_for_resources_other_jobs_hold_and_fail_fast_where_the_cluster_is_too_small(
    ray_session,
):
    """The session's Ray has 8 CPUs: 2 x 3 held by one group leave 2 free, so a second group of
    2 x 2 waits until the first is gone (as jobs of a sweep queue); 2 x 5 can never fit."""
    local, V = local_operator(), torch.randn(local_operator().shape[0], 2, dtype=torch.float64)
    holder = RayOperator(spec(), num_workers=2, cpus_per_worker=3)
    release = threading.Timer(3.0, holder.close)
    started = time.monotonic()
    release.start()
    with RayOperator(spec(), num_workers=2, cpus_per_worker=2, placement_timeout_s=1) as queued:
        waited = time.monotonic() - started
        torch.testing.assert_close(queued @ V, local @ V, rtol=1e-10, atol=1e-12)
    release.join()
    # it waited for the holder, past placement_timeout_s: the cluster has the CPUs in all
    assert waited >= 3.0
    too_many = (
        r"cannot place 2 workers of \{'CPU': 5\} within 1 s: they need \{'CPU': 10\} and the "
        r"cluster has \{'CPU': 8.0\} in all"
    )
    with pytest.raises(OperationError, match=too_many):
        RayOperator(spec(), num_workers=2, cpus_per_worker=5, placement_timeout_s=1)
