"""``data=tokens``: a pre-tokenised corpus as fixed-length next-token sequences.

The corpus is a ``.npy`` file of integer token ids (1-D, read as a memory map), cut into
non-overlapping windows of ``context + 1`` tokens; item i is ({"input_ids": w[:-1],
"attention_mask": ones}, w[1:]) for window w. ``subset`` takes that many windows, seeded, in
corpus order: the same windows on every worker and rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.errors import InputError, MissingFileError


class TokenSequences(Dataset):
    """Windows of ``context + 1`` tokens of a corpus of token ids, as (inputs dict, targets)."""

    def __init__(self, path: str | Path, context: int, windows: np.ndarray | None = None):
        path = self.path = Path(path)
        if not path.is_file():
            raise MissingFileError(
                f"token corpus {path} does not exist (data.root: a .npy file of token ids)"
            )
        try:
            self.tokens = np.load(path, mmap_mode="r")
        except ValueError as error:
            raise InputError(
                f"token corpus {path} is not a .npy array: {error} (data.root)"
            ) from None
        if self.tokens.ndim != 1 or not np.issubdtype(self.tokens.dtype, np.integer):
            raise InputError(
                f"token corpus {path} must be a 1-D array of integer token ids, got "
                f"{self.tokens.dtype} of shape {self.tokens.shape} (data.root)"
            )
        if context < 1:
            raise InputError(f"data.context must be a positive sequence length, got {context}")
        self.context = context
        count = (len(self.tokens) - 1) // context
        if count < 1:
            raise InputError(
                f"token corpus {path} has {len(self.tokens)} tokens, fewer than one sequence of "
                f"data.context={context} (+1): lower data.context"
            )
        self.windows = np.arange(count) if windows is None else windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        start = int(self.windows[index]) * self.context
        window = torch.from_numpy(
            np.array(self.tokens[start : start + self.context + 1], dtype=np.int64)
        )
        inputs = {
            "input_ids": window[:-1],
            "attention_mask": torch.ones(self.context, dtype=torch.int64),
        }
        return inputs, window[1:]

    def subset(self, size: int, seed: int) -> TokenSequences:
        """``size`` windows drawn without replacement (seeded), kept in corpus order."""
        if size > len(self):
            raise InputError(
                f"data.subset={size} is more than the corpus's {len(self)} sequences of "
                f"data.context={self.context}"
            )
        chosen = np.sort(np.random.default_rng(seed).choice(self.windows, size, replace=False))
        return TokenSequences(self.path, self.context, chosen)


def load_tokens(config: dict[str, Any]) -> TokenSequences:
    """The ``data=tokens`` set of a data config (``root``: the .npy corpus, ``context``)."""
    return TokenSequences(config["root"], int(config.get("context") or 64))
