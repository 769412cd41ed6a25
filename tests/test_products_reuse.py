"""Products reuse what does not change at a fixed point: kept graphs and timed mode choices."""

import logging

import pytest
import torch
from torch import nn

from pipeline.curvature import (
    EmpiricalFisherOperator,
    GGNOperator,
    HessianOperator,
    NondeterminismError,
)
from pipeline.curvature.graph_cache import measure_saved_bytes
from pipeline.curvature.mode_choice import known_choice, problem_key

from helpers import classification_data, dense_ggn, dense_hessian, small_cnn, small_mlp, split

CE = nn.functional.cross_entropy
GRAPH_MODES = {
    HessianOperator: ["graph-reuse", "reverse-over-reverse"],
    GGNOperator: ["graph-reuse"],
    EmpiricalFisherOperator: ["graph-reuse"],
}


class ForwardCounter:
    """Counts forward passes of a module (every graph build runs one)."""

    def __init__(self, model: nn.Module):
        self.calls = 0
        model.register_forward_hook(lambda *_: setattr(self, "calls", self.calls + 1))


def _problem(seed=0):
    model = small_cnn(seed)
    x, y = classification_data(40, (2, 6, 6), seed=seed)
    return model, x, y


@pytest.mark.parametrize(
    "cls,mode", [(cls, mode) for cls, modes in GRAPH_MODES.items() for mode in modes]
)
def test_kept_graphs_give_the_same_products_and_skip_the_forward(cls, mode):
    model, x, y = _problem()
    batches = split(x, y, [16, 16, 8])
    V = torch.randn(
        sum(p.numel() for p in model.parameters()),
        3,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1),
    )
    rebuilt = cls(model, CE, batches, product_mode=mode, graph_cache_gb=0)
    kept = cls(model, CE, batches, product_mode=mode)
    counter = ForwardCounter(model)
    first = kept @ V
    assert counter.calls == 3 and kept.graphs.used_bytes > 0
    again = kept @ V[:, :1]
    assert counter.calls == 3, "a kept graph is reused: no forward pass on the second product"
    torch.testing.assert_close(again[:, 0], first[:, 0], rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(first, rebuilt @ V, rtol=1e-12, atol=1e-14)
    assert counter.calls == 6 and rebuilt.graphs.used_bytes == 0


def test_kept_graphs_match_dense_truth_over_many_products():
    model, x, y = _problem(2)
    H, G = dense_hessian(model, CE, x, y), dense_ggn(model, CE, x, y)
    for cls, dense in ((HessianOperator, H), (GGNOperator, G)):
        op = cls(model, CE, split(x, y, [25, 15]), product_mode="graph-reuse")
        for column in range(0, H.shape[0], 17):  # many products through the same two kept graphs
            e = torch.zeros(H.shape[0], dtype=torch.float64)
            e[column] = 1
            torch.testing.assert_close(op @ e, dense[:, column], rtol=1e-10, atol=1e-12)


def test_graph_budget_keeps_only_what_fits():
    model, x, y = _problem()
    batches = split(x, y, [20, 20])
    op = HessianOperator(model, CE, batches[:1], product_mode="graph-reuse")
    op @ torch.ones(op.shape[0], dtype=torch.float64)
    one_batch = op.graphs.used_bytes
    budget_gb = 1.5 * one_batch / 2**30  # room for one batch's graph, not two
    op = HessianOperator(model, CE, batches, product_mode="graph-reuse", graph_cache_gb=budget_gb)
    counter = ForwardCounter(model)
    for _ in range(3):
        op @ torch.ones(op.shape[0], dtype=torch.float64)
    assert op.graphs.used_bytes == one_batch <= budget_gb * 2**30
    assert counter.calls == 2 + 1 + 1, (
        "the first product builds both graphs, later ones rebuild only the second batch's"
    )


def test_a_data_loader_is_never_cached():
    model, x, y = _problem()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=20)
    op = HessianOperator(model, CE, loader, product_mode="graph-reuse")
    op @ torch.ones(op.shape[0], dtype=torch.float64)
    assert op.graphs.used_bytes == 0 and not op.graphs._entries


def test_saved_bytes_count_what_autograd_keeps():
    a = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    _, saved = measure_saved_bytes(lambda: (a.sin() * a.cos()).sum())
    # a (for sin and cos), sin(a), cos(a): three distinct 8 kB tensors
    assert 3 * 8000 <= saved <= 4 * 8000


def test_determinism_check_rebuilds_its_graphs():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2).double()

        def forward(self, x):
            # the same loss and gradient every pass, a random second derivative: only products can
            # tell
            w = self.linear.weight
            return self.linear(x) * (1 + torch.rand(()) * ((w - w.detach()) ** 2).sum())

    x, y = classification_data(10, (4,), classes=2)
    op = HessianOperator(Noisy(), CE, [(x, y)], product_mode="graph-reuse")
    with pytest.raises(NondeterminismError, match="two products of the same vector differ"):
        op.check_determinism()


def test_auto_mode_is_timed_once_per_problem_and_width_and_borrowed_by_near_widths(caplog):
    model = small_mlp()
    x, y = classification_data(30, (6,))
    dim = sum(p.numel() for p in model.parameters())
    block = torch.randn(dim, 16, dtype=torch.float64)
    with caplog.at_level(logging.INFO, logger="pipeline.curvature"):
        first = HessianOperator(model, CE, [(x, y)])
        first @ block
        second = HessianOperator(small_mlp(seed=3), CE, [(x, y)])  # other weights, same problem
        second @ block
        second @ block[:, :10]  # a one-off width near 16: borrows 16's choice
        second @ block[:, :1]  # far from 16: timed
    timings = [r.getMessage() for r in caplog.records if "product_mode=auto" in r.getMessage()]
    assert len(timings) == 2 and "blocks of 16" in timings[0] and "blocks of 1" in timings[1], (
        timings
    )
    assert second.mode_choices[16] is first.mode_choices[16]
    assert second.mode_choices[10].borrowed and second.mode_choices[10].width == 16
    assert not second.mode_choices[1].borrowed and second.mode_choices[1].width == 1
    key = problem_key(first, x)
    assert known_choice(key, 32).width == 16 and known_choice(key, 4) is None
    other_batch = problem_key(first, x[:20])
    assert other_batch != key and known_choice(other_batch, 16) is None


def test_a_costly_mode_is_tried_only_where_the_work_ahead_repays_it():
    from pipeline.curvature.mode_choice import choose_mode

    runs = []

    def product(name, value):
        return lambda: runs.append(name) or torch.full((2, 1), value)

    cheap = {"eager": product("eager", 2.0)}
    costly = {"compiled": product("compiled", 3.0)}
    choice, out = choose_mode(("a",), 1, cheap, lambda: None, costly, repays=lambda seconds: False)
    assert choice.mode == "eager" and "compiled" not in runs and float(out[0, 0]) == 2.0
    asked = []
    choice, _ = choose_mode(
        ("b",), 1, cheap, lambda: None, costly, repays=lambda seconds: asked.append(seconds) or True
    )
    # set-up run, then a warm timed run
    assert runs.count("compiled") == 2 and asked == [choice.seconds["eager"]]
    assert "setup:compiled" in choice.seconds and choice.mode in ("eager", "compiled")


def test_an_operator_tries_compiling_only_when_told_of_enough_work(monkeypatch):
    model = small_mlp()
    x, y = classification_data(20, (6,))
    op = HessianOperator(model, CE, [(x, y)])
    assert not op._repays_setup(1.0, 1)  # no work announced
    op.expect(100)
    assert not op._repays_setup(1.0, 1)  # 100 s ahead: under five 40 s compiles
    op.expect(1000)
    assert op._repays_setup(1.0, 1) and not op._repays_setup(1.0, 8)  # blocks of 8: 125 s ahead


def test_auto_mode_is_not_timed_where_the_announced_work_cannot_repay_it(caplog):
    model = small_mlp()
    x, y = classification_data(20, (6,))
    op = HessianOperator(model, CE, [(x, y)])
    op.expect(3)  # three passes over one batch: timing three modes twice would cost more
    with caplog.at_level(logging.INFO, logger="pipeline.curvature"):
        op @ torch.ones(op.shape[0], 1, dtype=torch.float64)
    assert op.mode_choices[1].mode == "graph-reuse" and not op.mode_choices[1].timed
    assert any("untimed" in r.getMessage() for r in caplog.records)
    busy = HessianOperator(model, CE, [(x, y)])
    busy.expect(100)
    busy @ torch.ones(busy.shape[0], 1, dtype=torch.float64)
    assert busy.mode_choices[1].timed and set(busy.mode_choices[1].seconds) >= {
        "graph-reuse",
        "reverse-over-reverse",
    }


def test_a_first_run_that_imports_modules_is_timed_again_before_the_modes_are_compared():
    """torch.func's first use imports torch._dynamo (seconds).

    That is not forward-over-reverse's cost per product.
    """
    import sys
    import time
    import types

    from pipeline.curvature.mode_choice import choose_mode

    def importing():
        if "fake_lazy_import" not in sys.modules:
            time.sleep(0.3)  # the import
            sys.modules["fake_lazy_import"] = types.ModuleType("fake_lazy_import")
        return torch.ones(2, 1)

    def steady():
        time.sleep(0.02)
        return torch.ones(2, 1)

    try:
        choice, _ = choose_mode(
            ("imports",), 1, {"steady": steady, "importing": importing}, lambda: None
        )
    finally:
        sys.modules.pop("fake_lazy_import", None)
    # without the re-timing: 0.3 s, dropped
    assert choice.mode == "importing" and choice.seconds["importing"] < 0.02
