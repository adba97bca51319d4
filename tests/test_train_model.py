"""The PyTorch model: shapes for several batch sizes, finiteness, gradients, raw-Lab contract, bins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.bins import bins_from_counts, count_ab, rebalance_weights, rebalanced_cross_entropy, soft_encode
from train.model import ColorizerNet, ModelArgs

CENTRES = torch.tensor([[a, b] for a in range(-40, 50, 10) for b in range(-40, 50, 10)], dtype=torch.float32)


def make(head: str) -> ColorizerNet:
    args = ModelArgs(head=head, width=8, num_bins=len(CENTRES) if head == "classification" else 0)
    return ColorizerNet(args, CENTRES if head == "classification" else None)


@pytest.mark.parametrize("head", ["classification", "regression"])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_shapes_and_finiteness(head: str, batch: int) -> None:
    model = make(head).eval()
    with torch.no_grad():
        ab = model(torch.rand(batch, 1, 64, 64) * 100)
    assert ab.shape == (batch, 2, 32, 32)
    assert torch.isfinite(ab).all()


@pytest.mark.parametrize("head", ["classification", "regression"])
def test_every_parameter_gets_a_gradient(head: str) -> None:
    model = make(head).train()
    out = model(torch.rand(2, 1, 64, 64) * 100, features_only=True)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert missing == []


def test_classification_output_stays_inside_the_bin_hull() -> None:
    """Annealed mean is a convex combination of bin centres, so ab stays within their range."""
    model = make("classification").eval()
    with torch.no_grad():
        ab = model(torch.rand(3, 1, 64, 64) * 100)
    assert ab.min() >= CENTRES.min() - 1e-4
    assert ab.max() <= CENTRES.max() + 1e-4


def test_soft_encoding_and_rebalancing() -> None:
    ab = torch.tensor([[[[3.0, 7.0]], [[-22.0, 41.0]]]])  # (1, 2, 1, 2): pixels (3, -22) and (7, 41)
    targets, nearest = soft_encode(ab, CENTRES, neighbours=5, sigma=5.0)
    assert targets.shape == (1, len(CENTRES), 1, 2)
    torch.testing.assert_close(targets.sum(1), torch.ones(1, 1, 2))
    assert CENTRES[nearest[0, 0, 0]].tolist() == [0.0, -20.0]
    counts = count_ab([np.array([[[0.0, 0.0], [0.0, 1.0], [20.0, 30.0]]], np.float32)])
    centres, prior = bins_from_counts(counts)
    assert centres.tolist() == [[0.0, 0.0], [20.0, 30.0]]
    np.testing.assert_allclose(prior, [2 / 3, 1 / 3], rtol=1e-6)
    weights = rebalance_weights(centres, prior, lam=0.5, sigma=5.0)
    assert weights[1] > weights[0]  # the rarer colour weighs more
    logits = torch.zeros(1, 2, 1, 1, requires_grad=True)
    loss = rebalanced_cross_entropy(
        logits, torch.tensor([[[[1.0]], [[0.0]]]]), torch.zeros(1, 1, 1, dtype=torch.long), torch.from_numpy(weights)
    )
    loss.backward()
    assert loss.item() > 0
    assert logits.grad is not None
