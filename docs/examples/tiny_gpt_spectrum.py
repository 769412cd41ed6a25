"""A tiny GPT trained on a corpus this script makes, then the top-20 eigenpairs of its Hessian and
its layer-wise spectrum (top eigenvalue and trace of every module's diagonal block).

    python docs/examples/tiny_gpt_spectrum.py [out_dir]

The corpus is a noisy counting language (each token is the previous one plus 1 modulo 16, one in
ten replaced at random), which the model learns in a few hundred Adam steps. The top-20 pairs come
from Lanczos on the next-token loss over 32 held sequences (`pipeline.runner.run`), the layer-wise
spectrum from `task=layerwise`; both are checked: the residuals against the tolerance, and the sum
of the blocks' traces against the whole Hessian's Hutch++ trace.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from pipeline.config import register
from pipeline.data import TokenSequences
from pipeline.job import compile_job
from pipeline.layerwise import layerwise
from pipeline.models.gpt import tiny_gpt
from pipeline.models.losses import CausalLMLoss
from pipeline.runner import run

out = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_gpt_spectrum")
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
tokens = (np.arange(40_000) + rng.integers(0, 16)) % 16
noise = rng.random(tokens.size) < 0.1
tokens[noise] = rng.integers(0, 16, noise.sum())
np.save(out / "corpus.npy", tokens.astype(np.int32))

# train: 300 Adam steps on batches of 16 sequences of 16 tokens
sizes = {"vocab_size": 16, "context": 16, "layers": 1, "width": 16, "heads": 2}
torch.manual_seed(0)
model, loss_fn = tiny_gpt(**sizes), CausalLMLoss()
data = TokenSequences(out / "corpus.npy", context=16)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)
batches = iter(loader)
for _ in range(300):
    try:
        inputs, targets = next(batches)
    except StopIteration:
        batches = iter(loader)
        inputs, targets = next(batches)
    loss = loss_fn(model(inputs), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained: next-token loss {loss.item():.3f} after 300 steps (uniform: {np.log(16):.3f})")
assert loss.item() < 1.0
torch.save(model.state_dict(), out / "gpt.pt")

register()
overrides = [
    "model=tiny_gpt",
    *[f"model.{key}={value}" for key, value in sizes.items()],
    f"model.checkpoint={out / 'gpt.pt'}",
    "data=tokens",
    f"data.root={out / 'corpus.npy'}",
    "data.context=16",
    "data.subset=32",
    "cluster=none",
    "dtype=float64",
    "output.plots=true",
]
config_dir = str(Path(__file__).resolve().parents[2] / "pipeline" / "conf")
with initialize_config_dir(config_dir=config_dir, version_base=None):
    top = compose("config", overrides=[*overrides, "algorithm=lanczos", "algorithm.k=20"])
    blocks = compose(
        "config",
        overrides=[
            *overrides,
            "task=layerwise",
            "algorithm=lanczos",
            "algorithm.k=3",
            "layerwise.dense_max_dim=600",
        ],
    )
    whole = compose("config", overrides=[*overrides, "algorithm=trace"])

for name in ("top20", "trace"):
    (out / name).mkdir(exist_ok=True)
record = run(top, out / "top20")
print(
    f"top-20 Hessian eigenvalues of D={record['num_params']:,}: "
    f"{np.round(record['eigenvalues'][:5], 4)} ..."
)
assert all(record["converged"])

spectrum = layerwise(compile_job(blocks), out / "layerwise")
for block in spectrum["blocks"]:
    print(
        f"  {block['name']:<22} D={block['dim']:>5}  top {block['eigenvalues'][0]:9.4f}  "
        f"trace {block['trace']:9.4f} +- {block['trace_stderr']:.4f} ({block['method']})"
    )
trace = run(whole, out / "trace")
summed = sum(b["trace"] for b in spectrum["blocks"])
spread = 4 * (trace["trace_stderr"] + sum(b["trace_stderr"] for b in spectrum["blocks"]))
print(
    f"sum of the blocks' traces {summed:.4f}, whole Hessian {trace['trace']:.4f} "
    f"+- {trace['trace_stderr']:.4f}"
)
assert abs(summed - trace["trace"]) <= spread + 1e-6
print(f"figures: {out / 'layerwise' / 'layerwise.png'}, {out / 'top20'}")
