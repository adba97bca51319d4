"""Decode uploaded bytes into an image OpenCV can work on. The header (format, size, orientation) was read and the
limits checked before (app/image_header.py); decoding takes that header instead of parsing the bytes again."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.color import lightness, lightness_u8
from app.errors import ColorizerError
from app.image_header import Header, checked_header


@dataclass
class DecodedImage:
    color: np.ndarray  # (H, W, 3) float32 BGR in [0, 1], orientation applied
    alpha: np.ndarray | None  # (H, W) in the source dtype, or None when the file has no alpha
    format: str


@dataclass
class DecodedLightness:
    lightness: np.ndarray  # (H, W) float32 L in [0, 100], orientation applied
    alpha: np.ndarray | None  # (H, W) in the source dtype, or None when the file has no alpha
    format: str


def decode_lightness(data: bytes, header: Header) -> DecodedLightness:
    """Bytes -> full-size L and alpha: the same numbers as lightness(decode_image(...).color), but an 8-bit
    photo never becomes a full-size float BGR image, and orientation turns one channel instead of three."""
    img = _imdecode(data, header)
    if img.dtype != np.uint8 or (img.ndim == 3 and img.shape[2] == 2):
        decoded = _from_pixels(img, header)
        return DecodedLightness(lightness(decoded.color), decoded.alpha, decoded.format)
    alpha = img[:, :, 3] if img.ndim == 3 and img.shape[2] == 4 else None
    full_l, alpha = _as_seen(header, lightness_u8(img if img.ndim == 2 else img[:, :, :3]), alpha)
    return DecodedLightness(np.ascontiguousarray(full_l), alpha, header.format)


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Bytes -> float BGR in [0, 1] plus alpha; 8/16-bit, gray/BGR/BGRA, EXIF orientation applied. (The float
    path the benchmarks compare against; the service decodes with ``decode_lightness``.)"""
    header = checked_header(data, max_pixels)
    return _from_pixels(_imdecode(data, header), header)


def decode_small_bgra(data: bytes, header: Header, side: int = 64) -> np.ndarray:
    """Bytes -> uint8 BGRA squeezed to side × side, for a colour distribution (a reference photo): 8/16-bit,
    gray or with alpha (255 where the file has none); orientation does not change a distribution, so it is not
    applied."""
    img = _imdecode(data, header)
    if img.dtype != np.uint8:
        img = (_float_to_uint16(img) if img.dtype != np.uint16 else img) // 257
        img = img.astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    elif img.shape[2] == 2:  # gray + alpha
        img = np.dstack([cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR), img[:, :, 1]])
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    return cv2.resize(np.ascontiguousarray(img), (side, side), interpolation=cv2.INTER_AREA)


def _imdecode(data: bytes, header: Header) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ColorizerError("undecodable_image", f"the {header.format.upper()} file is damaged or truncated")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def _from_pixels(img: np.ndarray, header: Header) -> DecodedImage:
    if img.dtype not in (np.uint8, np.uint16):
        img = _float_to_uint16(img)
    scale = 1.0 / (65535.0 if img.dtype == np.uint16 else 255.0)
    alpha = None
    if img.ndim == 2:
        color = cv2.cvtColor(img.astype(np.float32) * scale, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3]
        color = img[:, :, :3].astype(np.float32) * scale
    elif img.shape[2] == 2:  # gray + alpha
        alpha = img[:, :, 1]
        color = cv2.cvtColor(img[:, :, 0].astype(np.float32) * scale, cv2.COLOR_GRAY2BGR)
    else:
        color = img[:, :, :3].astype(np.float32) * scale
    color, alpha = _as_seen(header, color, alpha)
    return DecodedImage(color, alpha, header.format)


def _as_seen(header: Header, pixels: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels and alpha turned by the header's EXIF orientation, as the camera meant them to be seen."""
    turn = header.orientation
    return apply_orientation(pixels, turn), None if alpha is None else apply_orientation(alpha, turn)


def _float_to_uint16(img: np.ndarray) -> np.ndarray:
    """Float or signed samples (float TIFFs and the like) -> uint16.

    Float samples in [0, 1] are taken as they are (the TIFF convention), so the lightness the user sees is the
    lightness we keep; anything else is stretched over its own range. NaN and infinities become 0.
    """
    values = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(values.min()), float(values.max())
    if not (np.issubdtype(img.dtype, np.floating) and lo >= 0.0 and hi <= 1.0):
        values = (values - lo) / max(hi - lo, 1e-12)
    return np.round(values * 65535.0).astype(np.uint16)


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels as stored into pixels as the camera meant them to be seen (EXIF 1..8)."""
    ops = {
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0),
        5: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 1),
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    op = ops.get(orientation)
    return op(img) if op else img
