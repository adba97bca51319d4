"""Decode uploaded bytes into an image OpenCV can work on, with the limits checked first."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from app.color import lightness, lightness_u8
from app.errors import ApiError
from app.image_header import Header, read_header


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


def decode_lightness(data: bytes, max_pixels: int) -> DecodedLightness:
    """Bytes -> full-size L and alpha: the same numbers as lightness(decode_image(...).color), but an 8-bit
    photo never becomes a full-size float BGR image, and orientation turns one channel instead of three."""
    header, img = _imdecode(data, max_pixels)
    if img.dtype != np.uint8 or (img.ndim == 3 and img.shape[2] == 2):
        decoded = _from_pixels(img, header, data)
        return DecodedLightness(lightness(decoded.color), decoded.alpha, decoded.format)
    alpha = img[:, :, 3] if img.ndim == 3 and img.shape[2] == 4 else None
    full_l, alpha = _as_seen(header, data, lightness_u8(img if img.ndim == 2 else img[:, :, :3]), alpha)
    return DecodedLightness(np.ascontiguousarray(full_l), alpha, header.format)


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Bytes -> float BGR in [0, 1] plus alpha; 8/16-bit, gray/BGR/BGRA, EXIF orientation applied."""
    header, img = _imdecode(data, max_pixels)
    return _from_pixels(img, header, data)


def _imdecode(data: bytes, max_pixels: int) -> tuple[Header, np.ndarray]:
    header = read_header(data)
    check_pixels(header, max_pixels)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ApiError(400, "undecodable_image", f"the {header.format.upper()} file is damaged or truncated")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return header, img


def _from_pixels(img: np.ndarray, header: Header, data: bytes) -> DecodedImage:
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
    color, alpha = _as_seen(header, data, color, alpha)
    return DecodedImage(color, alpha, header.format)


def _as_seen(
    header: Header, data: bytes, pixels: np.ndarray, alpha: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels and alpha turned by the file's EXIF orientation (JPEG only), as the camera meant them to be seen."""
    orientation = exif_orientation(data) if header.format == "jpeg" else 1
    return apply_orientation(pixels, orientation), None if alpha is None else apply_orientation(alpha, orientation)


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


def check_pixels(header: Header, max_pixels: int) -> None:
    """413 for an image whose declared size is over the limit, before anything is allocated for it."""
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise ApiError(
            413,
            "too_many_pixels",
            f"image is {header.width}×{header.height} = {pixels / 1e6:.1f} Mpx; "
            f"the limit is {max_pixels / 1e6:.1f} Mpx (COLORIZER_MAX_PIXELS)",
        )


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation tag (1..8) of a JPEG, or 1 when absent or unreadable."""
    i = 2
    try:
        while i + 4 < len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
                return _tiff_orientation(data[i + 10 : i + 2 + length])
            if marker == 0xDA:  # start of scan: no more metadata
                break
            i += 2 + length
    except (struct.error, IndexError):
        return 1
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    endian = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", tiff[4:8])
    (count,) = struct.unpack(endian + "H", tiff[offset : offset + 2])
    for k in range(count):
        entry = tiff[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, _, _, value = struct.unpack(endian + "HHIH", entry[:10])
        if tag == 0x0112:
            return value if 1 <= value <= 8 else 1
    return 1


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
