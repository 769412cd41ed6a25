"""Hugging Face causal language models, as the pipeline's models (``pip install ".[hf]"``).

    model=target model.target._target_=pipeline.models.hf.causal_lm
    model.target.name=/path/to/model-or-hub-name model.loss=causal_lm data=tokens ...

The model is loaded with ``attn_implementation="eager"``: the fused attention kernels have no
double backward, which every curvature product needs. ``LogitsOf`` makes it answer a batch's
inputs (a dict of ``input_ids``, ``attention_mask``, ... or a tensor of ids) with its logits
(B, T, vocabulary), as ``model=tiny_gpt`` does. ``transformers`` is never required otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.errors import InputError


class LogitsOf(nn.Module):
    """A Hugging Face model whose forward takes a batch's inputs and returns only its logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: Any) -> torch.Tensor:
        """Logits (B, T, V) for ``inputs``: a dict of the model's keyword inputs, or token ids."""
        outputs = self.model(**inputs) if isinstance(inputs, dict) else self.model(inputs)
        return outputs.logits


def causal_lm(name: str, **options: Any) -> LogitsOf:
    """``AutoModelForCausalLM.from_pretrained(name, attn_implementation="eager", **options)``.

    ``name``: a local directory (weights cannot be fetched at run time on most clusters) or a hub
    name where the node can reach the hub.
    """
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise InputError(
            "a Hugging Face model needs transformers: pip install 'hessian-pipeline[hf]'"
        ) from None
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="eager", **options)
    return LogitsOf(model)
