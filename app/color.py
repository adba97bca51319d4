"""Lab math around the model: L in, ab out, joined back at full resolution (OpenCV's Lab, as in training)."""

from __future__ import annotations

import cv2
import numpy as np


def lightness(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 BGR in [0, 1] -> (H, W) float32 L in [0, 100]."""
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)[:, :, 0])


# L of each 8-bit gray level, by lightness() itself on the value decode.py makes of it (v * (1/255) in float32).
_GRAY = np.repeat((np.arange(256, dtype=np.float32) * (1.0 / 255.0)).reshape(1, 256, 1), 3, axis=2)
L_OF_GRAY = lightness(_GRAY)  # (1, 256) float32, a cv2.LUT table


def lightness_u8(img: np.ndarray) -> np.ndarray:
    """uint8 gray (H, W) or BGR (H, W, 3) -> (H, W) float32 L, equal to lightness() of the float image.
    Gray photos (B = G = R everywhere) cost a table lookup; only colour ones pay for the float conversion."""
    if img.ndim == 2:
        return cv2.LUT(img, L_OF_GRAY)
    b, g, r = cv2.split(img)
    if cv2.countNonZero(cv2.absdiff(b, g)) == 0 and cv2.countNonZero(cv2.absdiff(g, r)) == 0:
        return cv2.LUT(g, L_OF_GRAY)
    return lightness(img.astype(np.float32) * (1.0 / 255.0))


# What the model sees behind a cut-out: mid-gray, the backdrop training and evaluation flatten cut-outs onto
# (train/data.py, train/evaluate.py).
BACKDROP_L = float(L_OF_GRAY[0, 128])


def model_input(full_l: np.ndarray, size: int, alpha: np.ndarray | None = None) -> np.ndarray:
    """Full-resolution L -> (1, S, S) float32, area-averaged so fine texture does not alias.

    With an alpha channel the model sees the image flattened on mid-gray (BACKDROP_L). The colour stored under
    transparent pixels is arbitrary (black, white, or the photo the cut-out came from) and no one sees it, but the
    model did, and coloured a white flower stored on black yellow. On the validation and calibration cut-outs the
    visible pixels gain on average (model 2.5.1: 0.23 dB, 15 of 32 photos better; docs/eval/CUTOUTS.md). The
    flattening is done on L: exact for fully opaque and fully transparent pixels; only the partly transparent ones
    at the edge differ from flattening in RGB. The output keeps the original L and alpha."""
    if alpha is not None:
        opaque = 255.0 if alpha.dtype == np.uint8 else 65535.0
        if float(alpha.min()) < opaque:  # an alpha channel that is all opaque changes nothing
            weight = alpha.astype(np.float32) * np.float32(1.0 / opaque)
            full_l = weight * (full_l - np.float32(BACKDROP_L)) + np.float32(BACKDROP_L)
    small = cv2.resize(full_l, (size, size), interpolation=cv2.INTER_AREA)
    return small[None, :, :]


def join(full_l: np.ndarray, ab: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Model colour + original detail: ab (2, h, w) upsampled to L's size, Lab -> uint8 BGR(A).

    Through OpenCV's 8-bit Lab (L·255/100, a + 128, b + 128), whose Lab -> BGR is fixed-point: half the time of
    the float conversion at full size, within 5 levels of it, 0.5 on average (docs/PERFORMANCE.md)."""
    height, width = full_l.shape
    ab8 = np.clip(np.rint(ab.transpose(1, 2, 0) + 128.0), 0, 255).astype(np.uint8)  # (h, w, 2), small
    ab_full = cv2.resize(ab8, (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W, 2)
    l8 = cv2.convertScaleAbs(full_l, alpha=255.0 / 100.0)  # L >= 0: saturating round to 0..255
    out = cv2.cvtColor(cv2.merge([l8, ab_full]), cv2.COLOR_Lab2BGR)  # (H, W, 3) uint8
    if alpha is not None:
        a8 = alpha if alpha.dtype == np.uint8 else (alpha // 257).astype(np.uint8)
        out = np.dstack([out, a8])
    return out
