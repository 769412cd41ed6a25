"""Model zoo: the paper's four networks, plus any model named by a Hydra ``_target_``."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import InputError, MissingFileError
from pipeline.models.cnn import all_cnn_c, c3d3
from pipeline.models.gpt import tiny_gpt
from pipeline.models.mlp import tanh_mlp
from pipeline.models.resnet import ResNet18

ZOO: dict[str, Callable[..., nn.Module]] = {
    "tanh_mlp": tanh_mlp,
    "3c3d": c3d3,
    "allcnnc": all_cnn_c,
    "resnet18": ResNet18,
    "tiny_gpt": tiny_gpt,
}

# Table 1 of Fernandez et al. (TMLR 2025)
PAPER_PARAMETER_COUNTS = {
    "tanh_mlp": 7_030,
    "3c3d": 895_210,
    "allcnnc": 1_387_108,
    "resnet18": 11_689_512,
}


def build(name: str, **kwargs: Any) -> nn.Module:
    """A zoo model by name, freshly initialised.

    Args:
        name: ``tanh_mlp``, ``3c3d``, ``allcnnc`` or ``resnet18``.
        **kwargs: The model's own options (``widths``, ``num_classes``, ...).

    Returns:
        nn.Module: the network (parameter counts as in the paper's Table 1).

    Raises:
        InputError: An unknown name.
    """
    if name not in ZOO:
        raise InputError(
            f"unknown model {name!r}; choose one of {sorted(ZOO)} or give model.target._target_"
        )
    return ZOO[name](**kwargs)


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """Model from a plain config dict.

    ``name`` (a zoo name, or ``target`` with a Hydra ``target: {_target_: ...}`` spec, e.g.
    torchvision.models.resnet18), its keyword arguments, ``init_seed`` for the initial weights
    (identical on every worker) and an optional ``checkpoint`` (a state dict saved by torch.save;
    loaded weights-only).
    """
    options = dict(config)
    name = options.pop("name")
    checkpoint = options.pop("checkpoint", None)
    target = options.pop("target", None)
    init_seed = options.pop("init_seed", 0)
    options.pop("loss", None)  # the job's loss (pipeline.models.losses), not the network's
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)  # every worker's replica gets the same initial weights
        if name == "target":
            if not target or "_target_" not in target:
                raise InputError(
                    "model.name=target needs model.target._target_ (e.g. "
                    "torchvision.models.resnet18)"
                )
            from hydra.utils import instantiate

            model = instantiate(target)
        else:
            model = build(name, **{k: v for k, v in options.items() if v is not None})
    if checkpoint:
        load_checkpoint(model, checkpoint)
    return model


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load a state dict (or {'model': state_dict, ...}) with torch.load(weights_only=True)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MissingFileError(f"checkpoint {path} does not exist (model.checkpoint)") from None
    except IsADirectoryError:
        raise InputError(
            f"checkpoint {path} is a directory, not a file saved by torch.save (model.checkpoint)"
        ) from None
    except Exception as error:  # noqa: BLE001 - torch.load fails on a foreign file with any of a dozen types (KeyError, IndexError, ...)
        kind = _unreadable(Path(path), error)
        raise InputError(
            f"checkpoint {path} is {kind}: save the weights with torch.save(model.state_dict(), "
            "path) "
            "(model.checkpoint)"
        ) from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise InputError(
            f"checkpoint {path} holds a {type(state).__name__}, not a state dict: save "
            "model.state_dict() (model.checkpoint)"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"checkpoint {path} does not fit the model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}"
        )


def _unreadable(path: Path, error: Exception) -> str:
    """What is wrong with a checkpoint file torch.load refused.

    What is wrong with a checkpoint file torch.load refused, as the end of "checkpoint P is ...".
    """
    if path.stat().st_size == 0:
        return "empty (0 bytes)"
    if isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error):
        return "a pickled object (e.g. a whole module), not tensors"
    return (
        "not a file torch.save wrote, or is damaged (truncated, text, or an archive of "
        "something else)"
    )


__all__ = [
    "PAPER_PARAMETER_COUNTS",
    "ResNet18",
    "ZOO",
    "all_cnn_c",
    "build",
    "build_from_config",
    "c3d3",
    "load_checkpoint",
    "tanh_mlp",
]
