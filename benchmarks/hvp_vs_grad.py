"""Per-vector cost of curvature products in blocks of b vectors, against a gradient and against
the graph-reuse floor, side by side in one run.

Floor (DESIGN.md): PyHessian's product, one gradient graph g = grad(loss, params,
create_graph=True) built once and grad(g, params, v, retain_graph=True) per vector. Goal: a block
of 16 costs <= 1.2x the floor per vector, and a block never costs more per vector than a single
product. Models: the paper's tanh-MLP (7,030), a ~100k MLP, a CNN with ReLU and one with
BatchNorm in eval mode. The operators keep each batch's graph across products (the timed
repeats run through it) unless the column says graph_cache_gb=0.
Usage: python benchmarks/hvp_vs_grad.py [--device cuda] [--dtype float64]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from pipeline.curvature import HessianOperator

from common import best_time, digits_problem

BLOCKS = (1, 8, 16, 32)


def small_cnn(batchnorm: bool) -> nn.Module:
    """3 conv layers + linear head on 3x32x32 inputs (ReLU; BatchNorm after each conv if asked)."""

    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1),
            *([nn.BatchNorm2d(cout)] if batchnorm else []),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    torch.manual_seed(0)
    model = nn.Sequential(
        *stage(3, 16), *stage(16, 32), *stage(32, 64), nn.Flatten(), nn.Linear(64 * 4 * 4, 10)
    )
    if batchnorm:  # non-trivial running statistics, as after training
        model(torch.randn(256, 3, 32, 32))
    return model.eval()


def problems():
    for widths, batch in (((256, 20, 20, 20, 20, 20, 10), 500), ((256, 256, 128, 10), 500)):
        model, loss_fn, x, y = digits_problem(widths, samples=batch, train_steps=0)
        yield "tanh-MLP " + "-".join(map(str, widths)), model, loss_fn, x, y
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(128, 3, 32, 32, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    yield "CNN (ReLU)", small_cnn(False), nn.functional.cross_entropy, x, y
    yield "CNN (BatchNorm, eval)", small_cnn(True), nn.functional.cross_entropy, x, y


NO_KEPT_GRAPH = " (graph_cache_gb=0)"


def measure(
    model, loss_fn, x, y, device: str, dtype: torch.dtype, columns: list[str]
) -> dict[str, float]:
    model = model.to(device, dtype)
    x, y = x.to(device, dtype), y.to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    params = list(model.parameters())

    def timed(fn, repeats=9):  # the fastest run: the intrinsic cost, not the machine's noise
        return best_time(lambda: (fn(), sync()), repeats=repeats, statistic=min)

    def gradient():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    def floor() -> float:  # the graph lives only while it is timed
        g = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
        vs = [torch.randn_like(p) for p in params]
        return timed(lambda: torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True))

    row = {"params": sum(p.numel() for p in params), "grad": timed(gradient), "floor": floor()}
    for column in columns:
        mode, cache = (
            (column.removesuffix(NO_KEPT_GRAPH), 0)
            if column.endswith(NO_KEPT_GRAPH)
            else (column, None)
        )
        op = HessianOperator(model, loss_fn, [(x, y)], product_mode=mode, graph_cache_gb=cache)
        for b in BLOCKS:
            V = torch.randn(op.shape[0], b, device=device, dtype=dtype)
            row[(column, b)] = timed(lambda op=op, V=V: op @ V, repeats=7) / b
        if column == "auto":
            row["auto choice"] = {b: op.mode_choices[b].mode for b in BLOCKS}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--no-compiled",
        action="store_true",
        help="leave out product_mode=compiled (tens of seconds to compile per width)",
    )
    args = parser.parse_args()
    modes = [
        m
        for m in HessianOperator.PRODUCT_MODES
        if not (args.no_compiled and m in HessianOperator.COSTLY_MODES)
    ]
    columns = ["auto", "auto" + NO_KEPT_GRAPH, *modes]
    dtype = getattr(torch, args.dtype)
    print(
        f"device={args.device} dtype={args.dtype} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
    print(
        "per-vector time / floor (floor = PyHessian graph-reuse product); auto's choice per block "
        "width"
    )
    header = ["model", "params", "grad ms", "floor ms", "floor/grad"] + [
        f"{m} b={b}" for m in columns for b in BLOCKS
    ]
    print("| " + " | ".join(header) + " | auto chose |")
    print("|" + " --- |" * (len(header) + 1))
    for name, model, loss_fn, x, y in problems():
        row = measure(model, loss_fn, x, y, args.device, dtype, columns)
        cells = [
            name,
            f"{row['params']:,}",
            f"{1e3 * row['grad']:.1f}",
            f"{1e3 * row['floor']:.1f}",
            f"{row['floor'] / row['grad']:.2f}",
        ]
        cells += [f"{row[(m, b)] / row['floor']:.2f}" for m in columns for b in BLOCKS]
        choice = ", ".join(f"{b}: {m}" for b, m in row["auto choice"].items())
        print("| " + " | ".join(cells) + f" | {choice} |")


if __name__ == "__main__":
    main()
