"""Small helpers every layer uses.

The compute device, this process's peak memory, and numpy's dtype for a torch dtype.
"""

from __future__ import annotations

import resource

import numpy as np
import torch


def compute_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to compute on (``auto``: the first CUDA device, else the CPU).

    ``device``, or by default (None or ``"auto"``) the first CUDA device when there is one, else the
    CPU.
    """
    if device is not None and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def peak_rss_bytes() -> int:
    """The peak resident memory of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """Numpy's dtype for the torch ``dtype`` (e.g. torch.float32 -> float32)."""
    return torch.empty((), dtype=dtype).numpy().dtype
