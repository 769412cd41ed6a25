"""Language models: a tiny GPT's Hessian and GGN products on dict batches of ragged, padded
sequences equal the dense float64 ones (torch.func) to 1e-10, whatever the batch split or the
number of Ray workers (the operator weighs batches by their real tokens); data=tokens and
model=tiny_gpt through the command line; a kernel without a double backward is named with the
fix."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.func import grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.curvature import GGNOperator, HessianOperator
from pipeline.distributed import ProblemSpec, RayOperator
from pipeline.errors import OperationError
from pipeline.models.losses import CausalLMLoss

from helpers import RaggedTokens, dense_ggn, full_loss_fn, gpt_factory, ragged_token_batch

LOSS = CausalLMLoss()


def _batches(sizes):
    inputs, targets = ragged_token_batch()
    starts = np.cumsum([0, *sizes])
    return [
        ({key: value[a:b] for key, value in inputs.items()}, targets[a:b])
        for a, b in zip(starts[:-1], starts[1:])
    ]


@pytest.fixture(scope="module")
def dense():
    """Three seeded directions V (D, 3) and the float64 products of the mean next-token loss over
    every real token with them: H V column by column (jvp of torch.func.grad), and G V with the
    dense GGN.

    torch.func.hessian, which vmaps those columns over the basis, gives this model a matrix that
    is not symmetric (0.05 off, torch 2.13; finite differences side with the unbatched columns, as
    do our products); the whole matrix column by column took a minute of the suite.
    """
    model = gpt_factory().double()
    inputs, targets = ragged_token_batch()
    f, theta, _ = full_loss_fn(model, LOSS, inputs, targets)
    V = torch.randn(len(theta), 3, dtype=theta.dtype, generator=torch.Generator().manual_seed(0))
    with sdpa_kernel([SDPBackend.MATH]):  # the fused CPU kernel has no forward-mode derivative
        hessian_V = torch.stack([jvp(grad(f), (theta,), (v,))[1] for v in V.T], dim=1)
        ggn = dense_ggn(model, LOSS, inputs, targets)
    products = V.T @ hessian_V  # V^T H V: symmetric for a symmetric H
    assert float((products - products.T).abs().max()) < 1e-12
    return V, {"hessian": hessian_V, "ggn": ggn @ V}


@pytest.mark.parametrize("sizes", [[7], [2, 3, 2], [1, 1, 5]], ids=["one", "three", "uneven"])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_tiny_gpt_products_equal_the_dense_ones_however_the_batch_is_split(dense, kind, sizes):
    cls = HessianOperator if kind == "hessian" else GGNOperator
    V, truth = dense[0], dense[1][kind]
    op = cls(gpt_factory(), LOSS, _batches(sizes), dtype=torch.float64)
    assert op.num_samples == 1 + 5 + 2 + 4 + 3 + 5 + 0 - 0 == 20  # real next-token targets
    for mode in set(op.PRODUCT_MODES) - set(op.COSTLY_MODES):  # compiled: test_curvature_cases
        with op.pinned_mode(mode):
            torch.testing.assert_close(op @ V, truth, rtol=1e-10, atol=1e-12)


def test_one_and_two_ray_workers_give_the_in_process_product(ray_session):
    local = HessianOperator(gpt_factory(), LOSS, _batches([7]), dtype=torch.float64)
    V = torch.randn(
        local.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    expected = local @ V
    spec = ProblemSpec(gpt_factory, RaggedTokens, LOSS, batch_size=2, dtype="float64")
    for workers in (1, 2):
        with RayOperator(spec, num_workers=workers, cpus_per_worker=1) as op:
            assert op.num_samples == 20
            torch.testing.assert_close(op @ V, expected, rtol=1e-10, atol=1e-12)


def test_a_kernel_without_double_backward_is_named_with_its_fix():
    class Fused(torch.nn.Module):  # the CPU flash kernel, as a model might call it directly
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, 4)

        def forward(self, inputs):
            q = self.embed(inputs["input_ids"])[:, None]
            out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, q, q, is_causal=True
            )
            return out[0][:, 0] @ self.embed.weight.T

    op = HessianOperator(Fused(), LOSS, _batches([7]), product_mode="reverse-over-reverse")
    with pytest.raises(OperationError, match="no double backward.*attn_implementation='eager'"):
        op @ torch.randn(op.shape[0])


def _run_on_tokens(tmp_path, vocab: int, model: list[str], *extra: str) -> dict:
    """The command line on data=tokens (a random corpus of ``vocab`` ids written here, sequences
    of 8 tokens), Lanczos in process: its results.json."""
    corpus = tmp_path / "corpus.npy"
    np.save(corpus, np.random.default_rng(0).integers(0, vocab, 2000).astype(np.int32))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            *model,
            "data=tokens",
            f"data.root={corpus}",
            "data.context=8",
            "algorithm=lanczos",
            "cluster=none",
            "output.plots=false",
            f"hydra.run.dir={tmp_path / 'run'}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((tmp_path / "run" / "results.json").read_text())


def test_tokens_and_tiny_gpt_through_the_command_line(tmp_path):
    gpt = ["model=tiny_gpt", "model.vocab_size=13", "model.context=8", "model.layers=1"]
    record = _run_on_tokens(
        tmp_path,
        13,
        [*gpt, "model.width=8", "model.heads=2"],
        "data.subset=12",
        "data.batch_size=5",
        "algorithm.k=3",
        "dtype=float64",
        "curvature.check_determinism=true",
    )
    assert record["num_samples"] == 12 * 8  # every token of 12 sequences is a target
    assert all(record["converged"]) and len(record["eigenvalues"]) == 3


def test_the_settings_added_for_language_models_leave_older_stores_resumable():
    """At their defaults the new model and data keys stay out of the store fingerprint (a store
    made before they existed resumes); set, they are in it."""
    from pipeline.job import compile_job

    from deployment import compose_overrides

    default = compile_job(compose_overrides([])).fingerprint
    assert not {"loss", "vocab_size", "context", "layers", "width", "heads"} & set(default["model"])
    assert "context" not in default["data"]
    gpt = compile_job(
        compose_overrides(["model=tiny_gpt", "data=tokens", "data.root=c.npy", "data.context=32"])
    ).fingerprint
    assert gpt["model"]["loss"] == "causal_lm" and gpt["model"]["width"] == 64
    assert gpt["data"]["context"] == 32


def test_a_hugging_face_causal_lm_equals_its_dense_hessian_and_runs_from_the_command_line(
    tmp_path,
):
    """model=target with pipeline.models.hf.causal_lm (a GPT-2 built from a config and saved
    here: nothing is downloaded), loaded with eager attention: its Hessian products on ragged,
    padded sequences equal the dense ones, and the command line runs it on data=tokens."""
    pytest.importorskip("transformers")
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except Exception as error:  # noqa: BLE001 - an optional dependency built for another torch
        pytest.skip(f"transformers' GPT-2 does not import here: {str(error).splitlines()[0]}")
    from pipeline.models.hf import causal_lm

    config = GPT2Config(
        vocab_size=11, n_positions=8, n_embd=4, n_layer=1, n_head=2, resid_pdrop=0.0
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    model = causal_lm(str(tmp_path / "gpt2")).double().eval()
    inputs, targets = ragged_token_batch()
    op = HessianOperator(model, LOSS, _batches([3, 4]), dtype=torch.float64)
    f, theta, _ = full_loss_fn(model, LOSS, inputs, targets)
    V = torch.randn(op.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    dense = torch.stack([jvp(grad(f), (theta,), (v,))[1] for v in V.T], dim=1)
    torch.testing.assert_close(op @ V, dense, rtol=1e-10, atol=1e-12)

    hf = [
        "model=target",
        "model.target._target_=pipeline.models.hf.causal_lm",
        f"+model.target.name={tmp_path / 'gpt2'}",
        "model.loss=causal_lm",
    ]
    record = _run_on_tokens(tmp_path, 11, hf, "data.subset=6", "algorithm.k=2")
    assert record["num_samples"] == 6 * 8


def test_a_bad_corpus_or_loss_is_refused_naming_the_setting(tmp_path):
    from pipeline.data import TokenSequences
    from pipeline.errors import InputError, MissingFileError
    from pipeline.models.losses import loss_named

    with pytest.raises(MissingFileError, match="does not exist .data.root"):
        TokenSequences(tmp_path / "none.npy", 8)
    np.save(tmp_path / "floats.npy", np.zeros(100))
    with pytest.raises(InputError, match="1-D array of integer token ids"):
        TokenSequences(tmp_path / "floats.npy", 8)
    np.save(tmp_path / "short.npy", np.arange(5))
    with pytest.raises(InputError, match="fewer than one sequence of data.context=8"):
        TokenSequences(tmp_path / "short.npy", 8)
    np.save(tmp_path / "ok.npy", np.arange(100))
    with pytest.raises(InputError, match="data.subset=50 is more than the corpus's 12 sequences"):
        TokenSequences(tmp_path / "ok.npy", 8).subset(50, seed=0)
    with pytest.raises(InputError, match="model.loss must be one of cross_entropy, causal_lm"):
        loss_named("mse")
    with pytest.raises(InputError, match="longer than the model's context .model.context=6"):
        gpt_factory()(torch.zeros(1, 7, dtype=torch.int64))
