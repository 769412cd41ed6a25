"""Test columns generated straight into float32 are the float64 columns rounded once: a run's
measurements do not depend on the precision the generator writes in."""

import pytest
import torch

from pipeline.linalg.random_matrices import random_block, random_columns


@pytest.mark.parametrize("kind", ["rademacher", "gaussian", "ssrft"])
def test_float32_columns_are_the_float64_columns_rounded(kind):
    columns = [3, 4, 5, 70]  # across two 64-bit words of Rademacher signs
    wide = random_columns(kind, 7, 1000, columns, dtype=torch.float64)
    narrow = random_columns(kind, 7, 1000, columns, dtype=torch.float32)
    assert narrow.dtype == torch.float32 and narrow.shape == (1000, 4)
    assert torch.equal(narrow, wide.float())
    if kind != "ssrft":  # the row-accessible kinds: any row block of the same columns
        assert torch.equal(
            wide[100:300], torch.from_numpy(random_block(kind, 7, range(100, 300), columns))
        )
