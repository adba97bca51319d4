"""CIE Lab conversion exactly as the service does it: OpenCV on float32 BGR in [0, 1]."""

from __future__ import annotations

import cv2
import numpy as np


def bgr_to_lab(bgr_u8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (H, W, 3) float32 Lab, L in [0, 100]."""
    return cv2.cvtColor(bgr_u8.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


def lab_to_bgr(lab: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 Lab -> (H, W, 3) uint8 BGR, clipped to the sRGB gamut."""
    bgr = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2BGR)
    return np.clip(bgr * 255.0 + 0.5, 0, 255).astype(np.uint8)
