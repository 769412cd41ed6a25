"""``CurvatureOperator``: the curvature of a mean loss as an operator.

The curvature of a model's mean loss over a data set, as an operator on R^D. Its parts:
``DataPasses`` (batches, sample weighting), ``ProductModes`` (one batch's product in the chosen
mode), ``OperatorChecks`` (non-finite products, determinism); a subclass (Hessian, GGN, empirical
Fisher) supplies its ``products``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from pipeline.curvature.checks import OperatorChecks
from pipeline.curvature.data_passes import Batch, DataPasses, cast_floating, sample_count
from pipeline.curvature.graph_cache import GraphCache
from pipeline.curvature.mode_choice import ModeChoice
from pipeline.curvature.params import ParamSelector, flat_parameters, weights_digest
from pipeline.curvature.product_modes import AUTO, BatchProduct, ProductModes
from pipeline.errors import InputError
from pipeline.linalg.operator import Operator

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
__all__ = ["AUTO", "Batch", "BatchProduct", "CurvatureOperator", "LossFn"]


class CurvatureOperator(DataPasses, ProductModes, OperatorChecks, Operator):
    """Curvature of the mean loss of ``model`` over all samples of ``data``, as an operator on R^D.

    ``op @ V`` for V (D,) or (D, b) is the sample-weighted sum of the batches' products, so it does
    not depend on how samples are split into batches or workers. The model is put in eval mode. A
    list of batches is moved to the operator's device and dtype once, on the first pass; the graph a
    batch's products run through is kept across products while its saved tensors fit in
    ``graph_cache_gb`` (see ``pipeline.curvature.graph_cache``).

    Args:
        model: The network; its parameters theta (selected by ``params``) span R^D.
        loss_fn: ``loss_fn(outputs, targets)``, the batch MEAN (or sum: then C is the sum).
        data: A re-iterable of (inputs, targets) batches (a list, or a DataLoader without
            shuffling).
        params: Which parameters (see :func:`select_parameters`); the others and all buffers stay
            fixed. Default: all trainable parameters.
        dtype: Cast parameters, buffers and floating inputs (default: the parameters' dtype).
        vmap_chunk_size: How many vectors of a block are vmapped at once (memory grows with it).
        product_mode: One of the subclass's ``PRODUCT_MODES``, or ``"auto"``: the modes are timed
            on the first batch once per problem and block width and the fastest is kept
            (``mode_choices[b]``; see ``pipeline.curvature.mode_choice``).
        graph_cache_gb: Bytes (GiB) of kept graphs (None: a quarter of the memory available at the
            first build; 0: never kept).
        batch_size_fn: ``(inputs, targets) -> n_i``, what a batch's mean loss averages over, its
            weight (None: ``loss_fn.count`` where the loss has one, e.g. tokens, else the first
            input tensor's first dimension).

    Raises:
        InputError: An unknown product mode, a loss that is not one number per batch, no
            trainable parameters or empty data.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Iterable[Batch],
        params: ParamSelector = None,
        dtype: torch.dtype | None = None,
        vmap_chunk_size: int | None = None,
        product_mode: str = AUTO,
        graph_cache_gb: float | None = None,
        batch_size_fn: Callable[[Any, torch.Tensor], int] | None = None,
    ):
        if product_mode != AUTO and product_mode not in self.PRODUCT_MODES:
            raise InputError(
                f"product_mode for {type(self).__name__} must be {AUTO!r} or one of "
                f"{self.PRODUCT_MODES}, got {product_mode!r}"
            )
        reduction = (
            getattr(loss_fn, "reduction", None)
            or getattr(loss_fn, "keywords", {}).get("reduction")
            or "mean"
        )
        if reduction not in ("mean", "sum"):
            raise InputError(
                f"loss reduction {reduction!r} is not supported: the loss must be one number per "
                "batch; use "
                "reduction='mean' (or 'sum' for the curvature of the summed loss)"
            )
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
        self.batch_size_fn = batch_size_fn or getattr(loss_fn, "count", sample_count)
        self.reduction = reduction
        self.data = data
        self.vmap_chunk_size = vmap_chunk_size
        self.product_mode = product_mode
        self.mode_choices: dict[int, ModeChoice] = {}
        self.graphs = GraphCache(None if graph_cache_gb is None else int(graph_cache_gb * 2**30))
        self._prepared: list[tuple[Any, torch.Tensor, int]] | None = None
        self._fixed = {
            name: cast_floating(t.detach(), dtype)
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

    def weights_digest(self) -> str:
        """SHA-1 of the flat parameters theta: names the weights in store fingerprints."""
        return weights_digest(self.theta)

    def worker_peak_rss(self) -> int | None:
        """None: the products run in this process, whose own peak the plan reads."""
        return None
