"""Curvature operators against dense float64 ground truth."""

import pytest
import torch
from torch import nn

from helpers import (
    classification_data,
    dense_fisher,
    dense_ggn,
    dense_hessian,
    small_cnn,
    small_mlp,
    split,
)
from pipeline.curvature import EmpiricalFisherOperator, GGNOperator, HessianOperator

CE = nn.functional.cross_entropy


def mse(out, y):
    return ((out - y) ** 2).sum(dim=1).mean()


@pytest.fixture
def mlp_problem():
    model = small_mlp()
    x, y = classification_data(60, (6,))
    return model, x, y


def _block(dim, b=3, seed=0):
    return torch.randn(dim, b, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("mode", ["forward-over-reverse", "reverse-over-reverse"])
def test_hessian_matches_dense_mlp(mlp_problem, mode):
    model, x, y = mlp_problem
    H = dense_hessian(model, CE, x, y)
    op = HessianOperator(model, CE, split(x, y, [32, 28]), hvp_mode=mode)
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], rtol=1e-10, atol=1e-12)
    assert op.num_matvecs == 4


def test_hessian_matches_dense_cnn_with_eval_batchnorm():
    model = small_cnn()
    x, y = classification_data(20, (2, 6, 6))
    H = dense_hessian(model, CE, x, y)
    op = HessianOperator(model, CE, split(x, y, [7, 13]))
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("selector", [["2.weight", "4.bias"], "re:[24]\\..*", lambda n, p: n.startswith("4")])
def test_hessian_parameter_subset(mlp_problem, selector):
    model, x, y = mlp_problem
    op = HessianOperator(model, CE, [(x, y)], params=selector)
    names = op.view.names
    H = dense_hessian(model, CE, x, y, names=set(names))
    assert op.shape == H.shape
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)


def test_subset_is_a_block_of_the_full_hessian(mlp_problem):
    model, x, y = mlp_problem
    full = dense_hessian(model, CE, x, y)
    op = HessianOperator(model, CE, [(x, y)], params="4.*")
    offset = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("4"))
    block = full[offset:, offset:]
    eye = torch.eye(op.shape[0], dtype=torch.float64)
    torch.testing.assert_close(op @ eye, block, rtol=1e-10, atol=1e-12)


def test_batch_split_invariance(mlp_problem):
    model, x, y = mlp_problem
    V = _block(sum(p.numel() for p in model.parameters()))
    one = HessianOperator(model, CE, [(x, y)]) @ V
    ragged = HessianOperator(model, CE, split(x, y, [32, 28])) @ V
    many = HessianOperator(model, CE, split(x, y, [1, 17, 40, 2])) @ V
    torch.testing.assert_close(one, ragged, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(one, many, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cls, dense, sizes", [(GGNOperator, dense_ggn, [25, 35]), (EmpiricalFisherOperator, dense_fisher, [40, 20])])
def test_ggn_and_fisher_match_their_dense_definitions(mlp_problem, cls, dense, sizes):
    model, x, y = mlp_problem
    C = dense(model, CE, x, y)
    op = cls(model, CE, split(x, y, sizes))
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, C @ V, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(C).min() > -1e-12  # both PSD for cross-entropy


def test_ggn_equals_hessian_for_linear_model_with_mse():
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randn(30, 2, dtype=torch.float64)
    V = _block(10)
    torch.testing.assert_close(GGNOperator(model, mse, [(x, y)]) @ V, HessianOperator(model, mse, [(x, y)]) @ V)


def test_float32_parameters_and_dtype_override(mlp_problem):
    model, x, y = mlp_problem
    H = dense_hessian(model, CE, x, y)
    model32 = small_mlp(dtype=torch.float32)
    op32 = HessianOperator(model32, CE, [(x.float(), y)])
    assert op32.dtype == torch.float32
    V = _block(op32.shape[0])
    rel = (op32 @ V.float()).double().sub(H @ V).norm() / (H @ V).norm()
    assert rel < 1e-5
    op64 = HessianOperator(model32, CE, [(x.float(), y)], dtype=torch.float64)
    assert op64.dtype == torch.float64
    assert next(model32.parameters()).dtype == torch.float32  # the user's model is not cast
    torch.testing.assert_close(op64 @ V, H @ V, rtol=1e-6, atol=1e-8)  # same weights up to fp32 rounding


def test_to_scipy_matches(mlp_problem):
    model, x, y = mlp_problem
    op = HessianOperator(model, CE, [(x, y)])
    V = _block(op.shape[0])
    lin = op.to_scipy()
    assert lin.shape == op.shape
    torch.testing.assert_close(torch.from_numpy(lin @ V.numpy()), op @ V)
    torch.testing.assert_close(torch.from_numpy(lin.matvec(V[:, 0].numpy())), op @ V[:, 0])


@pytest.mark.parametrize("mode", ["forward-over-reverse", "reverse-over-reverse"])
def test_vector_chunks_give_same_block(mlp_problem, mode):
    model, x, y = mlp_problem
    V = _block(sum(p.numel() for p in model.parameters()), b=5)
    full = HessianOperator(model, CE, [(x, y)], hvp_mode=mode) @ V
    chunked = HessianOperator(model, CE, [(x, y)], hvp_mode=mode, vmap_chunk_size=2) @ V
    torch.testing.assert_close(full, chunked, rtol=1e-12, atol=1e-13)


def test_model_put_in_eval_mode():
    model = small_cnn().train()
    HessianOperator(model, CE, [classification_data(4, (2, 6, 6))])
    assert not model.training
