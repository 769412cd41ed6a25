"""One way back into any run directory: ``load_run(run_dir)`` for every algorithm's results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputError, MissingFileError
from pipeline.store import load_eigenpairs
from pipeline.store.protocol import StoredMatrix


@dataclass(frozen=True)
class Run:
    """What a finished run left in its directory.

    eigenvalues (k,), residuals (k,) and converged (k,) bool, or None for trace and density runs;
    eigenvectors (D, k): a numpy array where ``eigenvectors.npy`` was written (every eigensolver,
    below ``pipeline.solvers.outcomes.VECTORS_NPY_MAX_BYTES``), else a ``StoredMatrix`` read by
    row blocks from the run's store; record: results.json as a dict (algorithm, matvecs, plan,
    config, ...).
    """

    path: Path
    record: dict[str, Any]
    eigenvalues: np.ndarray | None
    eigenvectors: np.ndarray | StoredMatrix | None
    residuals: np.ndarray | None
    converged: np.ndarray | None

    @property
    def algorithm(self) -> str:
        """The algorithm that made the run."""
        return self.record["algorithm"]

    @property
    def flags(self) -> dict[str, bool]:
        """The run's verdicts on its own numbers.

        ``all_converged`` (eigensolvers), and every flag results.json records under ``flags`` (e.g.
        a check that was skipped or failed).
        """
        verdicts = (
            {"all_converged": self.record["all_converged"]}
            if "all_converged" in self.record
            else {}
        )
        return {**verdicts, **self.record.get("flags", {})}


def load_run(run_dir: str | Path) -> Run:
    """Load the results of the run in ``run_dir`` (any algorithm).

    Args:
        run_dir: A directory the CLI (or ``pipeline.runner.run``) wrote.

    Returns:
        Run: the results record and its arrays; eigenvectors are not read into memory when they
        are only in the store.

    Raises:
        MissingFileError: No results.json (the run has not finished, or no such directory).
    """
    path = Path(run_dir)
    try:
        record = json.loads((path / "results.json").read_text())
    except FileNotFoundError:
        reason = (
            "the run has not finished: rerun its command to resume it"
            if path.is_dir()
            else "no such directory"
        )
        raise MissingFileError(f"no results.json in {path} ({reason})") from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path / 'results.json'} is damaged ({error}): rerun the run's command to rewrite it"
        ) from None
    eigenvalues = np.asarray(record["eigenvalues"]) if "eigenvalues" in record else None
    return Run(
        path,
        record,
        eigenvalues,
        _eigenvectors(path, record),
        _array(record, "residuals"),
        None if "converged" not in record else np.asarray(record["converged"], dtype=bool),
    )


def _eigenvectors(path: Path, record: dict[str, Any]) -> np.ndarray | StoredMatrix | None:
    if (path / "eigenvectors.npy").exists():
        return np.load(path / "eigenvectors.npy")
    if "eigenvalues" not in record or not (path / record["config"]["output"]["store"]).exists():
        return None
    return load_eigenpairs(path / record["config"]["output"]["store"])[1]


def _array(record: dict[str, Any], key: str) -> np.ndarray | None:
    return np.asarray(record[key], dtype=np.float64) if key in record else None
