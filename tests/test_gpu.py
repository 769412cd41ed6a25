"""GPU checks (marked gpu; skipped without CUDA): CUDA products equal CPU ones, NCCL all-reduce."""

import functools

import pytest
import torch
from torch import nn

from pipeline.curvature import GGNOperator, HessianOperator
from pipeline.distributed import ProblemSpec, RayOperator
from pipeline.linalg import lanczos

from helpers import classification_data, data_factory, mlp_factory, small_cnn, split

pytestmark = pytest.mark.gpu
CE = nn.functional.cross_entropy


@pytest.mark.parametrize(
    "cls, mode",
    [
        (cls, mode)
        for cls in (HessianOperator, GGNOperator)
        for mode in ("auto", *cls.PRODUCT_MODES)
    ],
)
def test_cuda_products_equal_cpu_float64(cls, mode):
    x, y = classification_data(20, (2, 6, 6))
    cpu = cls(small_cnn(), CE, split(x, y, [7, 13]), product_mode=mode)
    gpu = cls(small_cnn().cuda(), CE, split(x, y, [7, 13]), product_mode=mode)
    assert gpu.device.type == "cuda"
    V = torch.randn(cpu.shape[0], 4, dtype=torch.float64)
    torch.testing.assert_close((gpu @ V.cuda()).cpu(), cpu @ V, rtol=1e-10, atol=1e-12)


def test_lanczos_on_cuda_operator():
    x, y = classification_data(40, (6,))
    op = HessianOperator(mlp_factory().cuda(), CE, [(x, y)])
    reference = lanczos(HessianOperator(mlp_factory(), CE, [(x, y)]), 4, tol=1e-10)
    result = lanczos(op, 4, tol=1e-10)
    torch.testing.assert_close(result.eigenvalues, reference.eigenvalues, rtol=1e-9, atol=0)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 1, reason="needs a GPU"
)
def test_ray_workers_on_gpu_use_nccl(ray_session):
    spec = ProblemSpec(
        functools.partial(mlp_factory), functools.partial(data_factory, n=61), CE, batch_size=16
    )
    local = HessianOperator(mlp_factory(), CE, split(*data_factory(61), [61]))
    V = torch.randn(local.shape[0], 2, dtype=torch.float64)
    workers = min(2, torch.cuda.device_count())
    with RayOperator(spec, num_workers=workers, gpus_per_worker=1) as op:
        assert all(info["device"] == "cuda" for info in op.group.info)
        torch.testing.assert_close(op @ V, local @ V, rtol=1e-10, atol=1e-12)
