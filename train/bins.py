"""Quantised ab bins for the classification head (Zhang et al. 2016), computed from the training data.

Bins sit on a 10-unit grid of the ab plane; a bin is "in gamut" when some training pixel falls in it.
No bin file is downloaded: the table is a function of the photos we train on.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

GRID = 10.0  # ab units between neighbouring bin centres


def count_ab(ab_images: Iterable[np.ndarray]) -> dict[tuple[int, int], int]:
    """Count pixels per grid cell over float32 ab arrays of shape (H, W, 2)."""
    counts: dict[tuple[int, int], int] = {}
    for ab in ab_images:
        cells = np.round(ab.reshape(-1, 2) / GRID).astype(np.int32)
        keys, n = np.unique(cells, axis=0, return_counts=True)
        for (a, b), c in zip(keys.tolist(), n.tolist(), strict=True):
            counts[(a, b)] = counts.get((a, b), 0) + c
    return counts


def bins_from_counts(counts: dict[tuple[int, int], int]) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres (Q, 2) in ab units and the empirical prior (Q,) over them."""
    keys = sorted(counts)
    centres = np.array(keys, dtype=np.float32) * GRID
    prior = np.array([counts[k] for k in keys], dtype=np.float64)
    return centres, (prior / prior.sum()).astype(np.float32)


def rebalance_weights(centres: np.ndarray, prior: np.ndarray, lam: float = 0.5, sigma: float = 5.0) -> np.ndarray:
    """Class weights w ∝ ((1-λ)·p̃ + λ/Q)⁻¹ with p̃ the prior smoothed by a Gaussian in ab, E_p̃[w] = 1."""
    d2 = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # (Q, Q)
    kernel = np.exp(-d2 / (2 * sigma**2))
    smoothed = kernel @ prior
    smoothed /= smoothed.sum()
    weights = 1.0 / ((1 - lam) * smoothed + lam / len(prior))
    weights /= (smoothed * weights).sum()
    return weights.astype(np.float32)


def soft_encode(
    ab: torch.Tensor, centres: torch.Tensor, neighbours: int = 5, sigma: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's soft target over the bins, kept sparse: its ``neighbours`` nearest bins and their weights.

    ab: (N, 2, H, W) in ab units; centres: (Q, 2). Returns bin indices (N, k, H, W), nearest first, and weights
    (N, k, H, W) summing to 1 over k: a Gaussian of the distance, as Zhang et al. Every other bin's target is 0,
    so the dense (N, Q, H, W) target is never built: with Q = 237 it and its product with the log-probabilities
    were a third of a training step on 2 cores.
    """
    n, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)  # (P, 2)
    dist = torch.cdist(flat, centres)  # (P, Q)
    near_d, near_i = dist.topk(neighbours, dim=1, largest=False)  # (P, k), sorted nearest first
    wts = torch.exp(-(near_d**2) / (2 * sigma**2))
    wts = wts / wts.sum(dim=1, keepdim=True)
    bins, targets = (t.reshape(n, h, w, neighbours).permute(0, 3, 1, 2) for t in (near_i, wts))  # (N, k, H, W)
    return bins, targets


def rebalanced_cross_entropy(
    logits: torch.Tensor, bins: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Zhang et al.'s multinomial loss: soft cross-entropy, each pixel weighted by its nearest bin's weight.

    ``bins`` and ``targets`` are soft_encode's sparse target; the sum over the bins runs over its k nonzero ones.
    """
    log_p = F.log_softmax(logits, dim=1).gather(1, bins)  # (N, k, H, W)
    per_pixel = -(targets * log_p).sum(dim=1)  # (N, H, W)
    return (per_pixel * weights[bins[:, 0]]).mean()
