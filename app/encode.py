"""Encode the result for the wire; PNG by default, fast settings chosen by bench/stages.py."""

from __future__ import annotations

import cv2
import numpy as np

from app.errors import ApiError

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def check_format(fmt: str) -> str:
    fmt = fmt.lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in MEDIA_TYPES:
        raise ApiError(400, "unsupported_output_format", f"format must be png, jpeg or webp, not {fmt!r}")
    return fmt


def encode_image(img: np.ndarray, fmt: str, png_compression: int = 1) -> bytes:
    """uint8 BGR(A) -> encoded bytes. JPEG has no alpha, so it is dropped there."""
    if fmt == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
        ok, buf = cv2.imencode(".png", img, params)
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", img[:, :, :3], [cv2.IMWRITE_JPEG_QUALITY, 92])
    else:
        ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} image as {fmt}")
    return buf.tobytes()
