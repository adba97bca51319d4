"""The service's own PNG writer must be a lossless PNG every decoder reads: OpenCV's and Pillow's, at every level
the setting allows, with and without alpha, on sizes that exercise the row filter's edges (1 pixel wide, odd)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from app.encode import encode_image

SHAPES = [(1, 1), (1, 7), (7, 1), (33, 65), (128, 97)]


def image(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize("channels", [3, 4])
def test_png_round_trips_exactly_through_opencv_and_pillow(level: int, channels: int) -> None:
    for i, (height, width) in enumerate(SHAPES):
        bgr = image(height, width, channels, seed=10 * level + i)
        png = encode_image(bgr, "png", level)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        by_opencv = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert by_opencv.shape == bgr.shape
        assert np.array_equal(by_opencv, bgr), f"level {level}, {height}×{width}×{channels}"
        with Image.open(io.BytesIO(png)) as decoded:
            decoded.load()  # verifies every chunk's CRC and the zlib stream
            assert decoded.mode == ("RGB" if channels == 3 else "RGBA")
            rgb = np.asarray(decoded)
        reorder = cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA
        assert np.array_equal(cv2.cvtColor(rgb, reorder), bgr)


def test_higher_levels_are_not_larger_on_a_photo() -> None:
    """The level a user sets must mean what it says: on photo-like content, level 9 is no larger than level 2."""
    gray = cv2.GaussianBlur(image(256, 256, 1, seed=1), (0, 0), 3)
    photo = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    assert len(encode_image(photo, "png", 9)) <= len(encode_image(photo, "png", 2))
