"""task=layerwise: every parameter block's top eigenvalues equal those of the dense Hessian's
diagonal block (float64, torch.func.hessian) on an MLP and a small CNN, by the job's algorithm for
blocks above layerwise.dense_max_dim and densely below it; traces likewise; a rerun resumes after
the finished blocks; the command line writes layerwise.json and its figure."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.curvature import select_parameters
from pipeline.errors import InputError
from pipeline.job import compile_job
from pipeline.layerwise import layerwise, parameter_blocks

from deployment import compose_overrides
from helpers import dense_hessian, small_cnn

COMMON = [
    "task=layerwise",
    "cluster=none",
    "dtype=float64",
    "algorithm=lanczos",
    "algorithm.k=3",
    "algorithm.tol=1e-10",
    "layerwise.trace_matvecs=40",
    "output.plots=false",
    "curvature.product_mode=reverse-over-reverse",  # no mode timing per block and width
]
MLP = [
    *COMMON,
    "model.widths=[64,12,8,10]",
    "data.image_size=8",
    "data.subset=60",
    "data.batch_size=25",
]
CNN = [
    *COMMON,
    "model=target",
    "model.target._target_=helpers.small_cnn",
    "data=synthetic",
    "data.samples=40",
    "data.input_shape=[2,6,6]",
    "data.num_classes=3",
    "data.batch_size=16",
]


def _dense_blocks(job) -> dict[str, np.ndarray]:
    """Block name -> the sorted (by |.|, descending) eigenvalues of its dense diagonal block."""
    op = job.problem.build(1, 0)
    x = torch.cat([inputs for inputs, _, _ in op.batches()])
    y = torch.cat([targets for _, targets, _ in op.batches()])
    full = dense_hessian(op.model.double(), op.loss_fn, x, y)  # the operator casts; the model not
    sizes = {name: p.numel() for name, p in select_parameters(op.model).items()}
    offsets = dict(zip(sizes, np.cumsum([0, *sizes.values()])))
    blocks = {}
    for name, params in parameter_blocks(op.model, job.layerwise.blocks):
        index = torch.cat([torch.arange(offsets[p], offsets[p] + sizes[p]) for p in params])
        values = torch.linalg.eigvalsh(full[index][:, index])
        blocks[name] = values[torch.argsort(values.abs(), descending=True)].numpy()
    return blocks


@pytest.mark.parametrize("overrides", [MLP, CNN], ids=["mlp", "cnn"])
def test_each_block_s_eigenvalues_and_trace_equal_the_dense_diagonal_block(overrides, tmp_path):
    job = compile_job(compose_overrides([*overrides, "layerwise.dense_max_dim=100"]))
    record = layerwise(job, tmp_path)
    dense = _dense_blocks(job)
    assert [b["name"] for b in record["blocks"]] == list(dense)  # network order
    methods = {b["method"] for b in record["blocks"]}
    assert methods == {"lanczos", "dense"}  # both paths checked
    for block in record["blocks"]:
        truth = dense[block["name"]]
        assert block["dim"] == len(truth)
        np.testing.assert_allclose(block["eigenvalues"], truth[:3], rtol=1e-8, atol=1e-12)
        if block["method"] == "dense":
            assert block["trace"] == pytest.approx(truth.sum(), rel=1e-10, abs=1e-12)
        else:  # Hutch++: within a few standard errors
            assert abs(block["trace"] - truth.sum()) <= 4 * block["trace_stderr"] + 1e-9
    saved = json.loads((tmp_path / "layerwise.json").read_text())
    assert saved["blocks"] == json.loads(json.dumps(record["blocks"]))


def test_a_rerun_resumes_after_the_finished_blocks_and_another_config_starts_over(tmp_path, caplog):
    dense = [*MLP, "layerwise.dense_max_dim=1000"]  # the quickest path: resuming is the point
    job = compile_job(compose_overrides([*dense, 'layerwise.blocks=["1.*","5.*"]']))
    first = layerwise(job, tmp_path)
    assert [b["name"] for b in first["blocks"]] == ["1.*", "5.*"]
    # a run stopped after its first block: only the second is computed again
    partial = {**first, "blocks": first["blocks"][:1]}
    (tmp_path / "layerwise.json").write_text(json.dumps(partial))
    caplog.set_level("INFO", logger="pipeline")
    again = layerwise(job, tmp_path)
    assert "block 1.* already in layerwise.json" in caplog.text
    assert again["blocks"] == first["blocks"]
    other = compile_job(compose_overrides([*dense, 'layerwise.blocks=["1.*"]', "seed=1"]))
    layerwise(other, tmp_path)
    assert "from another configuration" in caplog.text


def test_blocks_by_pattern_and_bad_patterns_are_named():
    model = small_cnn()
    assert parameter_blocks(model, "modules") == [
        ("0", ["0.weight", "0.bias"]),
        ("1", ["1.weight", "1.bias"]),
        ("4", ["4.weight", "4.bias"]),
    ]
    assert parameter_blocks(model, ["*.weight", "*.bias"], ["0.*", "4.*"]) == [
        ("*.weight", ["0.weight", "4.weight"]),
        ("*.bias", ["0.bias", "4.bias"]),
    ]
    with pytest.raises(InputError, match="layerwise.blocks: 'nope.*' selects none"):
        parameter_blocks(model, ["nope.*"])
    with pytest.raises(InputError, match="layerwise.blocks must be 'modules' or a non-empty list"):
        parameter_blocks(model, "layers")


def test_the_command_line_writes_the_record_and_its_figure(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            *[o for o in MLP if o != "output.plots=false"],
            "layerwise.density=true",
            'layerwise.blocks=["3.*","5.*"]',  # the small ones: the command line is the point
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "layerwise.json").read_text())
    assert [b["dim"] for b in record["blocks"]] == [104, 90]
    assert all(len(b["density"]["grid"]) == len(b["density"]["values"]) for b in record["blocks"])
    assert (tmp_path / "layerwise.png").stat().st_size > 10_000
