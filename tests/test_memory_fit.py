"""algorithm.product_width=auto and data.batch_size=auto: the widest product, the largest batch,
that fits a worker's memory, measured on the first batch; a tight budget is kept by the products
that follow, one that cannot hold a single column (sample) is refused naming the fix, and a run at
the chosen sizes gives the eigenvalues of a run at sizes set by hand (products depend on neither:
test_seigh, test_curvature)."""

import logging

import pytest
import torch
from torch import nn

from pipeline.curvature import HessianOperator
from pipeline.curvature.memory_fit import current_bytes, linear_need, peak_above_now
from pipeline.errors import InputError, OperationError
from pipeline.runner import run
from pipeline.sharding import ProblemSpec

from deployment import SMALL, compose_overrides


def _wide_mlp_operator(**options) -> HessianOperator:
    """D = 333,322 in float32: a product's column is megabytes, far above the allocator's noise."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(128, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 10)
    )
    x, y = torch.randn(64, 128), torch.randint(0, 10, (64,))
    data = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 64, 32)]
    return HessianOperator(model, nn.CrossEntropyLoss(), data, **options)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


def test_products_at_the_auto_width_stay_within_a_tight_budget():
    op = _wide_mlp_operator()  # product_mode=auto: the widest need of its modes
    D = op.shape[0]
    free = op.width_fit(32, None, 0)  # the node's memory: far more than 32 columns need
    assert free.size == 32 and free.per_unit_bytes >= 4 * D  # at least the column's V
    fixed = 2 * D * 4  # a block of two columns held beside the products
    budget = current_bytes(op.device) + fixed + free.graph_bytes + free.base_bytes
    budget += 5 * free.per_unit_bytes
    fit = op.width_fit(32, budget, fixed)
    assert 2 <= fit.size < 32 and fit.peak_bytes(fit.size) <= budget < fit.peak_bytes(fit.size + 1)
    held_block = torch.zeros(D, 2)  # the fixed bytes, really held

    def two_products() -> None:  # each product's result dropped, as a measurement's block holds it
        for _ in range(2):
            op @ torch.randn(D, fit.size)

    peak = peak_above_now(two_products, op.device)
    del held_block
    assert _status_bytes("VmHWM") <= budget, (peak, fit.describe())


@pytest.mark.parametrize(
    "room, largest, probed",
    [
        (10_000, 32, [2, 8]),  # room for the second probe
        (300, 32, [2, 5]),  # the second probe as large as the room allows were all per-unit
        (130, 32, [2, 1]),  # 3 might not fit: the second probe below the first
        (100, 32, [2, 1]),  # not even the first fits: the answer lies below it
        (10_000, 2, [2]),  # the first is the largest
    ],
)
def test_the_memory_model_is_probed_within_the_room(room, largest, probed):
    """m(s) = 100 + 10 s measured at sizes that fit ``room`` (all but the first probe), recovered
    exactly from any two of them."""
    asked = []

    def need_at(size: int) -> int:
        asked.append(size)
        return 100 + 10 * size

    base, per_unit = linear_need(need_at, room, largest, (2, 8))
    assert asked == probed
    assert (base, per_unit) == ((100, 10) if len(probed) == 2 else (120, 0))


def test_a_budget_below_one_column_is_refused_naming_the_batch_size():
    op = _wide_mlp_operator(product_mode="graph-reuse")
    with pytest.raises(OperationError, match=r"data\.batch_size.*cluster\.worker_memory_gb"):
        op.width_fit(32, current_bytes(op.device) // 2, 0)  # less than it holds already


def test_a_run_at_the_auto_width_equals_one_at_that_width_set_by_hand(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline"):
        auto = run(compose_overrides([*SMALL, "algorithm.product_width=auto"]), tmp_path / "auto")
    fit = auto["plan"]["product_width"]
    assert 1 <= fit["size"] <= 10 and fit["budget_bytes"] > 0
    assert f"product_width=auto: {fit['size']} of 10 columns per product" in caplog.text
    assert auto["config"]["algorithm"]["product_width"] == "auto"  # as asked; the plan: as run
    assert len(auto["eigenvalues"]) == 4 and auto["matvecs"] == auto["plan"]["matvecs"]
    # the workers' memory planned as the fit predicts it at the chosen width
    assert auto["plan"]["worker_bytes"] == (
        fit["held_bytes"]
        + fit["graph_bytes"]
        + fit["fixed_bytes"]
        + fit["base_bytes"]
        + fit["per_unit_bytes"] * fit["size"]
    )


def _conv_net() -> nn.Module:
    """D = 13,994: a sample's activations (16 channels of 32 x 32, and their tangents) are
    hundreds of KiB, so a batch's need grows well above the allocator's noise."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(256, 3, 32, 32, generator=generator), torch.randint(
        0, 10, (256,), generator=generator
    )


def _conv_operator(batch_size: int | str, **options) -> HessianOperator:
    spec = ProblemSpec(_conv_net, _images, batch_size=batch_size, operator_options=options)
    return spec.build()


def test_batches_at_the_auto_size_stay_within_a_tight_budget():
    op = _conv_operator("auto", graph_cache_gb=0)  # product_mode=auto: the widest need of its modes
    V = torch.randn(op.shape[0], 2)
    before = op @ V
    free = op.batch_fit(2, None, 0)
    assert free.size == free.largest == 256 and free.per_unit_bytes > 2 * 16 * 32 * 32 * 4
    fixed = 2 * op.shape[0] * 4
    budget = current_bytes(op.device) + fixed + free.base_bytes + 40 * free.per_unit_bytes
    fit = op.batch_fit(2, budget, fixed)
    assert 16 <= fit.size < 256 and fit.peak_bytes(fit.size) <= budget < fit.peak_bytes(
        fit.size + 1
    )
    op.rebatch(fit.size)
    assert [n for _, _, n in op.batches()][0] == fit.size and op.num_samples == 256
    peak = peak_above_now(lambda: [op @ V for _ in range(2)], op.device)
    assert _status_bytes("VmHWM") <= budget, (peak, fit.describe())
    torch.testing.assert_close(op @ V, before, rtol=1e-4, atol=1e-6)  # float32: the batch order


def test_a_rank_without_the_store_blocks_probes_as_the_rank_with_them(monkeypatch):
    """Probes sized for ``probe_fixed_bytes`` (rank 0's blocks), the fit for the rank's own."""
    import pipeline.curvature.memory_fit as memory_fit

    widths = []
    product = memory_fit.one_batch_product
    monkeypatch.setattr(
        memory_fit,
        "one_batch_product",
        lambda op, mode, batch, width: widths.append(width) or product(op, mode, batch, width),
    )
    op = _conv_operator(64, product_mode="reverse-over-reverse", graph_cache_gb=0)
    free = op.width_fit(8, None, 0)
    budget = current_bytes(op.device) + free.base_bytes + 20 * free.per_unit_bytes
    blocks = budget - current_bytes(op.device)  # with them, not even 2 columns fit
    widths.clear()
    assert op.width_fit(8, budget, 0).size == 8 and widths == [2, 2, 8]  # warm-up, probes
    widths.clear()
    fit = op.width_fit(8, budget, 0, probe_fixed_bytes=blocks)
    assert widths == [2, 2, 1] and fit.fixed_bytes == 0 and fit.size >= 2


def test_a_budget_below_one_sample_is_refused_naming_the_width():
    op = _conv_operator("auto", product_mode="graph-reuse")
    with pytest.raises(OperationError, match=r"algorithm\.product_width.*worker_memory_gb"):
        op.batch_fit(4, current_bytes(op.device) // 2, 0)


def test_an_operator_given_its_batches_cannot_be_rebatched():
    op = _wide_mlp_operator()
    with pytest.raises(InputError, match=r"data\.batch_size to a number"):
        op.batch_fit(2, None, 0)


def test_a_run_at_the_auto_batch_equals_one_at_that_batch_set_by_hand(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline"):
        auto = run(
            compose_overrides([*SMALL, "data.batch_size=auto", "algorithm.product_width=auto"]),
            tmp_path / "auto",
        )
    batch, width = auto["plan"]["batch_size"], auto["plan"]["product_width"]
    assert batch["size"] == 100 and batch["unit"] == "sample"  # a digits subset: all fit
    assert "data.batch_size=auto: 100 of 100 samples per batch" in caplog.text
    assert auto["config"]["data"]["batch_size"] == "auto"  # as asked; the plan: as run
    by_hand = run(
        compose_overrides(
            [*SMALL, "data.batch_size=100", f"algorithm.product_width={width['size']}"]
        ),
        tmp_path / "by_hand",
    )
    assert auto["eigenvalues"] == pytest.approx(by_hand["eigenvalues"], rel=1e-12)
