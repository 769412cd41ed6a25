"""``product_mode=auto``: which product mode is fastest, timed once per (problem, block width).

The choice depends on the architecture, the batch shape, the device and the block width, not on
the weights, so it is kept process-wide under that key: a second operator of the same problem
(the plan's, a reproduction's next checkpoint) reuses it. A width within a factor of two of a
width already timed reuses that width's mode (one-off widths, such as k residual products, are
never timed), and every mode is run once on the first batch (its output is the product asked
for), then the ones within three times the fastest once more, timed (a kept graph makes the second
run of the graph modes cheaper than their first). A first run that imported modules is timed
again before the comparison: torch.func's first use imports torch._dynamo (2-7 s of CPU), which
made forward-over-reverse look a thousand times slower than it is.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pipeline.errors import OperationError

log = logging.getLogger(__name__)

Product = Callable[[torch.Tensor], torch.Tensor]
NEAR = 2.0  # widths within this factor share a choice
CONTENDERS = 3.0  # after the first run, modes slower than this factor of the fastest drop out


@dataclass
class ModeChoice:
    """The mode kept for a block width, with what each mode took on one batch (seconds)."""

    mode: str
    width: int
    seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    borrowed: bool = False  # taken from a nearby width: no product spent on timing this one
    timed: bool = True  # False: the work ahead was too small to repay timing (the default mode)


_CHOICES: dict[tuple, dict[int, ModeChoice]] = {}


def problem_key(operator: Any, inputs: Any) -> tuple:
    """What the fastest mode depends on.

    Operator kind, architecture, D, dtype, device, batch shape, and whether product graphs are kept
    across products.
    """
    shapes = tuple(
        tuple(t.shape)
        for t in (
            inputs.values()
            if isinstance(inputs, dict)
            else inputs
            if isinstance(inputs, (tuple, list))
            else (inputs,)
        )
        if isinstance(t, torch.Tensor)
    )
    return (
        type(operator).__name__,
        type(operator.model).__qualname__,
        operator.shape[0],
        str(operator.dtype),
        operator.device.type,
        shapes,
        not operator.graphs.full,
    )


def known_choice(key: tuple, width: int) -> ModeChoice | None:
    """The choice timed at ``width``, or at the nearest timed width within a factor ``NEAR``."""
    timed = _CHOICES.get(key, {})
    if width in timed:
        return timed[width]
    near = [w for w in timed if max(w, width) <= NEAR * min(w, width)]
    if not near:
        return None
    nearest = timed[min(near, key=lambda w: (abs(math.log(w / width)), w))]
    return ModeChoice(nearest.mode, nearest.width, nearest.seconds, nearest.failed, borrowed=True)


def double_backward_hint(failures: Any) -> str:
    """The fix where a failure is a kernel without a double backward (fused attention, say).

    An empty string otherwise.
    """
    text = str(failures)
    unsupported = "derivative for" in text and "not implemented" in text
    if not unsupported and "Trying to use forward AD with" not in text:
        return ""
    return (
        "; a kernel in the model has no double backward, which every curvature product needs: "
        "use its math path (torch's scaled_dot_product_attention is run on it already; a Hugging "
        "Face model: load it with attn_implementation='eager')"
    )


def choose_mode(
    key: tuple,
    width: int,
    products: Mapping[str, Product],
    synchronize: Callable[[], None],
    costly: Mapping[str, Product] | None = None,
    repays: Callable[[float], bool] = lambda seconds: False,
) -> tuple[ModeChoice, torch.Tensor]:
    """Run every mode's ``product()`` on the same batch and block, keep the fastest for ``width``.

    ``costly`` modes have a one-off set-up (compilation): they are tried only where
    ``repays(best per-batch seconds of the others)`` says the work ahead can repay it, and their
    set-up time is logged and recorded (``setup:<mode>``). Returns the choice and the fastest
    mode's product. A mode that raises a RuntimeError (an op functorch cannot transform) is
    skipped and named; randomness errors propagate.
    """
    fastest, seconds, failures = _Fastest(), {}, {}
    _time_each(products, synchronize, fastest, seconds, failures)
    if not seconds:
        raise OperationError(
            f"no product mode works for this model: {failures}{double_backward_hint(failures)}"
        )
    # a second, warm run of the contenders
    for mode in [m for m, t in seconds.items() if t <= CONTENDERS * fastest.seconds]:
        seconds[mode] = min(seconds[mode], fastest.offer(*_timed(products[mode], synchronize)))
    setup = {}
    if costly and repays(fastest.seconds):
        _time_each(costly, synchronize, fastest, setup, failures)  # the first run pays the set-up
        for mode in setup:
            seconds[mode] = fastest.offer(*_timed(costly[mode], synchronize))
            setup[mode] -= seconds[mode]
    best = min(seconds, key=seconds.__getitem__)
    choice = ModeChoice(
        best, width, {**seconds, **{f"setup:{m}": t for m, t in setup.items()}}, failures
    )
    _CHOICES.setdefault(key, {})[width] = choice
    log.info(
        "product_mode=auto for blocks of %d: %s (ms per batch: %s)%s%s",
        width,
        best,
        ", ".join(f"{m} {1e3 * t:.1f}" for m, t in seconds.items()),
        "".join(f"; {m} took {t:.1f} s to set up" for m, t in setup.items()),
        f"; failed: {failures}" if failures else "",
    )
    return choice, fastest.output


class _Fastest:
    """The output of the fastest run so far; every other run's output is dropped at once.

    Each output is a (D, b) block: keeping one per mode held three blocks more than a product
    needs while the modes were timed.
    """

    def __init__(self) -> None:
        self.seconds, self.output = math.inf, None

    def offer(self, output: torch.Tensor, seconds: float) -> float:
        """Keep ``output`` if its run was the fastest yet; returns ``seconds``."""
        if seconds < self.seconds:
            self.seconds, self.output = seconds, output
        return seconds


def _time_each(
    products: Mapping[str, Product],
    synchronize: Callable[[], None],
    fastest: _Fastest,
    seconds: dict,
    failures: dict,
) -> None:
    """One timed run of each product into ``seconds`` (its output offered to ``fastest``).

    A RuntimeError (other than randomness) is recorded in ``failures``.
    """
    for mode, product in products.items():
        try:
            modules = len(sys.modules)
            seconds[mode] = fastest.offer(*_timed(product, synchronize))
            if len(sys.modules) > modules:  # one-off imports: not this mode's cost per product
                seconds[mode] = fastest.offer(*_timed(product, synchronize))
        except RuntimeError as error:
            if "randomness" in str(error):
                raise
            failures[mode] = f"{type(error).__name__}: {str(error).splitlines()[0]}"


def forget_choices() -> None:
    """Drop every kept choice (tests; a process that changed its thread count)."""
    _CHOICES.clear()


def _timed(product: Product, synchronize: Callable[[], None]) -> tuple[torch.Tensor, float]:
    synchronize()
    start = time.perf_counter()
    out = product()
    synchronize()
    return out, time.perf_counter() - start
