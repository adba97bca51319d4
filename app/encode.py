"""Encode the result for the wire; PNG by default, fast settings chosen by bench/stages.py.

PNG at levels 1–3 is written here: every row Sub-filtered in one vectorised pass, the image data deflated by
ISA-L (the ``isal`` package) at the same level. On photos that is several times faster than libpng's
level 1, whose per-row filter search costs more than the deflate, and the files are no larger
(docs/PERFORMANCE.md). Level 0 and levels 4–9 use OpenCV (libpng + zlib).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np
from isal import isal_zlib

from app.errors import ColorizerError

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ISAL_LEVELS = (1, 2, 3)  # COLORIZER_PNG_COMPRESSION values that ISA-L serves (its levels have the same numbers)


def check_format(fmt: str) -> str:
    fmt = fmt.lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in MEDIA_TYPES:
        raise ColorizerError("unsupported_output_format", f"format must be png, jpeg or webp, not {fmt!r}")
    return fmt


def encode_image(img: np.ndarray, fmt: str, png_compression: int = 2) -> bytes:
    """uint8 BGR(A) -> encoded bytes. JPEG has no alpha, so it is dropped there."""
    if fmt == "png":
        if png_compression in ISAL_LEVELS and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in (3, 4):
            return png_isal(img, png_compression)
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, png_compression])
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", img[:, :, :3], [cv2.IMWRITE_JPEG_QUALITY, 92])
    else:
        ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} image as {fmt}")
    return buf.tobytes()


def png_isal(img: np.ndarray, level: int) -> bytes:
    """uint8 (H, W, 3|4) BGR(A) -> PNG, deflated by ISA-L at ``level`` (1-3)."""
    compress = isal_zlib.compress
    return png_sub_filtered(img, lambda data: bytes(compress(data, level)))


def png_sub_filtered(img: np.ndarray, deflate: Callable[[np.ndarray], bytes]) -> bytes:
    """uint8 (H, W, 3|4) BGR(A) -> an 8-bit RGB(A) PNG: Sub filter on every row, one IDAT made by ``deflate``
    (any zlib-format compressor)."""
    height, width, channels = img.shape
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    rows = rgb.reshape(height, width * channels)
    # Each scanline is its filter type (1 = Sub) and then each byte minus the same byte of the pixel to its
    # left, modulo 256 (uint8 arithmetic wraps exactly so).
    filtered = np.empty((height, width * channels + 1), np.uint8)  # (H, 1 + W·C)
    filtered[:, 0] = 1
    filtered[:, 1 : 1 + channels] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=filtered[:, 1 + channels :])
    color_type = 2 if channels == 3 else 6  # RGB or RGBA, 8 bits per sample
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"".join((PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", deflate(filtered)), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
