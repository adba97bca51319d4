"""The one header read (app/image_header.py): format, declared size and EXIF orientation, and decoding that takes
the header instead of parsing the bytes again."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from app.decode import decode_lightness
from app.errors import ColorizerError
from app.image_header import checked_header, read_header
from app.pipeline import prepare
from tests.corpus import exif_jpeg, gray


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_the_header_carries_the_exif_orientation() -> None:
    stored = gray()
    header = read_header(exif_jpeg(6))
    assert (header.format, header.orientation) == ("jpeg", 6)
    assert (header.height, header.width) == stored.shape  # as stored: the orientation turns it later
    assert header.pixels == stored.size
    assert read_header(png(stored)).orientation == 1  # only JPEG EXIF is read


def test_decoding_follows_the_header_it_is_given() -> None:
    data = exif_jpeg(6)
    header = read_header(data)
    upright = decode_lightness(data, header).lightness
    as_stored = decode_lightness(data, dataclasses.replace(header, orientation=1)).lightness
    assert as_stored.shape == gray().shape
    assert upright.shape == gray().shape[::-1]  # turned 90° clockwise, as a viewer shows it
    np.testing.assert_array_equal(upright, cv2.rotate(as_stored, cv2.ROTATE_90_CLOCKWISE))


def test_prepare_uses_a_header_read_before_or_reads_one_itself() -> None:
    data = exif_jpeg(6)
    given = prepare(data, 64, 10**8, header=checked_header(data, 10**8))
    read_here = prepare(data, 64, 10**8)
    np.testing.assert_array_equal(given.full_l, read_here.full_l)
    assert given.small_l.shape == (1, 64, 64)


def test_the_pixel_limit_is_checked_on_the_header_with_a_sentence() -> None:
    with pytest.raises(ColorizerError) as refused:
        checked_header(png(gray()), 1000)
    assert refused.value.code == "too_many_pixels"
    assert "COLORIZER_MAX_PIXELS" in refused.value.detail
