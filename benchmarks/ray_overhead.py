"""Ray (N workers) vs in-process HVP time on a ~1M-parameter model, and the all-reduce share.

Goal (DESIGN.md): all-reduce <= 10% of HVP time with 2 workers.
Usage: python benchmarks/ray_overhead.py [--workers 2] [--block 1] [--gpus-per-worker 0]
"""

from __future__ import annotations

import argparse
import functools
import statistics

import torch

from pipeline.curvature import HessianOperator
from pipeline.distributed import ProblemSpec, RayOperator, init_ray

from common import best_time, digits_problem


def model_factory(widths):
    return digits_problem(widths, samples=10, train_steps=0)[0]


def dataset_factory(samples):
    _, _, x, y = digits_problem((256, 10), samples=samples, train_steps=0)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--block", type=int, default=1)
    parser.add_argument("--gpus-per-worker", type=float, default=0)
    args = parser.parse_args()
    widths = (256, 1024, 768, 10)
    x, y = dataset_factory(args.samples)
    spec = ProblemSpec(
        functools.partial(model_factory, widths),
        functools.partial(dataset_factory, args.samples),
        batch_size=args.batch_size,
    )
    device = "cuda" if args.gpus_per_worker else "cpu"
    local = HessianOperator(
        model_factory(widths).to(device),
        torch.nn.functional.cross_entropy,
        [
            (xb.to(device), yb.to(device))
            for xb, yb in zip(torch.split(x, args.batch_size), torch.split(y, args.batch_size))
        ],
    )
    V = torch.randn(local.shape[0], args.block)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t_local = best_time(lambda: (local @ V.to(device), sync()))
    started = init_ray(
        num_cpus=max(args.workers, 2), num_gpus=int(args.workers * args.gpus_per_worker) or None
    )
    cpus = max(1, torch.get_num_threads() // args.workers) if device == "cpu" else 1
    with RayOperator(
        spec, num_workers=args.workers, cpus_per_worker=cpus, gpus_per_worker=args.gpus_per_worker
    ) as op:
        shares = []

        def product():
            op @ V
            # the rank that computed longest waits least in the collective: its all-reduce time is
            # the communication itself, the others' also include waiting for it (load imbalance)
            slowest = max(op.last_timings, key=lambda t: t["compute_s"])
            shares.append(slowest["allreduce_s"] / (slowest["compute_s"] + slowest["allreduce_s"]))

        t_ray = best_time(product)
        compute = statistics.median(t["compute_s"] for t in op.last_timings)
        allreduce = statistics.median(t["allreduce_s"] for t in op.last_timings)
    if started:
        import ray

        ray.shutdown()
    print(
        f"D={local.shape[0]}, N={args.samples}, batch={args.batch_size}, block={args.block}, "
        f"device={device}, "
        f"workers={args.workers} x {cpus} threads, in-process threads={torch.get_num_threads()}"
    )
    print(
        f"in-process HVP: {t_local * 1e3:.1f} ms | Ray HVP: {t_ray * 1e3:.1f} ms | Ray / "
        f"in-process: {t_ray / t_local:.2f}"
    )
    print(
        f"inside workers (last call): compute {compute * 1e3:.1f} ms, all-reduce "
        f"{allreduce * 1e3:.1f} ms; "
        f"all-reduce share of HVP (median over calls): {statistics.median(shares):.1%}"
    )
    print(f"driver + object store overhead per call: {(t_ray - compute - allreduce) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
