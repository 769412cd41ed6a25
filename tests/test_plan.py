"""task=plan and the prediction every run records: product counts that match what runs spend,
sizes from the configuration, and flags for what will not fit."""

import json
import logging
import time

import pytest
import torch

from pipeline.job import compile_job
from pipeline.linalg import DenseOperator
from pipeline.plan import make_plan, slurm_seconds
from pipeline.runner import plan_only, run
from pipeline.store import run_store

from deployment import SMALL, compose_overrides


def test_plan_task_predicts_without_running(tmp_path):
    plan = plan_only(compose_overrides(["task=plan", *SMALL]), tmp_path)
    assert json.loads((tmp_path / "plan.json").read_text()) == json.loads(json.dumps(plan))
    assert plan["matvecs"] == 20 + 40 + 4 + 3  # measurements, residuals, test vectors
    assert plan["store_bytes"] == 7030 * (20 + 40) * 8 + 7030 * 4 * 8
    assert plan["seconds_per_matvec"] > 0 and plan["startup_s"] > 0
    assert plan["wall_s"] == pytest.approx(
        plan["startup_s"] + plan["measurement_s"] + plan["postprocess_s"]
    )
    assert plan["fits"]["disk"]["fits"] and plan["fits"]["driver memory"]["fits"]
    assert not (tmp_path / "store.zarr").exists()  # nothing measured


def test_every_run_records_its_prediction_next_to_the_actual_figures(tmp_path):
    record = run(compose_overrides(SMALL), tmp_path)
    # the plan's timing products are not counted
    assert record["plan"]["matvecs"] == record["actual"]["matvecs"] == record["matvecs"]
    assert record["actual"]["store_bytes"] > 0 and record["actual"]["wall_s"] > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["plan"]["store_bytes"] == record["plan"]["store_bytes"]


def test_an_in_process_run_builds_its_data_once_and_records_its_size(tmp_path, monkeypatch):
    import pipeline.job

    builds = []
    original = pipeline.job.build_dataset
    monkeypatch.setattr(
        pipeline.job, "build_dataset", lambda config: builds.append(config) or original(config)
    )
    record = run(compose_overrides(SMALL), tmp_path)
    # data.subset=100, counted by the operator
    assert len(builds) == 1 and record["num_samples"] == 100


def test_what_will_not_fit_is_flagged(tmp_path, monkeypatch, caplog):
    from pipeline.plan import log_plan

    cfg = compose_overrides([*SMALL, "plan.time_limit=0:1"])  # one second
    op = DenseOperator(torch.eye(300, dtype=torch.float64))
    monkeypatch.setattr(
        "pipeline.disk.shutil.disk_usage", lambda path: type("Usage", (), {"free": 1000})()
    )
    monkeypatch.setattr("pipeline.plan.seconds_per_matvec", lambda op, width: 1.0)  # a slow product
    plan = make_plan(compile_job(cfg), op, tmp_path)
    assert plan["fits"]["disk"]["fits"] is False and plan["fits"]["time limit"]["fits"] is False
    with caplog.at_level(logging.WARNING, logger="pipeline.plan"):
        log_plan(plan)
    assert "disk will not fit" in caplog.text and "time limit will not fit" in caplog.text


@pytest.mark.parametrize(
    "limit, seconds",
    [
        ("90", 5400),
        ("10:30", 630),
        ("2:00:00", 7200),
        ("1-12", 129600),
        ("1-0:30", 88200),
        ("2-01:00:05", 176405),
    ],
)
def test_slurm_time_limits(limit, seconds):
    assert slurm_seconds(limit) == seconds


def test_the_plan_times_one_batch_and_its_product_mode_serves_the_run(
    tmp_path, caplog, monkeypatch
):
    """The plan's timing is the first batch's product-mode choice (no pass over the data, no
    product counted), and the run reuses that choice instead of timing the modes again."""
    monkeypatch.setattr("pipeline.curvature.mode_choice._CHOICES", {})  # none from other tests
    job = compile_job(compose_overrides([*SMALL, "curvature.product_mode=auto"]))
    op = job.problem.build(1, 0)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        plan = make_plan(job, op, tmp_path)
        assert op.matvecs == 0 and 10 in op.mode_choices and op.mode_choices[10].timed
        timed = caplog.text.count("product_mode=auto for blocks of 10:")
        op @ torch.ones(op.shape[0], 10, dtype=op.dtype)
    assert timed == 1 and caplog.text.count("product_mode=auto for blocks of 10:") == 1
    choice = op.mode_choices[10]
    n = op._first_batch()[2]
    product = choice.seconds[choice.mode] * op.num_samples / n / 10
    # and the test columns SEIGH generates here: a few microseconds per column at this D
    assert product < plan["seconds_per_matvec"] < product + 1e-3


class _SteadyOperator(DenseOperator):
    """A dense operator whose every product takes ``seconds``."""

    def __init__(self, matrix, seconds: float):
        super().__init__(matrix)
        self.seconds = seconds

    def _matmat(self, V):
        time.sleep(self.seconds)
        return super()._matmat(V)


def test_a_run_recalibrates_its_plan_on_its_first_products(caplog, monkeypatch):
    """Planned at 0.01 s a product, run at 0.05 s: the re-prediction after a tenth of the products
    is about 5x the plan, within the run's actual time."""
    from pipeline.plan import calibrating

    monkeypatch.setattr("pipeline.plan.CALIBRATE_POLL_S", 0.01)
    op = _SteadyOperator(torch.eye(50, dtype=torch.float64), 0.05)
    plan = {"matvecs": 40, "postprocess_s": 0.0, "wall_s": 40 * 0.01}
    started = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="pipeline.plan"), calibrating(plan, op, started):
        for _ in range(40):
            op @ torch.ones(50, dtype=torch.float64)
    wall = time.perf_counter() - started
    calibrated = plan["calibrated"]
    assert 4 <= calibrated["on_matvecs"] <= 6
    assert wall / 1.3 <= calibrated["wall_s"] <= wall * 1.3
    assert "plan, calibrated on the first" in caplog.text


class _WarmingOperator(_SteadyOperator):
    """A first product that takes ``first_s`` (a fresh worker's one-off work), then ``seconds``."""

    def __init__(self, matrix, seconds: float, first_s: float):
        super().__init__(matrix, seconds)
        self.first_s = first_s

    def _matmat(self, V):
        if self.first_s:
            time.sleep(self.first_s)
            self.first_s = 0.0
        return super()._matmat(V)


def test_the_calibration_leaves_out_the_first_calls_one_off_work(monkeypatch):
    """A first product that takes 0.6 s more (the workers' mode timing), then 0.02 s each: the
    re-prediction counts the later products' rate, not the warm-up spread over all of them (that
    read 3x the run's time)."""
    from pipeline.plan import calibrating

    monkeypatch.setattr("pipeline.plan.CALIBRATE_POLL_S", 0.005)
    op = _WarmingOperator(torch.eye(50, dtype=torch.float64), 0.02, first_s=0.6)
    plan = {"matvecs": 60, "postprocess_s": 0.0, "wall_s": 60 * 0.02}
    started = time.perf_counter()
    with calibrating(plan, op, started):
        for _ in range(60):
            op @ torch.ones(50, dtype=torch.float64)
    wall = time.perf_counter() - started
    assert wall / 1.3 <= plan["calibrated"]["wall_s"] <= wall * 1.3, (wall, plan["calibrated"])


def test_a_calibration_past_the_time_limit_is_a_warning_and_a_flag(caplog, monkeypatch):
    """Planned to fit a 1-second limit, run at 5x the planned rate: the re-prediction says it
    will not fit (WARNING, calibrated.fits_time_limit False)."""
    from pipeline.plan import calibrating

    monkeypatch.setattr("pipeline.plan.CALIBRATE_POLL_S", 0.01)
    op = _SteadyOperator(torch.eye(50, dtype=torch.float64), 0.05)
    limit = {"fits": True, "why": "", "limit_s": 1.0}
    plan = {"matvecs": 40, "postprocess_s": 0.0, "wall_s": 0.4, "fits": {"time limit": limit}}
    with caplog.at_level(logging.INFO, logger="pipeline.plan"):
        with calibrating(plan, op, time.perf_counter()):
            for _ in range(40):
                op @ torch.ones(50, dtype=torch.float64)
    assert plan["calibrated"]["fits_time_limit"] is False
    assert "will not finish within its time limit" in caplog.text


def test_the_worker_memory_is_asked_after_the_timed_product_and_adds_two_store_blocks(
    tmp_path, monkeypatch
):
    """The workers' peak is read once the plan's product at the run's width has run (the
    mode timing's memory is in it), and SEIGH adds the two store blocks rank 0 holds (the one it
    assembles, the one written behind it)."""
    monkeypatch.setattr("pipeline.curvature.mode_choice._CHOICES", {})
    job = compile_job(compose_overrides([*SMALL, "curvature.product_mode=auto"]))
    op = job.problem.build(1, 0)
    asked = []
    plan = make_plan(job, op, tmp_path, lambda: asked.append(10 in op.mode_choices) or 1000)
    assert asked == [True]
    assert plan["worker_bytes"] == 1000 + 2 * op.shape[0] * 10 * 8  # 2 D x block_size float64


def test_a_sketch_measured_in_process_plans_its_test_columns_generation(tmp_path, monkeypatch):
    """SEIGH in process generates each block's test columns here: timed (on its first rows) and
    counted per product; an algorithm that generates none is planned without it."""
    import pipeline.plan

    monkeypatch.setattr(pipeline.plan, "random_columns", lambda *args, **kwargs: time.sleep(2.0))
    seigh = plan_only(compose_overrides(["task=plan", *SMALL]), tmp_path / "seigh")
    lanczos = plan_only(
        compose_overrides(["task=plan", "cluster=none", "algorithm=lanczos"]), tmp_path / "lanczos"
    )
    # 2 s for a block of 10 columns on all 7030 rows: 0.2 s per product on top of the product
    assert seigh["seconds_per_matvec"] >= 0.2 > lanczos["seconds_per_matvec"]


def test_the_post_processing_plan_counts_the_store_reads(monkeypatch):
    """The measurements read chunk by chunk at the timed rate of one: W and Y in the first pass (Y
    not again when it is W's first columns), Y in the second and in V = Q U."""
    import pipeline.solvers.seigh as solver

    sizes = dict(dim=40000, outer=20, inner=40, k=5, inner_kind="rademacher", memory_bytes=2**24)
    chunk_seconds = {}

    def predicted(recycled: bool, seconds: float) -> float:
        monkeypatch.setattr(
            solver,
            "chunk_read_seconds",
            lambda rows, block, dtype: chunk_seconds.setdefault(rows, seconds),
        )
        chunk_seconds.clear()
        return solver.postprocess_seconds(**sizes, recycled=recycled, block=10, itemsize=4)

    for recycled, columns in ((False, 40 + 20 + 2 * 20), (True, 40 + 2 * 20)):
        without = predicted(recycled, 0.0)
        with_reads = predicted(recycled, 100.0)
        (rows,) = chunk_seconds  # one chunk timed: a row block's rows by the store's block width
        assert with_reads - without == pytest.approx(100.0 * 40000 / rows * columns / 10, rel=1e-3)
    assert 0 < run_store.chunk_read_seconds(1000, 10, torch.float32) < 1.0


def test_a_sketch_measured_in_process_plans_its_blocks_writes(tmp_path, monkeypatch):
    """In process each measured block is written here, beside the next products: one chunk's
    write timed and counted per column (SEIGH's blocks of 10 columns on 7030 rows)."""
    import pipeline.plan

    chunk = {}
    monkeypatch.setattr(
        pipeline.plan,
        "chunk_write_seconds",
        lambda rows, block, dtype: chunk.setdefault((rows, block), 50.0),
    )
    slow = plan_only(compose_overrides(["task=plan", *SMALL]), tmp_path / "slow")
    monkeypatch.setattr(pipeline.plan, "chunk_write_seconds", lambda *args: 0.0)
    free = plan_only(compose_overrides(["task=plan", *SMALL]), tmp_path / "free")
    assert list(chunk) == [(7030, 10)]  # every row of D = 7030 in one chunk, the block's width
    extra = slow["seconds_per_matvec"] - free["seconds_per_matvec"]
    assert extra == pytest.approx(50.0 / 10, rel=0.02)  # 50 s a block of 10 columns


def test_a_products_plan_counts_each_batchs_finite_check_and_accumulation(monkeypatch):
    """A pass checks each batch's product and adds it to the total: that work, timed on the
    product's shape, is counted once per batch (4 batches of 25 here), beside the product."""
    op = compile_job(compose_overrides([*SMALL, "data.batch_size=25"])).problem.build()
    V = torch.ones(op.shape[0], 2, dtype=op.dtype)
    assert op._pass_overhead(V) > 0
    monkeypatch.setattr(type(op), "_pass_overhead", lambda self, V: 50.0)
    assert 4 * 50.0 < op.pass_seconds(2) < 4 * 50.0 + 10.0
