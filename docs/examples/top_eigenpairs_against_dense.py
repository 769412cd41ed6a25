"""Top Hessian eigenpairs of a small MLP with Lanczos, checked against the dense Hessian.

    python docs/examples/top_eigenpairs_against_dense.py

The operator never forms H: each product H V reuses one gradient graph per batch. Here D is
small enough to form H densely with torch.func and compare.
"""

import torch

from pipeline.curvature import HessianOperator
from pipeline.linalg import lanczos

torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
).double()
x, y = torch.randn(200, 8, dtype=torch.float64), torch.randint(0, 3, (200,))
loss = torch.nn.functional.cross_entropy
# two batches, sample-weighted
op = HessianOperator(model, loss, [(x[:100], y[:100]), (x[100:], y[100:])])

top = lanczos(op, k=5, tol=1e-8)
print(
    "Lanczos:",
    top.eigenvalues.numpy().round(6),
    f"({top.matvecs} products, residuals <= {float(top.residuals.max()):.1e})",
)

params = dict(model.named_parameters())
flat = torch.cat([p.detach().flatten() for p in params.values()])


def loss_of(vector):
    pieces, start = {}, 0
    for name, p in params.items():
        pieces[name] = vector[start : start + p.numel()].view_as(p)
        start += p.numel()
    return loss(torch.func.functional_call(model, pieces, (x,)), y)


dense = torch.func.hessian(loss_of)(flat)
exact = torch.linalg.eigvalsh(dense)
exact = exact[torch.argsort(exact.abs(), descending=True)[:5]]
print("dense:  ", exact.numpy().round(6))
assert torch.allclose(top.eigenvalues, exact, rtol=1e-6), "Lanczos and the dense Hessian disagree"
