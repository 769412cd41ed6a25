"""Case table, as curvlinops tests: models x losses x reductions x dtypes x batchings, each
curvature product (Hessian, GGN, empirical Fisher) against its dense reference from torch.func
(float64 ground truth)."""

import functools

import pytest
import torch
from torch import nn

from pipeline.curvature import EmpiricalFisherOperator, GGNOperator, HessianOperator
from pipeline.curvature.output_hessian import closed_form_output_hessian
from pipeline.errors import InputError, OperationError

from helpers import dense_fisher, dense_ggn, dense_hessian, small_cnn, small_mlp

MODELS = {"mlp": (small_mlp, (6,)), "cnn": (small_cnn, (2, 6, 6))}


def _targets(loss: str, n: int, gen: torch.Generator, dtype) -> torch.Tensor:
    if loss == "cross_entropy":
        return torch.randint(0, 3, (n,), generator=gen)
    if loss == "mse":
        return torch.randn(n, 3, generator=gen, dtype=dtype)
    return torch.randint(0, 2, (n, 3), generator=gen).to(dtype)  # bce: 0/1 per output


LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}
CASES = [
    (m, loss, reduction, dtype, sizes)
    for m in MODELS
    for loss in LOSSES
    for reduction in ("mean", "sum")
    for dtype in (torch.float64, torch.float32)
    for sizes in ([24], [10, 14])
]


@pytest.mark.parametrize(
    "model_name, loss, reduction, dtype, sizes",
    CASES,
    ids=[
        f"{m}-{loss}-{r}-{str(d).removeprefix('torch.')}-{len(s)}batches"
        for m, loss, r, d, s in CASES
    ],
)
def test_curvature_products_equal_the_dense_matrices(model_name, loss, reduction, dtype, sizes):
    factory, shape = MODELS[model_name]
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(sum(sizes), *shape, generator=gen, dtype=torch.float64)
    y = _targets(loss, sum(sizes), gen, torch.float64)
    loss_fn = LOSSES[loss](reduction=reduction)
    truth_model = factory()
    hessian, ggn, fisher = (
        dense(truth_model, loss_fn, x, y) for dense in (dense_hessian, dense_ggn, dense_fisher)
    )
    model = factory().to(dtype)  # the same weights and buffers as the reference, rounded
    batches = list(
        zip(
            torch.split(x.to(dtype), sizes),
            torch.split(y.to(dtype) if y.is_floating_point() else y, sizes),
        )
    )
    V = torch.randn(hessian.shape[0], 3, generator=gen, dtype=torch.float64)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    for operator, dense in (
        (HessianOperator, hessian),
        (GGNOperator, ggn),
        (EmpiricalFisherOperator, fisher),
    ):
        # summed losses are N times larger: the float32 tolerance is relative to the matrix
        scale = float(dense.abs().max())
        # the GGN's apply H_out in closed form for CE and MSE
        for mode in set(operator.PRODUCT_MODES) - set(operator.COSTLY_MODES):
            op = operator(model, loss_fn, batches, product_mode=mode)
            if (operator, mode, loss, reduction) == (
                HessianOperator,
                "forward-over-reverse",
                "mse",
                "mean",
            ):
                with pytest.raises(
                    OperationError, match="use product_mode=graph-reuse or reverse-over-reverse"
                ):
                    # PyTorch's forward-mode rule for mse_loss's mean gradient fails; auto skips the
                    # mode
                    op @ V.to(dtype)
                continue
            torch.testing.assert_close(
                (op @ V.to(dtype)).double() / scale,
                dense @ V / scale,
                **tol,
                msg=f"{operator.__name__} {mode} {loss}",
            )


@pytest.mark.parametrize(
    "loss_fn",
    [
        nn.CrossEntropyLoss(reduction="none"),
        functools.partial(nn.functional.mse_loss, reduction="none"),
    ],
    ids=["module-none", "functional-none"],
)
def test_unreduced_losses_are_refused(loss_fn):
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    with pytest.raises(InputError, match="reduction='mean'"):
        HessianOperator(small_mlp(), loss_fn, [(x, y)])


@pytest.mark.parametrize(
    "loss_fn, closed",
    [
        (nn.functional.cross_entropy, True),
        (nn.CrossEntropyLoss(reduction="sum"), True),
        (nn.MSELoss(), True),
        (functools.partial(nn.functional.mse_loss, reduction="sum"), True),
        (nn.BCEWithLogitsLoss(), False),
        (nn.CrossEntropyLoss(label_smoothing=0.1), False),
        (nn.CrossEntropyLoss(weight=torch.ones(3)), False),
    ],
)
def test_closed_form_output_hessian_equals_autograd_where_it_applies(loss_fn, closed):
    gen = torch.Generator().manual_seed(0)
    outputs = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    targets = (
        torch.randn(7, 3, generator=gen, dtype=torch.float64)
        if "mse" in repr(loss_fn).lower()
        else torch.randint(0, 3, (7,), generator=gen)
    )
    reduction = getattr(loss_fn, "reduction", None) or getattr(loss_fn, "keywords", {}).get(
        "reduction", "mean"
    )
    factory = closed_form_output_hessian(loss_fn, reduction)
    assert (factory is not None) == closed
    if closed:
        W = torch.randn(7, 3, generator=gen, dtype=torch.float64)
        dense = torch.func.hessian(lambda o: loss_fn(o, targets))(outputs).reshape(21, 21)
        torch.testing.assert_close(
            factory(outputs, targets)(W).reshape(-1), dense @ W.reshape(-1), rtol=1e-12, atol=1e-14
        )


def test_cross_entropy_with_ignored_targets_falls_back_to_autograd():
    factory = closed_form_output_hessian(nn.functional.cross_entropy, "mean")
    assert factory(torch.zeros(4, 3), torch.tensor([0, -100, 1, 2])) is None
    # spatial outputs: not the closed form's kind
    assert factory(torch.zeros(4, 3, 5), torch.zeros(4, 5, dtype=torch.long)) is None


def test_compiled_products_equal_the_dense_hessian():
    """product_mode=compiled equals the dense float64 Hessian.

    product_mode=compiled (torch.compile of forward-over-reverse; about 15 s of compiling on CPU per
    model, so the harder model only: conv, BatchNorm in eval mode, linear head): one compile per
    batch shape (equal batches), exact against the dense float64 Hessian.
    """
    gen = torch.Generator().manual_seed(5)
    for factory, shape in [MODELS["cnn"]]:
        x, y = (
            torch.randn(24, *shape, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (24,), generator=gen),
        )
        model, loss_fn = factory(), nn.CrossEntropyLoss()
        dense = dense_hessian(model, loss_fn, x, y)
        op = HessianOperator(
            model,
            loss_fn,
            list(zip(torch.split(x, 12), torch.split(y, 12))),
            product_mode="compiled",
        )
        V = torch.randn(dense.shape[0], 2, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(op @ V, dense @ V, rtol=1e-10, atol=1e-12)
