"""Colour hints for training, sampled as Zhang et al. 2017 do (colorization-pytorch, util.add_color_patches_rand_gt).

Local hints: a geometric number of square patches (p = 1/8, so about one sample in eight has none), centred by a
Gaussian about the middle of the image with a standard deviation of a quarter of each side, each 1–9 px at 256
(scaled to the crop size) and holding the mean ab of the truth under it.

Global hint: the truth's ab distribution over the model's bins, then a flag of 1; all zeros when dropped.

A palette, for evaluation: the k-means colours of the truth's ab, as a person naming a photo's main colours would.
"""

from __future__ import annotations

import cv2
import numpy as np

STOP_P = 1 / 8  # geometric: each further hint is added with probability 1 - STOP_P
PATCH_SIZES_AT_256 = range(1, 10)
GLOBAL_KEEP_P = 0.4  # share of samples that get a global hint; the rest train the automatic path
PALETTE_LIKE_P = 0.5  # share of given global hints cut down to a few bins, as a user's palette would be


def patch_sizes(size: int) -> list[int]:
    """Zhang's 1–9 px at 256, scaled to a ``size``-pixel crop (at least 1 px)."""
    return sorted({max(1, round(p * size / 256)) for p in PATCH_SIZES_AT_256})


def sample_local_hints(
    ab: np.ndarray, rng: np.random.Generator, stop_p: float = STOP_P
) -> tuple[np.ndarray, np.ndarray]:
    """ab (2, H, W) float32 truth -> hint_ab (2, H, W) and hint_mask (1, H, W), zeros where no hint; the
    number of hints is geometric: P(n) = stop_p · (1 − stop_p)ⁿ for n = 0, 1, 2, …"""
    return place_hints(ab, int(rng.geometric(stop_p)) - 1, rng)


def place_hints(ab: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` hint patches placed and sized as in training (evaluation sweeps the count)."""
    _, h, w = ab.shape
    hint_ab = np.zeros_like(ab)
    mask = np.zeros((1, h, w), np.float32)
    sizes = patch_sizes(max(h, w))
    for _ in range(count):
        p = int(rng.choice(sizes))
        y = int(np.clip(rng.normal((h - p + 1) / 2, (h - p + 1) / 4), 0, h - p))
        x = int(np.clip(rng.normal((w - p + 1) / 2, (w - p + 1) / 4), 0, w - p))
        hint_ab[:, y : y + p, x : x + p] = ab[:, y : y + p, x : x + p].mean(axis=(1, 2), keepdims=True)
        mask[:, y : y + p, x : x + p] = 1.0
    return hint_ab, mask


def ab_distribution(ab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """ab (2, H, W) -> the share of pixels nearest each of the Q bin centres (Q,), summing to 1."""
    flat = ab.reshape(2, -1).T  # (P, 2)
    d2 = ((flat[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # (P, Q)
    counts = np.bincount(d2.argmin(1), minlength=len(centres)).astype(np.float32)
    return counts / counts.sum()


def global_hint(distribution: np.ndarray) -> np.ndarray:
    """A distribution over Q bins -> the (Q + 1,) model input: the distribution, then the flag 1."""
    return np.concatenate([distribution.astype(np.float32), np.ones(1, np.float32)])


def sample_global_hint(ab_small: np.ndarray, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The truth's global hint, dropped (all zeros) for most samples; half of the rest keep only their few
    strongest bins, so the model also learns from palette-like hints."""
    if rng.random() >= GLOBAL_KEEP_P:
        return np.zeros(len(centres) + 1, np.float32)
    dist = ab_distribution(ab_small, centres)
    if rng.random() < PALETTE_LIKE_P:
        keep = np.argsort(dist)[::-1][: int(rng.integers(1, 9))]
        sparse = np.zeros_like(dist)
        sparse[keep] = dist[keep]
        dist = sparse / sparse.sum()
    return global_hint(dist)


def palette_of(ab: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """ab (2, H, W) -> k colours (k, 2), the k-means centres of its pixels, and the share of pixels each has (k,)."""
    pixels = np.ascontiguousarray(ab.reshape(2, -1).T, np.float32)
    cv2.setRNGSeed(7)  # k-means++ draws its starts: fixed, so a palette is the same on every run
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.1)
    _, labels, centres = cv2.kmeans(pixels, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    return centres, np.bincount(labels.ravel(), minlength=k) / len(labels)
