"""``output.tracker``: a run's config, progress scalars, final eigenvalues and plots reach an
MLflow file store or TensorBoard event files, read back with each tool's own reader."""

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from pipeline import tracking
from pipeline.app import CONFIG_DIR, execute

LANCZOS = [
    "cluster=none",
    "algorithm=lanczos",
    "algorithm.k=3",
    "data.subset=100",
    "curvature.params=[11.*]",
    "dtype=float64",
]


def _execute(run_dir, *overrides) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)  # Hydra's job, on the command line
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return execute(compose("config", overrides=[*LANCZOS, *overrides]), run_dir)


def test_mlflow_file_store_gets_config_scalars_eigenvalues_and_plots(tmp_path):
    pytest.importorskip("mlflow", reason="needs the track extra (pip install -e .[track])")
    from mlflow.tracking import MlflowClient

    assert _execute(tmp_path, "output.tracker=mlflow") == 0
    record = json.loads((tmp_path / "results.json").read_text())
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("hessian-pipeline").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["algorithm.k"] == "3" and run.data.params["curvature.kind"] == "hessian"
    values = [
        m.value
        for m in sorted(
            client.get_metric_history(run.info.run_id, "result/eigenvalue"), key=lambda m: m.step
        )
    ]
    np.testing.assert_array_equal(values, record["eigenvalues"])
    residuals = client.get_metric_history(run.info.run_id, "lanczos/worst_residual")
    assert residuals and residuals[-1].value <= 1e-3  # one per restart, the last converged
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "spectrum.png", "convergence.png"} <= artifacts


def test_tensorboard_events_hold_the_progress_and_the_plots(tmp_path):
    pytest.importorskip("tensorboard", reason="needs the track extra (pip install -e .[track])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [
        "algorithm=seigh",
        "algorithm.outer=20",
        "algorithm.inner=40",
        "algorithm.block_size=5",
        "output.tracker=tensorboard",
    ]
    assert _execute(tmp_path, *overrides) == 0
    record = json.loads((tmp_path / "results.json").read_text())
    events = EventAccumulator(
        str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0}
    ).Reload()
    tags = events.Tags()
    # float32 events
    assert [e.value for e in events.Scalars("result/eigenvalue")] == pytest.approx(
        record["eigenvalues"], rel=1e-6
    )
    fraction = events.Scalars("progress/inner measurements fraction")
    assert fraction[-1].value == 1.0
    assert {"spectrum", "summary"} <= set(tags["images"])


def test_a_failed_run_is_marked_failed_and_no_tracker_leaves_nothing(tmp_path):
    pytest.importorskip("mlflow", reason="needs the track extra (pip install -e .[track])")
    from mlflow.tracking import MlflowClient

    # k >= D = 210
    assert _execute(tmp_path / "bad", "output.tracker=mlflow", "algorithm.k=300") == 2
    client = MlflowClient((tmp_path / "bad" / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("hessian-pipeline").experiment_id])
    assert run.info.status == "FAILED" and not tracking._active
    assert _execute(tmp_path / "plain") == 0
    assert (
        not (tmp_path / "plain" / "mlruns").exists()
        and not (tmp_path / "plain" / "tensorboard").exists()
    )


def test_an_unknown_tracker_is_refused_in_one_line(tmp_path, caplog):
    assert _execute(tmp_path, "output.tracker=wandb") == 2
    assert "output.tracker must be one of mlflow, tensorboard" in caplog.text
