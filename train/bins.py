"""Quantised ab bins for the classification head (Zhang et al. 2016), computed from the training data.

Bins sit on a 10-unit grid of the ab plane; a bin is "in gamut" when some training pixel falls in it.
No bin file is downloaded: the table is a function of the photos we train on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

GRID = 10.0  # ab units between neighbouring bin centres
TABLE_REACH = 128.0  # SoftEncoder's grid spans ±this: an sRGB colour's a and b in OpenCV's float Lab lie within ±110
TABLE_CELL = 2.0  # ab units per cell of that grid: with the data's 237 bins, lists of at most 12 (6.6 on average)
TABLE_CELLS = int(2 * TABLE_REACH / TABLE_CELL)  # cells per side


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


class SoftEncoder:
    """Each pixel's soft target over the bins, kept sparse: its ``neighbours`` nearest bins and their weights.

    Called on ab (N, 2, H, W) in ab units, it returns bin indices (N, k, H, W), nearest first, and weights (N, k, H, W)
    summing to 1 over k: a Gaussian of the distance, as Zhang et al. Every other bin's target is 0, so the dense
    (N, Q, H, W) target is never built (it and its product with the log-probabilities were a third of a step).

    Measuring every pixel against all Q bins and sorting them was then most of what was left, so the k nearest are
    found among a short list that depends only on where a pixel lies: for each cell of a fine grid over the ab plane,
    the bins within d_k(p) + 2r of the cell's centre p, with d_k(p) the k-th nearest bin's distance from p and r the
    cell's half-diagonal. Any point q of the cell is within r of p, so its own d_k(q) ≤ d_k(p) + r, and each of its
    k nearest bins lies within d_k(q) + r ≤ d_k(p) + 2r of p: the list holds them all and the pick is exact.
    """

    def __init__(self, centres: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> None:
        if not 0 < neighbours <= len(centres):
            raise ValueError(f"neighbours must be 1..{len(centres)} (the number of bins), not {neighbours}")
        self.centres, self.neighbours, self.sigma = centres, neighbours, sigma
        axis = -TABLE_REACH + (torch.arange(TABLE_CELLS, dtype=torch.float64) + 0.5) * TABLE_CELL
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)  # (G, 2): cell centres
        dist = torch.cdist(grid, centres.double().cpu())  # (G, Q)
        reach = dist.kthvalue(neighbours, dim=1).values + TABLE_CELL * math.sqrt(2) + 1e-6  # d_k + 2r, r = cell·√2/2
        within = dist <= reach[:, None]  # (G, Q)
        order = torch.argsort((~within).to(torch.int8), dim=1, stable=True)[:, : int(within.sum(1).max())]
        self.candidates = order.to(centres.device)  # (G, K): each cell's list, padded with bins outside it
        self.listed = within.gather(1, order).to(centres.device)  # (G, K): False where padding

    def __call__(self, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = ab.shape
        flat = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()  # (P, 2)
        if flat.numel() and float(flat.abs().max()) >= TABLE_REACH:
            raise ValueError(f"ab beyond ±{TABLE_REACH:g}: not a colour of sRGB in OpenCV's float Lab")
        ij = ((flat + TABLE_REACH) / TABLE_CELL).long()  # (P, 2)
        cell = ij[:, 0] * TABLE_CELLS + ij[:, 1]  # (P,)
        candidates = self.candidates[cell]  # (P, K)
        d2 = ((flat[:, None, :] - self.centres[candidates]) ** 2).sum(-1)  # (P, K)
        d2 = d2.masked_fill(~self.listed[cell], math.inf)
        near_d2, pick = d2.topk(self.neighbours, dim=1, largest=False)  # (P, k), nearest first
        near_i = candidates.gather(1, pick)
        wts = torch.exp(-near_d2 / (2 * self.sigma**2))
        wts = wts / wts.sum(dim=1, keepdim=True)
        bins, targets = (t.reshape(n, h, w, self.neighbours).permute(0, 3, 1, 2) for t in (near_i, wts))
        return bins, targets  # (N, k, H, W) each


def bin_log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the bins of (N, Q, H, W) logits, returned bins last as (N, H, W, Q). The model's logits are
    channels-last, so contiguous along the bins: this way log_softmax and its backward read them in place, where along
    dim 1 each made a dense copy (two thirds of the class loss's time on an fp32 CPU)."""
    return F.log_softmax(logits.permute(0, 2, 3, 1), dim=-1)


def rebalanced_cross_entropy(
    logits: torch.Tensor, bins: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Zhang et al.'s multinomial loss: soft cross-entropy, each pixel weighted by its nearest bin's weight.

    ``bins`` and ``targets`` are SoftEncoder's sparse target; the sum over the bins runs over its k nonzero ones.
    """
    log_p = bin_log_probabilities(logits).gather(-1, bins.permute(0, 2, 3, 1))  # (N, H, W, k)
    per_pixel = -(targets.permute(0, 2, 3, 1) * log_p).sum(dim=-1)  # (N, H, W)
    return (per_pixel * weights[bins[:, 0]]).mean()
