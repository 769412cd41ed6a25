"""Retained product graphs kept across products, within a memory budget.

At a fixed point theta the graph a batch's products run through (the gradient's graph for the
Hessian, the outputs' for the GGN, the per-sample losses' for the Fisher) does not change. Built
once and kept, every later product of that batch costs only the backward passes through it:
PyHessian's floor for every product, not only for the vectors of one block. A graph is kept
while the bytes it saved for backward fit in the budget; past that, batches are rebuilt per
product as before (the result is the same either way).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

Graph = TypeVar("Graph")
log = logging.getLogger(__name__)

DEFAULT_SHARE = 0.25  # of the memory available when the first graph is built


class GraphCache:
    """Graphs keyed by (kind, batch inputs object), at most ``budget_bytes`` of saved tensors.

    Keys hold a reference to the inputs object, so an id is never reused while its entry lives;
    only batches that persist across products (a list of batches) should be cached.
    ``budget_bytes`` None takes ``DEFAULT_SHARE`` of the memory available on the device at the
    first build; 0 turns caching off.
    """

    def __init__(self, budget_bytes: int | None = None):
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self.full = budget_bytes == 0
        self._entries: dict[tuple[str, int], tuple[Any, Any]] = {}

    def get(
        self, kind: str, inputs: Any, build: Callable[[], Graph], device: torch.device
    ) -> Graph:
        """The cached graph of ``kind`` for ``inputs``, else a new one.

        The cached graph of ``kind`` for ``inputs``, or ``build()`` it (and keep it if it fits).
        """
        key = (kind, id(inputs))
        entry = self._entries.get(key)
        if entry is not None and entry[0] is inputs:
            return entry[1]
        if self.full:
            return build()
        if self.budget_bytes is None:
            self.budget_bytes = int(DEFAULT_SHARE * available_bytes(device))
        graph, saved = measure_saved_bytes(build)
        if self.used_bytes + saved > self.budget_bytes:
            self.full = True
            log.info(
                "graph cache: %d batch graphs kept (%.0f MiB); the next (%.0f MiB) would pass the "
                "budget of %.0f MiB, "
                "so the remaining batches rebuild their graph per product",
                len(self._entries),
                self.used_bytes / 2**20,
                saved / 2**20,
                self.budget_bytes / 2**20,
            )
            return graph
        self._entries[key] = (inputs, graph)
        self.used_bytes += saved
        return graph

    def clear(self) -> None:
        """Drop every kept graph (their memory is freed once no product holds them)."""
        self._entries.clear()
        self.used_bytes = 0
        self.full = self.budget_bytes == 0


def measure_saved_bytes(build: Callable[[], Graph]) -> tuple[Graph, int]:
    """Run ``build()`` and count the bytes autograd saved for backward.

    ``build()`` and the bytes of the distinct tensors autograd saved for backward while it ran.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        graph = build()
    return graph, sum(storages.values())


def available_bytes(device: torch.device) -> int:
    """Free memory of a CUDA device, or MemAvailable of this host (physical memory if unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
