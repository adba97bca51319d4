"""Lab math around the model: L in, ab out, joined back at full resolution (OpenCV's Lab, as in training)."""

from __future__ import annotations

import cv2
import numpy as np


def lightness(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 BGR in [0, 1] -> (H, W) float32 L in [0, 100]."""
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)[:, :, 0])


def model_input(full_l: np.ndarray, size: int) -> np.ndarray:
    """Full-resolution L -> (1, S, S) float32, area-averaged so fine texture does not alias."""
    small = cv2.resize(full_l, (size, size), interpolation=cv2.INTER_AREA)
    return small[None, :, :]


def join(full_l: np.ndarray, ab: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Model colour + original detail: ab (2, h, w) upsampled to L's size, Lab -> uint8 BGR(A)."""
    height, width = full_l.shape
    ab_full = cv2.resize(ab.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W, 2)
    lab = np.dstack([full_l, ab_full])  # (H, W, 3)
    bgr = cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)
    out = cv2.convertScaleAbs(bgr, alpha=255.0)  # saturating float -> uint8
    if alpha is not None:
        a8 = alpha if alpha.dtype == np.uint8 else (alpha // 257).astype(np.uint8)
        out = np.dstack([out, a8])
    return out
