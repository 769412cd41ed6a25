"""HVP time / gradient time on the same batch, and a block of 8 vs 8 single HVPs.

Goal (DESIGN.md): HVP <= 2.5 x gradient; a block of 8 vectors costs < 8 single HVPs.
Usage: python benchmarks/hvp_vs_grad.py [--device cuda]
"""

from __future__ import annotations

import argparse

import torch

from common import best_time, digits_problem
from pipeline.curvature import HessianOperator


def measure(widths: tuple[int, ...], batch: int, device: str, dtype: torch.dtype) -> dict[str, float]:
    model, loss_fn, x, y = digits_problem(widths, samples=batch, train_steps=0)
    model = model.to(device, dtype)
    x, y = x.to(device, dtype), y.to(device)
    op = HessianOperator(model, loss_fn, [(x, y)])
    ror = HessianOperator(model, loss_fn, [(x, y)], hvp_mode="reverse-over-reverse")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    v1 = torch.randn(op.shape[0], 1, device=device, dtype=dtype)
    v8 = torch.randn(op.shape[0], 8, device=device, dtype=dtype)

    def gradient():
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        sync()

    def timed(fn):
        return best_time(lambda: (fn(), sync()))

    t_grad = timed(gradient)
    t_hvp = timed(lambda: op @ v1)
    t_ror = timed(lambda: ror @ v1)
    t_block = timed(lambda: op @ v8)
    return {
        "params": op.shape[0], "grad_ms": 1e3 * t_grad, "hvp_ms": 1e3 * t_hvp,
        "hvp/grad": t_hvp / t_grad, "ror/grad": t_ror / t_grad,
        "block8_ms": 1e3 * t_block, "block8/(8 single)": t_block / (8 * t_hvp),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"device={args.device} dtype={args.dtype} torch={torch.__version__} threads={torch.get_num_threads()}")
    header = ("widths", "batch", "params", "grad_ms", "hvp_ms", "hvp/grad", "ror/grad", "block8_ms", "block8/(8 single)")
    print(" | ".join(header))
    for widths, batch in [((256, 20, 20, 20, 20, 20, 10), 500), ((256, 256, 128, 10), 500), ((256, 1024, 1024, 10), 256)]:
        row = measure(widths, batch, args.device, dtype)
        print(" | ".join([str(list(widths)), str(batch)] + [f"{row[h]:.3g}" if isinstance(row[h], float) else str(row[h]) for h in header[2:]]))


if __name__ == "__main__":
    main()
