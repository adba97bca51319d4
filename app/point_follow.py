"""Make the colour reach the user's points: the network moves towards a point hint but rarely all the way, so a
person clicks red and sees a duller red, and PSNR with hints gains less than it could (models/README.md).

After the model, the residual at each point (the colour asked for minus the network's colour there) is spread over
the image with a weight that falls with distance (σ = SPATIAL_SIGMA of the side) and with difference in lightness
(σ = LIGHTNESS_SIGMA L units), so a correction stays on the surface that was clicked and fades away from it; where
several points reach a pixel their residuals are averaged by weight, and where the weights sum to less than 1 the
correction fades out. Automatic colour and the global hints (palette, reference photo) are left as they are.
Both sigmas were chosen on the calibration split, never the evaluation split (``python -m
train.choose_point_sigmas``; models/README.md).

It works at the model's output size (S/2, a few thousand pixels), so its cost is negligible beside the model's.
"""

from __future__ import annotations

import cv2
import numpy as np

SPATIAL_SIGMA = 0.3  # of the image side (the photo is squeezed to a square for the model)
LIGHTNESS_SIGMA = 10.0  # L units


def follow_points(
    ab: np.ndarray,
    small_l: np.ndarray,
    hint_ab: np.ndarray,
    hint_mask: np.ndarray,
    spatial_sigma: float = SPATIAL_SIGMA,
    lightness_sigma: float = LIGHTNESS_SIGMA,
) -> np.ndarray:
    """ab (2, h, w) from the model; small_l (S, S) the L it saw; hint_ab (2, S, S), hint_mask (1, S, S) its point
    hints. Returns ab (2, h, w) moved towards the points, or ab itself when there are none. The sigmas are
    parameters only so that train/choose_point_sigmas.py can sweep them."""
    mask = hint_mask[0] > 0
    if not mask.any():
        return ab
    count, labels = cv2.connectedComponents(mask.astype(np.uint8))  # one component per point (touching ones merge)
    size = mask.shape[0]
    _, h, w = ab.shape
    ys, xs = np.nonzero(mask)
    which = labels[ys, xs] - 1  # (P,) the point each hint pixel belongs to
    pixels = np.bincount(which, minlength=count - 1).astype(np.float32)

    def per_point(values: np.ndarray) -> np.ndarray:
        return np.bincount(which, weights=values, minlength=count - 1) / pixels

    cy, cx = per_point(ys + 0.5) * h / size, per_point(xs + 0.5) * w / size  # (K,) centres at output size
    wanted = np.stack([per_point(hint_ab[0, ys, xs]), per_point(hint_ab[1, ys, xs])])  # (2, K)
    # The network's colour under each point's footprint, not at its one centre cell: at a hint the network's output
    # can dip or spike for a cell (model 2.3.0 gave a red point's centre half the a of its neighbours), and one
    # cell's residual added to all of them overshot the colour asked for by 10 ab units.
    oy, ox = np.minimum(ys * h // size, h - 1), np.minimum(xs * w // size, w - 1)
    got = np.stack([per_point(ab[0, oy, ox]), per_point(ab[1, oy, ox])])  # (2, K)
    lightness = per_point(small_l[ys, xs])  # (K,)
    small = cv2.resize(small_l, (w, h), interpolation=cv2.INTER_AREA)  # (h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    weights = np.exp(
        -((yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2) / (2 * (spatial_sigma * max(h, w)) ** 2)
        - (small[..., None] - lightness) ** 2 / (2 * lightness_sigma**2)
    )  # (h, w, K)
    correction = weights @ (wanted - got).T / np.maximum(weights.sum(-1, keepdims=True), 1.0)  # (h, w, 2)
    moved: np.ndarray = (ab + correction.transpose(2, 0, 1)).astype(ab.dtype)
    return moved
