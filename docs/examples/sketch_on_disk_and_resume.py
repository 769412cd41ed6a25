"""SEIGH with its measurements on disk: a run stopped part-way resumes where it stopped, and a
larger sketch reuses the smaller one's columns.

    python docs/examples/sketch_on_disk_and_resume.py
"""

import tempfile
from pathlib import Path

import torch

from pipeline.curvature import HessianOperator
from pipeline.data import batches, build_dataset
from pipeline.linalg import seigh
from pipeline.models import build
from pipeline.store import RunStore

torch.manual_seed(0)
model = build("tanh_mlp")  # the paper's MLP, D = 7,030
x, y = build_dataset({"name": "digits", "subset": 200})
op = HessianOperator(model, torch.nn.functional.cross_entropy, batches(x, y, 100))
url = Path(tempfile.mkdtemp()) / "run.zarr"


class Stop(Exception):
    pass


def stop_after_three_blocks(name, columns, seen=[]):  # noqa: B006  (counts blocks across calls)
    seen.append(columns)
    if len(seen) == 3:
        raise Stop


try:
    seigh(
        op,
        k=5,
        outer=40,
        inner=80,
        block_size=10,
        store=RunStore(url),
        on_block=stop_after_three_blocks,
        residuals=False,
    )
except Stop:
    print("stopped after 3 blocks of 10 products")
resumed = seigh(op, k=5, outer=40, inner=80, block_size=10, store=RunStore(url), residuals=False)
print(
    f"resumed: measured {resumed.info['measured_now']} of 120 columns, top eigenvalues "
    f"{resumed.eigenvalues.numpy().round(4)}"
)
assert resumed.info["measured_now"] == 120 - 30
grown = seigh(op, k=5, outer=60, inner=120, block_size=10, store=RunStore(url), residuals=False)
print(f"grown to 60/120: measured only {grown.info['measured_now']} new columns")
assert grown.info["measured_now"] == 60
