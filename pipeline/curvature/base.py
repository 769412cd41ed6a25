"""Shared machinery of the curvature operators: data passes, sample weighting, dtype/device.

For a data set of N samples split into batches of n_i samples with mean losses L_i, the loss is
L = (1/N) sum_i n_i L_i, so every curvature matrix is C = (1/N) sum_i n_i C_i: batches are
weighted by sample count and the operator does not depend on how samples are batched. A
sum-reduced loss (``reduction="sum"``) has L = sum_i L_i and C = sum_i C_i.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from pipeline.curvature.graph_cache import GraphCache
from pipeline.curvature.mode_choice import ModeChoice, choose_mode, known_choice, problem_key
from pipeline.curvature.params import ParamSelector, flat_parameters, weights_digest
from pipeline.errors import InputError, OperationError
from pipeline.linalg.operator import Operator

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[Any, torch.Tensor]
BatchProduct = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
AUTO = "auto"
UNTIMED_MODE = "graph-reuse"  # every curvature has it: PyHessian's product, never far from the fastest
SETUP_PRIOR_S = 40.0  # a compiled product's one-off set-up before it is measured (16-39 s seen on CPU)
SETUP_REPAY = 5.0  # tried only where the product time ahead is this many set-ups

log = logging.getLogger(__name__)


_STOCHASTIC_MODEL = (
    "two passes over the same samples differ: the model is stochastic in eval mode (dropout via "
    "F.dropout(training=True), BatchNorm forced into train mode, random augmentation inside forward)"
)


class NondeterminismError(OperationError):
    """Two passes over the same data gave different losses or products."""


class CurvatureOperator(Operator):
    """Curvature of the mean loss of ``model`` over all samples of ``data``, as an operator on R^D.

    ``data`` is a re-iterable of (inputs, targets) batches (a list, or a DataLoader without
    shuffling); ``loss_fn(outputs, targets)`` returns the batch MEAN. ``params`` selects the
    parameters (see :func:`select_parameters`); the others and all buffers stay fixed. ``dtype``
    casts parameters, buffers and floating inputs (default: the parameters' dtype). The model
    is put in eval mode. ``vmap_chunk_size`` bounds how many vectors of a block are vmapped at
    once (memory grows with it).

    ``hvp_mode`` picks how a batch's product is formed: one of the subclass's ``PRODUCT_MODES``,
    or ``"auto"`` (default): the modes are timed on the first batch once per problem and block
    width, and the fastest is kept (``mode_choices[b]``; logged; see
    ``pipeline.curvature.mode_choice``). A list of batches is moved to
    the operator's device and dtype once, on the first pass, not on every product.

    For a list of batches, the graph a batch's products run through is built once and kept
    across products while its saved tensors fit in ``graph_cache_gb`` (None: a quarter of the
    memory available at the first build; 0: never kept), so later products of that batch cost
    only their backward passes (see ``pipeline.curvature.graph_cache``).
    """

    PRODUCT_MODES: tuple[str, ...] = ()
    COSTLY_MODES: tuple[str, ...] = ()  # modes with a one-off set-up, timed by auto only where it repays

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Iterable[Batch],
        params: ParamSelector = None,
        dtype: torch.dtype | None = None,
        vmap_chunk_size: int | None = None,
        hvp_mode: str = AUTO,
        graph_cache_gb: float | None = None,
    ):
        if hvp_mode != AUTO and hvp_mode not in self.PRODUCT_MODES:
            raise InputError(
                f"hvp_mode for {type(self).__name__} must be {AUTO!r} or one of {self.PRODUCT_MODES}, got {hvp_mode!r}"
            )
        reduction = getattr(loss_fn, "reduction", None) or getattr(loss_fn, "keywords", {}).get("reduction") or "mean"
        if reduction not in ("mean", "sum"):
            raise InputError(f"loss reduction {reduction!r} is not supported: the loss must be one number per batch; use "
                             "reduction='mean' (or 'sum' for the curvature of the summed loss)")
        self.view, self.theta = flat_parameters(model, params, dtype)
        dtype = self.theta.dtype
        if iter(data) is data:
            raise InputError(
                "data is a one-shot iterator (e.g. a generator); every product needs a fresh pass: "
                "pass a list of batches or a DataLoader"
            )
        super().__init__(self.view.dim, dtype, self.theta.device)
        self.model = model.eval()
        self.loss_fn = loss_fn
        self.reduction = reduction
        self.data = data
        self.vmap_chunk_size = vmap_chunk_size
        self.hvp_mode = hvp_mode
        self.mode_choices: dict[int, ModeChoice] = {}
        self.graphs = GraphCache(None if graph_cache_gb is None else int(graph_cache_gb * 2**30))
        self._prepared: list[tuple[Any, torch.Tensor, int]] | None = None
        self._fixed = {
            name: _cast(t.detach(), dtype)
            for name, t in (*model.named_parameters(), *model.named_buffers())
            if name not in self.view.names
        }

    # ---- model evaluation -------------------------------------------------------------------
    def forward(self, theta: torch.Tensor, inputs: Any) -> torch.Tensor:
        """Model outputs at flat parameters ``theta`` (D,)."""
        return self.call_model(self.view.unflatten(theta), inputs)

    def call_model(self, params: dict[str, torch.Tensor], inputs: Any) -> torch.Tensor:
        """Model outputs with the selected parameters taken from ``params`` (name -> tensor)."""
        return functional_call(self.model, {**self._fixed, **params}, (inputs,))

    def batch_loss(self, theta: torch.Tensor, inputs: Any, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss of one batch at ``theta``."""
        return self.loss_fn(self.forward(theta, inputs), targets)

    def _prepare(self, batch: Batch) -> tuple[Any, torch.Tensor, int]:
        try:
            inputs, targets = batch
        except (TypeError, ValueError):
            raise InputError("each batch of data must be an (inputs, targets) pair") from None
        inputs = _to(inputs, self.dtype, self.device)
        targets = _to(targets, self.dtype, self.device)
        return inputs, targets, int(targets.shape[0])

    @property
    def num_samples(self) -> int:
        """N, the samples in this operator's data (a DataLoader's data set is counted, not loaded)."""
        dataset = getattr(self.data, "dataset", None)
        if dataset is not None and hasattr(dataset, "__len__"):
            return len(dataset)
        return sum(n for _, _, n in self.batches())

    def batches(self) -> Iterator[tuple[Any, torch.Tensor, int]]:
        """(inputs, targets, n) of every batch on the operator's device and dtype. A list or
        tuple of batches is converted once and kept; other iterables are converted per pass."""
        if self._prepared is not None:
            yield from self._prepared
            return
        if not isinstance(self.data, (list, tuple)):
            yield from map(self._prepare, self.data)
            return
        prepared = []
        for batch in self.data:
            prepared.append(self._prepare(batch))
            yield prepared[-1]
        self._prepared = prepared

    # ---- products -------------------------------------------------------------------------
    def retained(self, kind: str, inputs: Any, build: Callable[[], Any]) -> Any:
        """The product graph ``build()`` of the batch with these ``inputs``, kept across products
        where the data is a list of batches (the same objects every pass) and the budget allows."""
        if not isinstance(self.data, (list, tuple)):
            return build()
        return self.graphs.get(kind, inputs, build, self.device)

    @abstractmethod
    def products(self) -> dict[str, BatchProduct]:
        """mode -> f(inputs, targets, V) giving C_i V (D, b) for the curvature C_i of one
        batch's MEAN loss; the keys are ``PRODUCT_MODES``."""

    def batch_product(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """C_i V (D, b) for one batch, in ``hvp_mode`` (or the mode ``auto`` chose for width b)."""
        if self.hvp_mode != AUTO:
            return self.products()[self.hvp_mode](inputs, targets, V)
        width = V.shape[1]
        choice = self.mode_choices.get(width)
        if choice is None:
            key = problem_key(self, inputs)
            choice = known_choice(key, width)
            if choice is None and self._too_little_to_time(width):
                choice = ModeChoice(UNTIMED_MODE, width, timed=False)
                log.info("hvp_mode=auto for blocks of %d: %s, untimed (about %d products ahead cannot repay timing the modes)",
                         width, UNTIMED_MODE, self.expected_products)
            if choice is None:
                modes = {mode: partial(f, inputs, targets, V) for mode, f in self.products().items()}
                costly = {mode: modes.pop(mode) for mode in self.COSTLY_MODES}
                choice, product = choose_mode(key, width, modes, self._synchronize, costly,
                                              repays=lambda seconds: self._repays_setup(seconds, width))
                self.mode_choices[width] = choice
                return product
            self.mode_choices[width] = choice
        return self.products()[choice.mode](inputs, targets, V)

    def _too_little_to_time(self, width: int) -> bool:
        """Whether the announced work (``expect``) at this width is at most as many passes over the
        first batch as timing every mode would spend on it."""
        if self.expected_products is None:
            return False
        _, _, n = self._first_batch()
        passes = math.ceil(self.expected_products / width) * self.num_samples / max(n, 1)
        return passes <= 2 * len(self.PRODUCT_MODES)

    def _repays_setup(self, batch_seconds: float, width: int) -> bool:
        """Whether the products expected ahead (``expect``), at ``batch_seconds`` a batch, take at
        least SETUP_REPAY one-off set-ups: only then is a costly mode worth trying."""
        if self.expected_products is None:
            return False
        _, _, n = self._first_batch()
        ahead = self.expected_products / width * batch_seconds * self.num_samples / max(n, 1)
        return ahead >= SETUP_REPAY * SETUP_PRIOR_S

    def pass_seconds(self, width: int) -> float | None:
        """Seconds of a product at block ``width``, timed on the first batch (after the mode
        choice, which is kept for the run) and scaled by the samples: t_1 N / n_1."""
        inputs, targets, n = self._first_batch()
        V = torch.randn(self.shape[0], width, dtype=self.dtype, device=self.device,
                        generator=torch.Generator(device=self.device).manual_seed(width))
        self.batch_product(inputs, targets, V)
        self._synchronize()
        start = time.perf_counter()
        self.batch_product(inputs, targets, V)
        self._synchronize()
        return (time.perf_counter() - start) * self.num_samples / max(n, 1)

    def probe_share(self) -> float:
        """One run of every product mode and one timed run, on the first of the batches."""
        _, _, n = self._first_batch()
        return (len(self.PRODUCT_MODES) + 2) * n / max(self.num_samples, 1)

    def _first_batch(self) -> tuple[Any, torch.Tensor, int]:
        """The first batch as products see it (a list of batches is prepared whole first, so the
        objects, and the graphs kept for them, are the ones every later pass uses)."""
        if isinstance(self.data, (list, tuple)) and self._prepared is None:
            for _ in self.batches():
                pass
        return next(iter(self.batches()))

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def weighted_sum(self, V: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum_i w_i C_i V, N): the unnormalised product over this operator's data and its size,
        w_i = n_i for mean-reduced losses, 1 for summed ones.

        Distributed workers all-reduce both parts; ``normalise`` turns them into C V.
        """
        total = torch.zeros_like(V)
        count = 0
        for index, (inputs, targets, n) in enumerate(self.batches()):
            if n == 0:
                continue
            try:
                product = self.batch_product(inputs, targets, V)
            except RuntimeError as error:
                if "randomness" in str(error):
                    raise NondeterminismError(_STOCHASTIC_MODEL) from error
                raise
            if not torch.isfinite(product).all():
                self._raise_nonfinite(index, inputs, targets)
            total += n * product if self.reduction == "mean" else product
            count += n
        if count == 0:
            raise InputError("data is empty: the data set yielded no samples; check the data config and subset size")
        return total, count

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.normalise(*self.weighted_sum(V))

    def normalise(self, total: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
        """C V from ``weighted_sum``'s parts (summed over workers): total / N for a mean loss, total for a sum."""
        return total / count if self.reduction == "mean" else total

    def _vmap(self, fn: Callable[[torch.Tensor], torch.Tensor], V: torch.Tensor) -> torch.Tensor:
        """Apply a single-vector product to every column of V in one vectorised pass (a single
        vector skips vmap, whose overhead is measurable on small models)."""
        if V.shape[1] == 1:
            return fn(V[:, 0])[:, None]
        return torch.func.vmap(fn, in_dims=1, out_dims=1, chunk_size=self.vmap_chunk_size)(V)

    def _raise_nonfinite(self, index: int, inputs: Any, targets: torch.Tensor) -> None:
        with torch.no_grad():
            loss = self.batch_loss(self.theta, inputs, targets)
        if not torch.isfinite(loss):
            raise InputError(
                f"loss is {loss.item()} on batch {index}: check the inputs for NaN/inf, the learning "
                "rate of the checkpoint, or use dtype=float64"
            )
        raise InputError(
            f"curvature product is not finite on batch {index} although the loss ({loss.item():.4g}) is: "
            "the model overflows in its second derivatives; try dtype=float64"
        )

    def weights_digest(self) -> str:
        """SHA-1 of the flat parameters theta: names the weights in store fingerprints."""
        return weights_digest(self.theta)

    def worker_peak_rss(self) -> int | None:
        """None: the products run in this process, whose own peak the plan reads."""
        return None

    # ---- checks ---------------------------------------------------------------------------
    def loss(self) -> float:
        """Mean loss over all samples of the data."""
        total, count = 0.0, 0
        with torch.no_grad():
            for inputs, targets, n in self.batches():
                if n:
                    total += n * float(self.batch_loss(self.theta, inputs, targets))
                    count += n
        if count == 0:
            raise InputError("data is empty: the data set yielded no samples")
        return total / count

    def check_determinism(self, seed: int = 0, rtol: float = 1e-6) -> None:
        """Two passes over the data must see the same samples and give the same loss and product.

        Raises NondeterminismError naming the likely cause otherwise.
        """
        fingerprints = [_fingerprint(self.data), _fingerprint(self.data)]
        if fingerprints[0] != fingerprints[1]:
            raise NondeterminismError(
                "the data yields different samples on each pass: turn off shuffling (shuffle=False) "
                "and random augmentation, or pass a fixed list of batches"
            )
        losses = [self.loss(), self.loss()]
        if abs(losses[0] - losses[1]) > rtol * max(abs(losses[0]), 1e-30):
            raise NondeterminismError(f"{_STOCHASTIC_MODEL} (losses {losses[0]:.8g} vs {losses[1]:.8g})")
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(self.shape[0], generator=gen, dtype=self.dtype).to(self.device)
        products = []
        for _ in range(2):
            self.graphs.clear()  # each product through a graph built anew
            products.append(self @ v)
        if not torch.allclose(products[0], products[1], rtol=rtol, atol=rtol * float(products[0].abs().max())):
            raise NondeterminismError(f"{_STOCHASTIC_MODEL} (two products of the same vector differ)")


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def _to(x: Any, dtype: torch.dtype, device: torch.device) -> Any:
    """Move tensors (and tuples/lists of tensors) to device; floating ones to dtype."""
    if isinstance(x, torch.Tensor):
        return _cast(x.to(device, non_blocking=True), dtype)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(t, dtype, device) for t in x)
    return x


def _fingerprint(data: Iterable[Batch]) -> str:
    digest = hashlib.sha1()
    for inputs, targets in data:
        for t in (inputs, targets):
            if isinstance(t, torch.Tensor):
                digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
