"""Reproduce Fernandez et al. (TMLR 2025): train -> SEIGH per checkpoint and split -> overlap.

``hessian-pipeline task=reproduce +experiment=digits_overlap`` trains with the paper's SGD
settings, saves checkpoints, runs the configured eigendecomposition on the Hessian of each
checkpoint for each data split (each in its own sub-directory with its own resumable store),
and measures the overlap of the top-k eigenspace with the top-k magnitude mask.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.analysis import plots
from pipeline.analysis.overlap import overlap_curve
from pipeline.curvature import FlatView, select_parameters
from pipeline.data import build_dataset
from pipeline.models import build_from_config
from pipeline.problem import plain
from pipeline.store import RunStore
from pipeline.train import train_with_checkpoints

log = logging.getLogger(__name__)


def reproduce(cfg: DictConfig, run_dir: Path, run_eigen) -> dict[str, Any]:
    """Train, decompose every (checkpoint, split) with ``run_eigen(cfg, dir)``, write overlap.json
    and the overlap figures; returns the overlap record."""
    r = cfg.reproduce
    if cfg.algorithm.name != "seigh":
        raise ValueError("task=reproduce measures overlaps of SEIGH eigenvectors: use algorithm=seigh")
    data = plain(cfg.data)
    train = build_dataset({**data, "split": "train", "subset": None})
    test = build_dataset({**data, "split": r.test_split, "subset": None})
    model_config = {**plain(cfg.model), "checkpoint": None}
    device = "cuda" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "cpu"
    checkpoints = train_with_checkpoints(build_from_config(model_config), train, test, r.lr, r.batch_size,
                                         r.checkpoint_steps, run_dir / "checkpoints", seed=cfg.seed, device=device,
                                         loader_workers=r.loader_workers)
    ks = [k for k in r.overlap_ks if k <= cfg.algorithm.k] or [cfg.algorithm.k]
    record: dict[str, Any] = {"checkpoints": checkpoints, "ks": ks, "splits": {}}
    for split, subset in plain(r.splits).items():
        curves = {}
        for checkpoint in checkpoints:
            sub_cfg = copy.deepcopy(cfg)
            OmegaConf.update(sub_cfg, "model.checkpoint", checkpoint["path"])
            OmegaConf.update(sub_cfg, "data.split", split)
            OmegaConf.update(sub_cfg, "data.subset", subset)
            sub_dir = run_dir / f"step_{checkpoint['step']}" / split
            sub_dir.mkdir(parents=True, exist_ok=True)
            eigen = run_eigen(sub_cfg, sub_dir)
            vectors = RunStore(sub_dir / cfg.output.store).group["eigenvectors"]
            theta = _flat_parameters({**model_config, "checkpoint": checkpoint["path"]}, cfg.curvature.params)
            curve = overlap_curve(vectors, theta, ks)  # reads only the masked rows
            curve["eigenvalues"] = eigen["eigenvalues"]
            curves[checkpoint["step"]] = curve
            log.info("step %d, %s split: overlap at k=%d is %.4f (chance %.2g)", checkpoint["step"], split, ks[-1],
                     curve["overlap"][-1], curve["chance"][-1])
        record["splits"][split] = curves
        if cfg.output.plots:
            plots.overlap_curves(curves, run_dir / f"overlap_{split}.png", title=f"Hessian on {split} samples")
    (run_dir / "overlap.json").write_text(json.dumps(record, indent=2))
    return record


def _flat_parameters(model_config: dict[str, Any], params: Any) -> np.ndarray:
    """theta (D,) in the operator's order for the selected parameters of the checkpoint."""
    model = build_from_config(model_config)
    selected = select_parameters(model, plain(params))
    with torch.no_grad():
        return FlatView.of(selected).flatten({n: p.detach() for n, p in selected.items()}).double().numpy()
