"""How a curvature operator forms one batch's product.

Its ``PRODUCT_MODES`` (forward-over- reverse, reverse-over-reverse, graph reuse, ...), the ``auto``
choice among them (timed once per problem and block width, ``pipeline.curvature.mode_choice``),
graphs kept across products (``pipeline.curvature.graph_cache``), and the product's own timing for
the planner.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.curvature.memory_fit import MemoryFit, operator_batch_fit, operator_width_fit
from pipeline.curvature.mode_choice import (
    ModeChoice,
    choose_mode,
    double_backward_hint,
    known_choice,
    problem_key,
)
from pipeline.errors import OperationError

BatchProduct = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
AUTO = "auto"
# every curvature has it: PyHessian's product, never far from the fastest
UNTIMED_MODE = "graph-reuse"
# a compiled product's one-off set-up before it is measured (16-39 s seen on CPU)
SETUP_PRIOR_S = 40.0
SETUP_REPAY = 5.0  # tried only where the product time ahead is this many set-ups

log = logging.getLogger("pipeline.curvature.base")


class ProductModes(ABC):
    """The ``CurvatureOperator`` part that makes C_i V for one batch in ``product_mode``."""

    PRODUCT_MODES: tuple[str, ...] = ()
    # modes with a one-off set-up, timed by auto only where it repays
    COSTLY_MODES: tuple[str, ...] = ()

    def retained(self, kind: str, inputs: Any, build: Callable[[], Any]) -> Any:
        """The product graph of the batch with these ``inputs``, kept where it pays.

        The product graph ``build()`` of the batch with these ``inputs``, kept across products where
        the data is a list of batches (the same objects every pass) and the budget allows.
        """
        if not isinstance(self.data, (list, tuple)):
            return build()
        return self.graphs.get(kind, inputs, build, self.device)

    @abstractmethod
    def products(self) -> dict[str, BatchProduct]:
        """The product functions by mode: f(inputs, targets, V) = C_i V (D, b).

        mode -> f(inputs, targets, V) giving C_i V (D, b) for the curvature C_i of one batch's MEAN
        loss; the keys are ``PRODUCT_MODES``.
        """

    def batch_product(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """C_i V (D, b) for one batch in ``product_mode``.

        C_i V (D, b) for one batch, in ``product_mode`` (or the mode ``auto`` chose for width b),
        with attention on its math path: the fused kernels have no double backward (PyTorch issue
        116350); a kernel that still refuses is an OperationError naming the fix.
        """
        with sdpa_kernel([SDPBackend.MATH]):
            try:
                return self._batch_product(inputs, targets, V)
            except RuntimeError as error:
                hint = double_backward_hint(error)
                if not hint:
                    raise
                raise OperationError(f"{str(error).splitlines()[0]}{hint}") from None

    def _batch_product(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        if self.product_mode != AUTO:
            return self.products()[self.product_mode](inputs, targets, V)
        width = V.shape[1]
        choice = self.mode_choices.get(width)
        if choice is None:
            key = problem_key(self, inputs)
            choice = known_choice(key, width)
            if choice is None and self._too_little_to_time(width):
                choice = ModeChoice(UNTIMED_MODE, width, timed=False)
                log.info(
                    "product_mode=auto for blocks of %d: %s, untimed (about %d products ahead "
                    "cannot repay timing the modes)",
                    width,
                    UNTIMED_MODE,
                    self.expected_products,
                )
            if choice is None:
                modes = {
                    mode: partial(f, inputs, targets, V) for mode, f in self.products().items()
                }
                costly = {mode: modes.pop(mode) for mode in self.COSTLY_MODES}
                choice, product = choose_mode(
                    key,
                    width,
                    modes,
                    self._synchronize,
                    costly,
                    repays=lambda seconds: self._repays_setup(seconds, width),
                )
                self.mode_choices[width] = choice
                return product
            self.mode_choices[width] = choice
        return self.products()[choice.mode](inputs, targets, V)

    def _too_little_to_time(self, width: int) -> bool:
        """Whether the announced work at this width is too little to time the modes.

        Whether the announced work (``expect``) at this width is at most as many passes over the
        first batch as timing every mode would spend on it.
        """
        if self.expected_products is None:
            return False
        _, _, n = self._first_batch()
        passes = math.ceil(self.expected_products / width) * self.num_samples / max(n, 1)
        return passes <= 2 * len(self.PRODUCT_MODES)

    def _repays_setup(self, batch_seconds: float, width: int) -> bool:
        """Whether the products expected ahead repay a costly mode's set-up.

        Whether the products expected ahead (``expect``), at ``batch_seconds`` a batch, take at
        least SETUP_REPAY one-off set-ups: only then is a costly mode worth trying.
        """
        if self.expected_products is None:
            return False
        _, _, n = self._first_batch()
        ahead = self.expected_products / width * batch_seconds * self.num_samples / max(n, 1)
        return ahead >= SETUP_REPAY * SETUP_PRIOR_S

    def pass_seconds(self, width: int) -> float | None:
        """Seconds of a product at block ``width``, timed on the first batch: t_1 N / n_1.

        The first call at a width settles its product mode (kept for the run); where ``auto``
        timed the modes at this width, the chosen mode's warm time on the first batch is t_1 and
        no further product is run; else one more product on the first batch is timed.
        """
        inputs, targets, n = self._first_batch()
        V = torch.randn(
            self.shape[0],
            width,
            dtype=self.dtype,
            device=self.device,
            generator=torch.Generator(device=self.device).manual_seed(width),
        )
        fresh = width not in self.mode_choices
        self.batch_product(inputs, targets, V)
        batches = self.num_samples / max(n, 1)
        choice = self.mode_choices.get(width)
        if fresh and choice is not None and choice.timed and not choice.borrowed:
            return (choice.seconds[choice.mode] + self._pass_overhead(V)) * batches
        self._synchronize()
        start = time.perf_counter()
        self.batch_product(inputs, targets, V)
        self._synchronize()
        return (time.perf_counter() - start + self._pass_overhead(V)) * batches

    def _pass_overhead(self, V: torch.Tensor) -> float:
        """Seconds a pass adds to each batch's product: its finite check and its accumulation.

        Timed on a tensor of the product's shape (``DataPasses.accumulate``); on the ResNet-18
        rehearsal in process a whole product took 1.4x the batch products alone.
        """
        total = torch.zeros_like(V)
        self._synchronize()
        start = time.perf_counter()
        bool(torch.isfinite(V).all())
        total.add_(V, alpha=2.0)
        self._synchronize()
        return time.perf_counter() - start

    @contextmanager
    def pinned_mode(self, mode: str) -> Iterator[None]:
        """Products in ``mode`` while the body runs (the choices ``auto`` made are kept)."""
        kept, self.product_mode = self.product_mode, mode
        try:
            yield
        finally:
            self.product_mode = kept

    def width_fit(
        self,
        widest: int,
        budget_bytes: int | None,
        fixed_bytes: int,
        sharing: int = 1,
        probe_fixed_bytes: int = 0,
    ) -> MemoryFit:
        """The widest product (at most ``widest`` columns) that fits the memory budget.

        See ``pipeline.curvature.memory_fit``: peaks measured on the first batch at two widths,
        ``budget_bytes`` None for a share of the memory this process could use (``sharing``
        workers on its node or GPU), ``fixed_bytes`` held beside the products (the probes sized
        for at least ``probe_fixed_bytes``).
        """
        return operator_width_fit(
            self, widest, budget_bytes, fixed_bytes, sharing, probe_fixed_bytes
        )

    def batch_fit(
        self,
        width: int,
        budget_bytes: int | None,
        fixed_bytes: int,
        sharing: int = 1,
        probe_fixed_bytes: int = 0,
    ) -> MemoryFit:
        """The largest batch of the shard whose products of ``width`` columns fit the budget.

        Peaks measured on batches of the shard's first samples at two sizes (see ``width_fit``
        for the budget and the probes); ``rebatch`` applies it.
        """
        return operator_batch_fit(
            self, width, budget_bytes, fixed_bytes, sharing, probe_fixed_bytes
        )

    def probe_share(self) -> float:
        """One run of every product mode and one timed run, on the first of the batches."""
        _, _, n = self._first_batch()
        return (len(self.PRODUCT_MODES) + 2) * n / max(self.num_samples, 1)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _vmap(self, fn: Callable[[torch.Tensor], torch.Tensor], V: torch.Tensor) -> torch.Tensor:
        """Apply a single-vector product to every column of V in one vectorised pass.

        Apply a single-vector product to every column of V in one vectorised pass (a single vector
        skips vmap, whose overhead is measurable on small models).
        """
        if V.shape[1] == 1:
            return fn(V[:, 0])[:, None]
        return torch.func.vmap(fn, in_dims=1, out_dims=1, chunk_size=self.vmap_chunk_size)(V)
