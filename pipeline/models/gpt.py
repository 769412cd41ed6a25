"""``model=tiny_gpt``: a GPT-style decoder in plain torch, for language-model curvature.

Token and position embeddings, ``layers`` pre-norm blocks (causal multi-head self-attention and a
GELU MLP, each with a residual), a final LayerNorm and a linear head over the vocabulary. Inputs
are token ids (B, T) or a dict with ``input_ids`` (B, T) and an optional ``attention_mask`` (B, T;
0 marks padding, whose keys no query attends to); outputs are logits (B, T, vocab_size).
Attention is ``scaled_dot_product_attention``; products run it on its math path (the fused
kernels have no double backward: ``pipeline.curvature.product_modes``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.errors import InputError


class CausalSelfAttention(nn.Module):
    """Multi-head attention of each position over itself and the non-padded positions before it."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise InputError(f"model.width ({width}) must be a multiple of model.heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """X (B, T, width), keep (B, 1, T, T) bool: which keys each query attends to."""
        batch, length, width = x.shape
        q, k, v = (
            part.view(batch, length, self.heads, width // self.heads).transpose(1, 2)
            for part in self.qkv(x).chunk(3, dim=-1)
        )
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        # in network order: parameters (and layer-wise blocks) follow it
        self.norm1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """X (B, T, width) -> (B, T, width)."""
        x = x + self.attention(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    """A decoder-only transformer; D = V w + C w + layers (12 w^2 + 13 w) + 2 w + V (w + 1).

    For vocabulary V, context C and width w (tied nothing: the head has its own weights).
    """

    def __init__(
        self,
        vocab_size: int = 256,
        context: int = 64,
        layers: int = 2,
        width: int = 64,
        heads: int = 4,
    ):
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, inputs: Any) -> torch.Tensor:
        """Logits (B, T, vocab_size) for ``inputs``: ids (B, T) or {input_ids, attention_mask}."""
        ids, mask = (
            (inputs["input_ids"], inputs.get("attention_mask"))
            if isinstance(inputs, dict)
            else (inputs, None)
        )
        length = ids.shape[1]
        if length > self.context:
            raise InputError(
                f"sequences of {length} tokens are longer than the model's context "
                f"(model.context={self.context}): lower data.context or raise model.context"
            )
        x = self.tokens(ids) + self.positions(torch.arange(length, device=ids.device))
        keep = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()[None, None]
        if mask is not None:
            keep = keep & mask.bool()[:, None, None, :]
            # a padded query keeps its own position, so its (ignored) row is not all masked
            keep = keep | torch.eye(length, dtype=torch.bool, device=ids.device)
        for block in self.blocks:
            x = block(x, keep)
        return self.head(self.norm(x))


def tiny_gpt(
    vocab_size: int = 256, context: int = 64, layers: int = 2, width: int = 64, heads: int = 4
) -> TinyGPT:
    """A ``TinyGPT`` (the zoo's constructor)."""
    return TinyGPT(vocab_size, context, layers, width, heads)
