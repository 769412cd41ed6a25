"""Case table, as curvlinops tests: models x losses x reductions x dtypes x batchings, each
curvature product (Hessian, GGN, empirical Fisher) against its dense reference from torch.func
(float64 ground truth)."""

import functools

import pytest
import torch
from torch import nn

from pipeline.curvature import EmpiricalFisherOperator, GGNOperator, HessianOperator
from pipeline.errors import InputError

from helpers import dense_fisher, dense_ggn, dense_hessian, small_cnn, small_mlp

MODELS = {"mlp": (small_mlp, (6,)), "cnn": (small_cnn, (2, 6, 6))}


def _targets(loss: str, n: int, gen: torch.Generator, dtype) -> torch.Tensor:
    if loss == "cross_entropy":
        return torch.randint(0, 3, (n,), generator=gen)
    if loss == "mse":
        return torch.randn(n, 3, generator=gen, dtype=dtype)
    return torch.randint(0, 2, (n, 3), generator=gen).to(dtype)  # bce: 0/1 per output


LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}
CASES = [(m, loss, reduction, dtype, sizes) for m in MODELS for loss in LOSSES for reduction in ("mean", "sum")
         for dtype in (torch.float64, torch.float32) for sizes in ([24], [10, 14])]


@pytest.mark.parametrize("model_name, loss, reduction, dtype, sizes", CASES,
                         ids=[f"{m}-{loss}-{r}-{str(d).removeprefix('torch.')}-{len(s)}batches" for m, loss, r, d, s in CASES])
def test_curvature_products_equal_the_dense_matrices(model_name, loss, reduction, dtype, sizes):
    factory, shape = MODELS[model_name]
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(sum(sizes), *shape, generator=gen, dtype=torch.float64)
    y = _targets(loss, sum(sizes), gen, torch.float64)
    loss_fn = LOSSES[loss](reduction=reduction)
    truth_model = factory()
    hessian, ggn, fisher = (dense(truth_model, loss_fn, x, y) for dense in (dense_hessian, dense_ggn, dense_fisher))
    model = factory().to(dtype)  # the same weights and buffers as the reference, rounded
    batches = list(zip(torch.split(x.to(dtype), sizes), torch.split(y.to(dtype) if y.is_floating_point() else y, sizes)))
    V = torch.randn(hessian.shape[0], 3, generator=gen, dtype=torch.float64)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    for operator, dense in ((HessianOperator, hessian), (GGNOperator, ggn), (EmpiricalFisherOperator, fisher)):
        op = operator(model, loss_fn, batches)
        scale = float(dense.abs().max())  # summed losses are N times larger: the float32 tolerance is relative to the matrix
        torch.testing.assert_close((op @ V.to(dtype)).double() / scale, dense @ V / scale, **tol, msg=f"{operator.__name__} {loss}")


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(reduction="none"), functools.partial(nn.functional.mse_loss, reduction="none")],
                         ids=["module-none", "functional-none"])
def test_unreduced_losses_are_refused(loss_fn):
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    with pytest.raises(InputError, match="reduction='mean'"):
        HessianOperator(small_mlp(), loss_fn, [(x, y)])
