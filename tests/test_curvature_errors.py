"""Bad input to the curvature operators: clear ValueErrors, and the determinism check."""

import pytest
import torch
from torch import nn

from pipeline.curvature import HessianOperator, NondeterminismError

from helpers import classification_data, small_mlp

CE = nn.functional.cross_entropy


def test_empty_data():
    with pytest.raises(ValueError, match="data is empty"):
        HessianOperator(small_mlp(), CE, []) @ torch.zeros(74, dtype=torch.float64)


def test_batches_with_no_samples_are_empty_data():
    x, y = classification_data(0, (6,))
    with pytest.raises(ValueError, match="data is empty"):
        HessianOperator(small_mlp(), CE, [(x, y)]) @ torch.zeros(74, dtype=torch.float64)


def test_one_shot_iterator_rejected():
    batches = (b for b in [classification_data(4, (6,))])
    with pytest.raises(ValueError, match="one-shot iterator"):
        HessianOperator(small_mlp(), CE, batches)


def test_nan_loss_names_the_batch():
    x, y = classification_data(8, (6,))
    x2 = x.clone()
    x2[3, 0] = float("nan")
    op = HessianOperator(small_mlp(), CE, [(x, y), (x2, y)])
    with pytest.raises(ValueError, match="loss is nan on batch 1"):
        op @ torch.ones(74, dtype=torch.float64)


def test_model_without_trainable_parameters():
    model = small_mlp()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        HessianOperator(model, CE, [classification_data(4, (6,))])


def test_selection_matching_nothing():
    with pytest.raises(ValueError, match="matches none"):
        HessianOperator(small_mlp(), CE, [classification_data(4, (6,))], params="conv*")


@pytest.mark.parametrize(
    "vector, message",
    [
        (torch.zeros(73, dtype=torch.float64), "does not match the operator"),
        (torch.zeros(74, 0, dtype=torch.float64), "does not match the operator"),
        (torch.zeros(74, 2, 2, dtype=torch.float64), "does not match the operator"),
        (torch.zeros(74, dtype=torch.float32), "dtype"),
        ([0.0] * 74, "torch.Tensor"),
    ],
)
def test_mismatched_vectors(vector, message):
    op = HessianOperator(small_mlp(), CE, [classification_data(4, (6,))])
    with pytest.raises(ValueError, match=message):
        op @ vector


def test_batches_must_be_pairs():
    with pytest.raises(ValueError, match="inputs, targets"):
        HessianOperator(small_mlp(), CE, [torch.zeros(4, 6)]) @ torch.zeros(74, dtype=torch.float64)


def test_determinism_check_passes_for_fixed_batches():
    HessianOperator(small_mlp(), CE, [classification_data(10, (6,))]).check_determinism()


class ShufflingData:
    """A loader that reshuffles its samples on every pass."""

    def __init__(self):
        self.x, self.y = classification_data(12, (6,))
        self.gen = torch.Generator().manual_seed(0)

    def __iter__(self):
        order = torch.randperm(12, generator=self.gen)
        yield self.x[order[:6]], self.y[order[:6]]
        yield self.x[order[6:]], self.y[order[6:]]


def test_determinism_check_names_shuffling():
    with pytest.raises(NondeterminismError, match="shuffl"):
        HessianOperator(small_mlp(), CE, ShufflingData()).check_determinism()


class AlwaysDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = small_mlp()

    def forward(self, x):
        return nn.functional.dropout(self.body(x), p=0.5, training=True)


def test_determinism_check_names_dropout():
    with pytest.raises(NondeterminismError, match="dropout"):
        HessianOperator(AlwaysDropout(), CE, [classification_data(10, (6,))]).check_determinism()
