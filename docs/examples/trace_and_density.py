"""Trace (Hutch++) and spectral density (stochastic Lanczos quadrature) of a Hessian, checked
against the dense matrix's trace and eigenvalue range.

    python docs/examples/trace_and_density.py
"""

import torch
from scipy.integrate import trapezoid

from pipeline.curvature import GGNOperator
from pipeline.linalg import hutchpp_trace, slq_density

torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)
).double()
x, y = torch.randn(300, 10, dtype=torch.float64), torch.randint(0, 4, (300,))
# the GGN is positive semi-definite
op = GGNOperator(model, torch.nn.functional.cross_entropy, [(x, y)])

dense = op @ torch.eye(op.shape[0], dtype=torch.float64)
trace = hutchpp_trace(op, num_matvecs=120, seed=0)
print(
    f"trace: Hutch++ {trace.estimate:.4f} +- {trace.stderr:.4f}, dense {float(dense.trace()):.4f} "
    f"({trace.matvecs} products)"
)
assert abs(trace.estimate - float(dense.trace())) < 4 * trace.stderr + 1e-8

density = slq_density(op, num_probes=8, num_steps=40, seed=0)
mass = trapezoid(density.density, density.grid)
top = float(torch.linalg.eigvalsh(dense).max())
print(
    f"density: integrates to {mass:.3f}; support up to {density.grid.max():.3f}, largest "
    f"eigenvalue {top:.3f}"
)
assert abs(mass - 1) < 0.05 and density.grid.max() >= 0.95 * top
