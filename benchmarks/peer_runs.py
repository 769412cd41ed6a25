"""The peers' eigensolvers, trace and density estimators, called the way their docs show, on a
list of (inputs, targets) batches; each returns (wall s, products, result) with its own products
counted. Shared by eigensolvers.py and peers.py (pip install -e .[bench])."""

from __future__ import annotations

import importlib
import time

import numpy as np
import torch
from torch import nn

from common import count_calls


def true_residuals(op, values, vectors: torch.Tensor) -> np.ndarray:
    """||H v_i - lambda_i v_i|| / |lambda_i| for unit v_i with the reference operator ``op``
    (k extra products, never timed); vectors (D, k) or (k, D)."""
    V = vectors.to(op.dtype)
    V = V if V.shape[0] == op.shape[0] else V.T
    V = V / V.norm(dim=0)
    values = torch.as_tensor(np.asarray(values), dtype=op.dtype)
    return ((op @ V - V * values).norm(dim=0) / values.abs()).numpy()


def _pyhessian(model, batches):
    # the package re-exports a class of that name
    module = importlib.import_module("pyhessian.hessian")
    criterion = nn.CrossEntropyLoss()
    if len(batches) == 1:  # one batch: PyHessian keeps its gradient graph for every product
        return module, module.hessian(model, criterion, data=batches[0], cuda=False)
    return module, module.hessian(model, criterion, dataloader=batches, cuda=False)


def _pyhessian_counted(model, batches, call):
    module = importlib.import_module("pyhessian.hessian")
    start = time.perf_counter()
    original = module.hessian_vector_product
    calls = count_calls(module, "hessian_vector_product")
    try:
        _, computer = _pyhessian(model, batches)
        loader_calls = count_calls(computer, "dataloader_hv_product")
        out = call(computer)
    finally:
        module.hessian_vector_product = original
    return time.perf_counter() - start, calls["n"] + loader_calls["n"], out


def pyhessian_top(model, batches, k, tol):
    """PyHessian 0.1's deflated power iteration (its stopping rule: relative change < tol)."""
    elapsed, products, (values, vectors) = _pyhessian_counted(
        model, batches, lambda h: h.eigenvalues(top_n=k, tol=tol, maxIter=100)
    )
    flat = torch.stack([torch.cat([t.reshape(-1) for t in vec]) for vec in vectors], dim=1)
    return elapsed, products, (np.asarray(values), flat)


def pyhessian_trace(model, batches, matvecs):
    elapsed, products, samples = _pyhessian_counted(
        model, batches, lambda h: h.trace(maxIter=matvecs, tol=float("-inf"))
    )
    return elapsed, products, float(np.mean(samples))


def pyhessian_density(model, batches, steps, probes):
    elapsed, products, (nodes, weights) = _pyhessian_counted(
        model, batches, lambda h: h.density(iter=steps, n_v=probes)
    )
    return elapsed, products, (np.asarray(nodes), np.asarray(weights))


def _eigenthings_op(model, batches, loss_fn):
    import hessian_eigenthings as he

    op = he.HessianOperator(model, batches, he.supervised_loss(loss_fn))
    return he, op, count_calls(op, "matvec")


def eigenthings_top(model, batches, loss_fn, k, tol, max_iter):
    start = time.perf_counter()
    he, op, calls = _eigenthings_op(model, batches, loss_fn)
    result = he.lanczos(op, k=k, tol=tol, max_iter=max_iter, reorthogonalize=True, seed=0)
    return (
        time.perf_counter() - start,
        calls["n"],
        (result.eigenvalues.detach().cpu().numpy(), result.eigenvectors.detach()),
    )


def eigenthings_trace(model, batches, loss_fn, matvecs):
    start = time.perf_counter()
    he, op, calls = _eigenthings_op(model, batches, loss_fn)
    result = he.hutch_plus_plus(op, num_matvecs=matvecs, seed=0)
    return time.perf_counter() - start, calls["n"], float(result.estimate)


def eigenthings_density(model, batches, loss_fn, steps, probes):
    start = time.perf_counter()
    he, op, calls = _eigenthings_op(model, batches, loss_fn)
    result = he.spectral_density(op, num_runs=probes, lanczos_steps=steps, seed=0)
    return time.perf_counter() - start, calls["n"], result


def _curvlinops_op(model, batches):
    from curvlinops import HessianLinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    # curvlinops reads the reduction off a loss module
    return HessianLinearOperator(
        model, nn.CrossEntropyLoss(), params, batches, progressbar=False, check_deterministic=False
    )


def curvlinops_top(model, batches, k, tol):
    """curvlinops' HessianLinearOperator with scipy's eigsh (ARPACK), as its examples do."""
    from scipy.sparse.linalg import eigsh

    start = time.perf_counter()
    scipy_op = _curvlinops_op(model, batches).to_scipy()
    calls = count_calls(scipy_op, "_matvec")
    values, vectors = eigsh(scipy_op, k=k, which="LM", tol=tol)
    return time.perf_counter() - start, calls["n"], (values, torch.from_numpy(vectors))


def curvlinops_trace(model, batches, matvecs):
    from curvlinops import hutchpp_trace

    start = time.perf_counter()
    op = _curvlinops_op(model, batches)
    columns = {"n": 0}
    matmat = op._matmat

    def counted(X):
        columns["n"] += X[0].shape[-1]  # a list of (*shape_i, K) tensors: K products
        return matmat(X)

    op._matmat = counted
    estimate = hutchpp_trace(op, matvecs)
    return time.perf_counter() - start, columns["n"], float(estimate)
