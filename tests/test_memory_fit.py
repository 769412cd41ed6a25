"""algorithm.product_width=auto: the widest product that fits a worker's memory, measured on the
first batch; a tight budget is kept by the products that follow, one that cannot hold a single
column is refused naming the fix, and a run at the chosen width gives the eigenvalues of a run at
a width set by hand (products do not depend on their width: test_seigh)."""

import logging

import pytest
import torch
from torch import nn

from pipeline.curvature import HessianOperator
from pipeline.curvature.memory_fit import current_bytes, peak_above_now
from pipeline.errors import OperationError
from pipeline.runner import run

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
    assert free.width == 32 and free.per_column_bytes >= 4 * D  # at least the column's V
    fixed = 2 * D * 4  # a block of two columns held beside the products
    budget = current_bytes(op.device) + fixed + free.graph_bytes + free.base_bytes
    budget += 5 * free.per_column_bytes
    fit = op.width_fit(32, budget, fixed)
    assert 2 <= fit.width < 32 and fit.peak_bytes(fit.width) <= budget < fit.peak_bytes(
        fit.width + 1
    )
    held_block = torch.zeros(D, 2)  # the fixed bytes, really held
    peak = peak_above_now(lambda: [op @ torch.randn(D, fit.width) for _ in range(2)], op.device)
    del held_block
    assert _status_bytes("VmHWM") <= budget, (peak, fit.describe())


def test_a_budget_below_one_column_is_refused_naming_the_batch_size():
    op = _wide_mlp_operator(product_mode="graph-reuse")
    with pytest.raises(OperationError, match=r"data\.batch_size.*cluster\.worker_memory_gb"):
        op.width_fit(32, current_bytes(op.device) // 2, 0)  # less than it holds already


def test_a_run_at_the_auto_width_equals_one_at_that_width_set_by_hand(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline"):
        auto = run(compose_overrides([*SMALL, "algorithm.product_width=auto"]), tmp_path / "auto")
    fit = auto["plan"]["product_width"]
    assert 1 <= fit["width"] <= 10 and fit["budget_bytes"] > 0
    assert f"product_width=auto: {fit['width']} of 10 columns per product" in caplog.text
    assert auto["config"]["algorithm"]["product_width"] == "auto"  # as asked; the plan: as run
    assert len(auto["eigenvalues"]) == 4 and auto["matvecs"] == auto["plan"]["matvecs"]
