"""task=plan and the prediction every run records: product counts that match what runs spend,
sizes from the configuration, and flags for what will not fit."""

import json
import logging

import pytest

from pipeline.job import compile_job
from pipeline.linalg import DenseOperator
from pipeline.plan import make_plan, slurm_seconds
from pipeline.runner import plan_only, run

from deployment import compose_overrides

SMALL = [
    "cluster=none",
    "dtype=float64",
    "data.subset=100",
    "algorithm.k=4",
    "algorithm.outer=20",
    "algorithm.inner=40",
    "algorithm.block_size=10",
    "algorithm.error_test_vectors=3",
    "algorithm.refine_tol=null",
    "output.plots=false",
]


def test_plan_task_predicts_without_running(tmp_path):
    plan = plan_only(compose_overrides(["task=plan", *SMALL]), tmp_path)
    assert json.loads((tmp_path / "plan.json").read_text()) == json.loads(json.dumps(plan))
    assert plan["matvecs"] == 20 + 40 + 4 + 3  # measurements, residuals, test vectors
    assert plan["store_bytes"] == 7030 * (20 + 40) * 8 + 7030 * 4 * 8
    assert plan["seconds_per_matvec"] > 0 and plan["wall_s"] == pytest.approx(
        plan["measurement_s"] + plan["postprocess_s"]
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
    import torch

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
