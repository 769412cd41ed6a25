"""Case table, as curvlinops tests: models x losses x dtypes x batchings, each curvature product
against its dense reference from torch.func (float64 ground truth)."""

import functools

import pytest
import torch
from torch import nn

from pipeline.curvature import GGNOperator, HessianOperator
from pipeline.errors import InputError

from helpers import dense_ggn, dense_hessian, small_cnn, small_mlp

MODELS = {"mlp": (small_mlp, (6,)), "cnn": (small_cnn, (2, 6, 6))}


def _targets(loss: str, n: int, gen: torch.Generator, dtype) -> torch.Tensor:
    if loss == "cross_entropy":
        return torch.randint(0, 3, (n,), generator=gen)
    if loss == "mse":
        return torch.randn(n, 3, generator=gen, dtype=dtype)
    return torch.randint(0, 2, (n, 3), generator=gen).to(dtype)  # bce: 0/1 per output


LOSSES = {"cross_entropy": nn.CrossEntropyLoss(), "mse": nn.MSELoss(), "bce": nn.BCEWithLogitsLoss()}
CASES = [(m, loss, dtype, sizes) for m in MODELS for loss in LOSSES for dtype in (torch.float64, torch.float32)
         for sizes in ([24], [10, 14])]


@pytest.mark.parametrize("model_name, loss, dtype, sizes", CASES,
                         ids=[f"{m}-{loss}-{str(d).removeprefix('torch.')}-{len(s)}batches" for m, loss, d, s in CASES])
def test_hessian_and_ggn_products_equal_the_dense_matrices(model_name, loss, dtype, sizes):
    factory, shape = MODELS[model_name]
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(sum(sizes), *shape, generator=gen, dtype=torch.float64)
    y = _targets(loss, sum(sizes), gen, torch.float64)
    truth_model = factory()
    hessian, ggn = dense_hessian(truth_model, LOSSES[loss], x, y), dense_ggn(truth_model, LOSSES[loss], x, y)
    model = factory().to(dtype)  # the same weights and buffers as the reference, rounded
    batches = list(zip(torch.split(x.to(dtype), sizes), torch.split(y.to(dtype) if y.is_floating_point() else y, sizes)))
    V = torch.randn(hessian.shape[0], 3, generator=gen, dtype=torch.float64)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    for operator, dense in ((HessianOperator, hessian), (GGNOperator, ggn)):
        op = operator(model, LOSSES[loss], batches)
        torch.testing.assert_close((op @ V.to(dtype)).double(), dense @ V, **tol, msg=f"{operator.__name__} {loss}")


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(reduction="sum"), functools.partial(nn.functional.mse_loss, reduction="sum")],
                         ids=["module-sum", "functional-sum"])
def test_sum_reduced_losses_are_refused_instead_of_giving_a_batch_dependent_matrix(loss_fn):
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    with pytest.raises(InputError, match="reduction='mean'"):
        HessianOperator(small_mlp(), loss_fn, [(x, y)])
