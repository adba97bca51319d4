"""Edge-aware upsampling of the model's colour: the network gives ab at half the model's side S (64 × 64 for the
shipped model's 128), and resized bilinearly that colour bleeds across every edge by several pixels of the model's
view: a blue sky leaks into a white temple's outline, a red coat onto the wall behind it.

A guided filter (He, Sun and Tang, "Guided Image Filtering", 2013), guided by the L the model saw, replaces the
bilinear ab at S with a locally linear function of L: in each window ab ≈ a·L + b, fitted by least squares to the
bilinear colour. Where the window holds one surface the colour is its smoothed self; where L has an edge the
colour steps with it. The result is ab at S, which the join then resizes to full resolution as before, so the
cost is a few box filters of S × S (about a millisecond) and no more memory at full size.

The radius and ε were chosen on the calibration split, never the evaluation split
(``python -m train.choose_edges``; models/README.md).
"""

from __future__ import annotations

import cv2
import numpy as np

RADIUS_OF_SIDE = 1 / 16  # window radius, as a fraction of the model's side (8 px at 128)
EPSILON = 1e-4  # regularisation, in (L / 100)²: an edge of about 1 L unit already cuts the colour


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    # Reflected borders keep every window full, so the mean needs no per-pixel count.
    return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_ab(
    ab: np.ndarray, guide_l: np.ndarray, radius_of_side: float = RADIUS_OF_SIDE, epsilon: float = EPSILON
) -> np.ndarray:
    """ab (2, h, w) from the model; guide_l (S, S) the L in [0, 100] it saw. Returns (2, S, S) float32 ab that
    follows guide_l's edges. The radius and ε are parameters only so that train/choose_edges.py can sweep them."""
    height, width = guide_l.shape
    radius = max(1, round(radius_of_side * max(height, width)))
    guide = guide_l.astype(np.float32) * np.float32(1 / 100)  # (S, S) in [0, 1]: ε's scale
    colour = cv2.resize(ab.transpose(1, 2, 0).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    mean_l = _box(guide, radius)[..., None]  # (S, S, 1)
    mean_ab = _box(colour, radius)  # (S, S, 2)
    covariance = _box(colour * guide[..., None], radius) - mean_l * mean_ab
    variance = _box(guide * guide, radius)[..., None] - mean_l * mean_l
    slope = covariance / (variance + np.float32(epsilon))
    offset = mean_ab - slope * mean_l
    out = _box(slope, radius) * guide[..., None] + _box(offset, radius)  # each pixel: the mean of its windows' fits
    result: np.ndarray = np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)
    return result
