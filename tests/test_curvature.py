"""Curvature operators against dense float64 ground truth."""

import pytest
import torch
from torch import nn

from pipeline.curvature import EmpiricalFisherOperator, GGNOperator, HessianOperator

from helpers import (
    classification_data,
    dense_fisher,
    dense_ggn,
    dense_hessian,
    small_cnn,
    small_mlp,
    split,
)

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


# compiled: test_curvature_cases
EAGER_MODES = [m for m in HessianOperator.PRODUCT_MODES if m not in HessianOperator.COSTLY_MODES]


@pytest.mark.parametrize("mode", ["auto", *EAGER_MODES])
def test_hessian_matches_dense_mlp(mlp_problem, mode):
    model, x, y = mlp_problem
    H = dense_hessian(model, CE, x, y)
    op = HessianOperator(model, CE, split(x, y, [32, 28]), product_mode=mode)
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], rtol=1e-10, atol=1e-12)
    assert op.matvecs == 4


@pytest.mark.parametrize("mode", EAGER_MODES)
def test_hessian_matches_dense_cnn_with_eval_batchnorm(mode):
    model = small_cnn()
    x, y = classification_data(20, (2, 6, 6))
    H = dense_hessian(model, CE, x, y)
    op = HessianOperator(model, CE, split(x, y, [7, 13]), product_mode=mode)
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", EAGER_MODES)
@pytest.mark.parametrize(
    "selector", [["2.weight", "4.bias"], "re:[24]\\..*", lambda n, p: n.startswith("4")]
)
def test_hessian_parameter_subset(mlp_problem, selector, mode):
    model, x, y = mlp_problem
    op = HessianOperator(model, CE, [(x, y)], params=selector, product_mode=mode)
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


@pytest.mark.parametrize("mode", EAGER_MODES)
def test_batch_split_invariance(mlp_problem, mode):
    model, x, y = mlp_problem
    V = _block(sum(p.numel() for p in model.parameters()))
    one = HessianOperator(model, CE, [(x, y)], product_mode=mode) @ V
    ragged = HessianOperator(model, CE, split(x, y, [32, 28]), product_mode=mode) @ V
    many = HessianOperator(model, CE, split(x, y, [1, 17, 40, 2]), product_mode=mode) @ V
    torch.testing.assert_close(one, ragged, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(one, many, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["auto", "forward-over-reverse", "graph-reuse"])
@pytest.mark.parametrize(
    "cls, dense, sizes",
    [(GGNOperator, dense_ggn, [25, 35]), (EmpiricalFisherOperator, dense_fisher, [40, 20])],
)
def test_ggn_and_fisher_match_their_dense_definitions(mlp_problem, cls, dense, sizes, mode):
    model, x, y = mlp_problem
    C = dense(model, CE, x, y)
    op = cls(model, CE, split(x, y, sizes), product_mode=mode)
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, C @ V, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(C).min() > -1e-12  # both PSD for cross-entropy


@pytest.mark.parametrize("ggn_mode", GGNOperator.PRODUCT_MODES)
@pytest.mark.parametrize("product_mode", EAGER_MODES)
def test_ggn_equals_hessian_for_linear_model_with_mse(ggn_mode, product_mode):
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randn(30, 2, dtype=torch.float64)
    V = _block(10)
    ggn = GGNOperator(model, mse, [(x, y)], product_mode=ggn_mode) @ V
    torch.testing.assert_close(
        ggn, HessianOperator(model, mse, [(x, y)], product_mode=product_mode) @ V
    )
    torch.testing.assert_close(ggn, _linear_mse_hessian(x) @ V)


def _linear_mse_hessian(x):
    """2 (1/N) [x 1]^T [x 1] per output, permuted to nn.Linear(4, 2)'s (weight, bias) layout."""
    augmented = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    per_output = 2 * torch.kron(torch.eye(2, dtype=x.dtype), augmented.T @ augmented / x.shape[0])
    order = [0, 1, 2, 3, 5, 6, 7, 8, 4, 9]  # (w0, b0, w1, b1) -> (w0, w1, b0, b1)
    return per_output[order][:, order]


@pytest.mark.parametrize("cls", [HessianOperator, GGNOperator, EmpiricalFisherOperator])
def test_auto_mode_times_every_mode_once_per_block_width_and_agrees(mlp_problem, cls, caplog):
    model, x, y = mlp_problem
    op = cls(model, CE, split(x, y, [32, 28]))
    assert op.product_mode == "auto"
    V = _block(op.shape[0], b=4)
    with caplog.at_level("INFO", logger="pipeline.curvature"):
        first = op @ V
        op @ V
    assert set(op.mode_choices) == {4}
    choice = op.mode_choices[4]
    timed = set(cls.PRODUCT_MODES) - set(cls.COSTLY_MODES)  # no work announced: no compile
    assert set(choice.seconds) == timed and choice.mode == min(
        choice.seconds, key=choice.seconds.get
    )
    assert sum("product_mode=auto for blocks of 4" in r.getMessage() for r in caplog.records) == 1
    for mode in timed:
        torch.testing.assert_close(
            cls(model, CE, split(x, y, [32, 28]), product_mode=mode) @ V,
            first,
            rtol=1e-12,
            atol=1e-14,
        )


def test_one_off_checks_announce_their_products_so_auto_does_not_time_the_modes_for_them(
    mlp_problem,
):
    from pipeline.linalg.aposteriori import frobenius_error, pair_residuals

    model, x, y = mlp_problem
    op = HessianOperator(model, CE, split(x, y, [32, 28]))
    V, values = torch.linalg.qr(_block(op.shape[0], b=3))[0], torch.ones(3, dtype=torch.float64)
    # k products at width k, once: timing three modes would cost more
    pair_residuals(op, values, V, block_size=3)
    frobenius_error(op, values, V, test_vectors=5, seed=0, block_size=5)
    assert {width: choice.timed for width, choice in op.mode_choices.items()} == {
        3: False,
        5: False,
    }
    op.expect(3000)  # much work ahead at a new width: timed
    op @ _block(op.shape[0], b=8)
    assert op.mode_choices[8].timed


def test_unknown_product_mode_names_the_choices(mlp_problem):
    model, x, y = mlp_problem
    with pytest.raises(ValueError, match="product_mode for GGNOperator must be 'auto' or one of"):
        GGNOperator(model, CE, [(x, y)], product_mode="reverse-over-reverse")


def test_list_data_is_prepared_once(mlp_problem):
    model32 = small_mlp(dtype=torch.float32)
    _, x, y = mlp_problem
    op = HessianOperator(model32, CE, [(x, y)], dtype=torch.float64)  # float64 inputs cast once
    V = _block(op.shape[0])
    first = op @ V
    ((inputs, _, _),) = op._prepared
    op @ V
    assert op._prepared[0][0] is inputs
    torch.testing.assert_close(op @ V, first, rtol=0, atol=0)


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
    # same weights up to fp32 rounding
    torch.testing.assert_close(op64 @ V, H @ V, rtol=1e-6, atol=1e-8)


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
    full = HessianOperator(model, CE, [(x, y)], product_mode=mode) @ V
    chunked = HessianOperator(model, CE, [(x, y)], product_mode=mode, vmap_chunk_size=2) @ V
    torch.testing.assert_close(full, chunked, rtol=1e-12, atol=1e-13)


def test_model_put_in_eval_mode():
    model = small_cnn().train()
    HessianOperator(model, CE, [classification_data(4, (2, 6, 6))])
    assert not model.training


@pytest.mark.parametrize("mode", ["forward-over-reverse", "graph-reuse"])
@pytest.mark.parametrize(
    "cls, dense", [(GGNOperator, dense_ggn), (EmpiricalFisherOperator, dense_fisher)]
)
def test_ggn_and_fisher_of_a_parameter_subset_are_blocks_of_the_full_matrix(
    mlp_problem, cls, dense, mode
):
    model, x, y = mlp_problem
    full = dense(model, CE, x, y)
    op = cls(model, CE, split(x, y, [21, 39]), params="4.*", product_mode=mode)
    offset = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("4"))
    eye = torch.eye(op.shape[0], dtype=torch.float64)
    torch.testing.assert_close(op @ eye, full[offset:, offset:], rtol=1e-10, atol=1e-12)
