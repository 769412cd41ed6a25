"""Runs a tracker can see (``output.tracker``, off by default).

``mlflow`` (a local file store under the run dir, or ``output.tracker_uri``) or ``tensorboard``
(event files in run_dir/tensorboard).

The run's tracker receives the config, progress scalars (``progress/<stage> fraction`` and
``rate_per_s``, Lanczos residuals per restart), the final eigenvalues, residuals or trace (step =
pair index), and the plots and results.json as artifacts. Modules report through the functions
``scalar`` and ``artifact``, which do nothing when no tracker is open. Needs the ``track`` extra.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import InputError

log = logging.getLogger(__name__)
TRACKERS = ("mlflow", "tensorboard")
EXPERIMENT = "hessian-pipeline"
_active: list[Tracker] = []
_last_sent: dict[str, float] = {}


class Tracker(Protocol):
    """Where metrics and artifacts of a run are sent (MLflow, TensorBoard)."""

    def scalar(self, name: str, value: float, step: int) -> None:
        """Record ``name`` = ``value`` at ``step``."""

    def artifact(self, path: Path) -> None:
        """Attach the file at ``path``."""

    def close(self, status: str) -> None:
        """``status``: FINISHED, FAILED or KILLED."""


def is_open() -> bool:
    """Whether a tracker is open in this process."""
    return bool(_active)


def scalar(name: str, value: float, step: int, every_s: float = 0.0) -> None:
    """Send ``name`` = ``value`` at ``step`` to the open tracker (rate-limited).

    Send ``name`` = ``value`` at ``step`` to the open tracker (if any), at most every ``every_s``
    seconds.
    """
    if not _active:
        return
    now = time.monotonic()
    if every_s and now - _last_sent.get(name, -every_s) < every_s:
        return
    _last_sent[name] = now
    _active[-1].scalar(name, float(value), int(step))


def artifact(path: Path) -> None:
    """Attach the file ``path`` to the open tracker's run (if any)."""
    if _active:
        _active[-1].artifact(Path(path))


@contextmanager
def tracking(
    kind: str | None, run_dir: Path, config: dict[str, Any], uri: str | None = None
) -> Iterator[None]:
    """Open the ``kind`` tracker (None: none) for the run in ``run_dir`` with its ``config`` logged.

    Closed as FINISHED, FAILED (an exception) or KILLED (a signal).
    """
    if kind is None:
        yield
        return
    tracker = (
        MlflowTracker(run_dir, config, uri)
        if kind == "mlflow"
        else TensorboardTracker(run_dir, config)
    )
    _active.append(tracker)
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        _active.remove(tracker)
        _last_sent.clear()
        tracker.close(status)


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: the config as tracker parameters."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if not isinstance(value, str) else value
    return flat


class MlflowTracker:
    """One MLflow run in experiment ``hessian-pipeline``.

    One MLflow run in experiment ``hessian-pipeline``, through the client API (no global state).
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], uri: str | None):
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise InputError(
                "output.tracker=mlflow needs MLflow: pip install 'hessian-pipeline[track]'"
            ) from None
        uri = (
            uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or (Path(run_dir).resolve() / "mlruns").as_uri()
        )
        # MLflow keeps its file store working only on request (it is in maintenance mode)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(EXPERIMENT)
        )
        self.run_id = self.client.create_run(experiment_id, run_name=Path(run_dir).name).info.run_id
        params = [Param(key, value[:6000]) for key, value in flat_config(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        log.info("tracking this run in MLflow at %s (run %s)", uri, self.run_id)

    def scalar(self, name: str, value: float, step: int) -> None:
        """Record ``name`` = ``value`` at ``step``."""
        self.client.log_metric(self.run_id, name, value, step=step)

    def artifact(self, path: Path) -> None:
        """Attach the file at ``path``."""
        self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        """End the run with ``status``."""
        self.client.set_terminated(self.run_id, status)


class TensorboardTracker:
    """Event files in run_dir/tensorboard: the config as text, scalars, PNG plots as images."""

    def __init__(self, run_dir: Path, config: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError(
                "output.tracker=tensorboard needs TensorBoard: pip install "
                "'hessian-pipeline[track]'"
            ) from None
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self.writer.add_text(
            "config", "\n".join(f"    {key}: {value}" for key, value in flat_config(config).items())
        )
        log.info(
            "tracking this run in TensorBoard: tensorboard --logdir %s",
            Path(run_dir) / "tensorboard",
        )

    def scalar(self, name: str, value: float, step: int) -> None:
        """Record ``name`` = ``value`` at ``step``."""
        self.writer.add_scalar(name, value, step)

    def artifact(self, path: Path) -> None:
        """Attach the file at ``path`` (a PNG as an image, anything else as text)."""
        if path.suffix == ".png":
            from matplotlib.image import imread

            self.writer.add_image(path.stem, imread(path)[..., :3], dataformats="HWC")
        else:
            self.writer.add_text(path.name, path.read_text()[:100_000])

    def close(self, status: str) -> None:
        """Note ``status`` and close the writer."""
        self.writer.add_text("status", status)
        self.writer.close()
