"""Colour guidance: parsing and checking the hints field, points onto the model grid, palette and reference
photo onto the model's bins."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.errors import ColorizerError
from app.guidance import NEUTRAL_WEIGHT, Guidance, colour_ab, parse_hints, reference_distribution

BINS = np.array([[a, b] for a in range(-80, 90, 10) for b in range(-80, 90, 10)], np.float32)


def bin_of(ab: tuple[float, float]) -> int:
    return int(((BINS - np.array(ab)) ** 2).sum(1).argmin())


def test_colour_goes_through_opencvs_lab() -> None:
    a, b = colour_ab("#c03020")
    lab = cv2.cvtColor(np.array([[[0x20, 0x30, 0xC0]]], np.float32) / 255, cv2.COLOR_BGR2Lab)[0, 0]
    assert (a, b) == pytest.approx((lab[1], lab[2]))
    assert a > 40  # a red
    assert colour_ab("#808080") == pytest.approx((0.0, 0.0), abs=1e-3)


def test_a_point_lands_on_the_grid_cell_of_the_squeezed_photo() -> None:
    """A 400×100 photo squeezed to 64×64: x scales by 64/400, y by 64/100."""
    g = parse_hints('{"points": [{"x": 300, "y": 50, "color": "#2a5caa"}]}')
    hints = g.for_image(400, 100, 64, BINS)
    ys, xs = np.nonzero(hints.hint_mask[0])
    assert (int(ys.mean().round()), int(xs.mean().round())) == (32, 48)
    assert 1 <= len(ys) <= 9  # the default patch, about 3×3 cells, as training used 1–4 px patches
    np.testing.assert_allclose(hints.hint_ab[:, ys, xs].T, np.tile(colour_ab("#2a5caa"), (len(ys), 1)), rtol=1e-5)
    assert not hints.hint_ab[:, hints.hint_mask[0] == 0].any()
    assert not hints.global_hint.any()  # no palette: no global hint


def test_a_radius_in_photo_pixels_is_an_ellipse_on_the_grid() -> None:
    g = parse_hints('{"points": [{"x": 200, "y": 50, "color": "#ff0000", "radius": 40}]}')
    mask = g.for_image(400, 100, 64, BINS).hint_mask[0]
    ys, xs = np.nonzero(mask)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert width == pytest.approx(2 * 40 * 64 / 400, abs=2)  # ~13 cells across
    assert height == pytest.approx(2 * 40 * 64 / 100, abs=2)  # ~51 cells down


def test_palette_and_reference_become_a_global_hint() -> None:
    g = parse_hints('{"palette": ["#2a5caa", "#e0c080"]}')
    hint = g.for_image(10, 10, 8, BINS).global_hint
    assert hint.shape == (len(BINS) + 1,)
    assert hint[-1] == 1.0
    assert hint[:-1].sum() == pytest.approx(1.0)
    assert hint[bin_of(colour_ab("#2a5caa"))] == pytest.approx(0.5)
    assert hint[bin_of(colour_ab("#e0c080"))] == pytest.approx(0.5)
    assert g.kind == "global"
    # a reference photo, half blue and half orange, wins over the palette
    photo = np.zeros((50, 100, 3), np.uint8)
    photo[:, :50] = (200, 80, 20)
    photo[:, 50:] = (20, 120, 240)
    ref = reference_distribution(photo, BINS)
    assert ref.sum() == pytest.approx(1.0)
    both = Guidance(g.points, g.palette, ref)
    top2 = set(np.argsort(both.global_hint(BINS)[:-1])[-2:].tolist())
    blue = cv2.cvtColor(np.array([[[200, 80, 20]]], np.float32) / 255, cv2.COLOR_BGR2Lab)[0, 0, 1:]
    orange = cv2.cvtColor(np.array([[[20, 120, 240]]], np.float32) / 255, cv2.COLOR_BGR2Lab)[0, 0, 1:]
    assert top2 == {bin_of(tuple(blue)), bin_of(tuple(orange))}


def test_kinds() -> None:
    assert parse_hints(None).kind == "none"
    assert not parse_hints("")
    assert parse_hints('{"points": [{"x": 1, "y": 1, "color": "#000000"}]}').kind == "points"
    assert parse_hints('{"points": [{"x": 1, "y": 1, "color": "#000000"}], "palette": ["#ffffff"]}').kind == "both"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"colours": []}', "unknown key 'colours'"),
        ('{"points": {}}', "must be a list"),
        ('{"points": [{"x": 1, "y": 2}]}', "lacks 'color'"),
        ('{"points": [{"x": 1, "y": 2, "color": "red"}]}', "'red' is not a #rrggbb colour"),
        ('{"points": [{"x": 1, "y": 2, "color": "#12345"}]}', "not a #rrggbb"),
        ('{"points": [{"x": "1", "y": 2, "color": "#123456"}]}', "point 0 x must be a number"),
        ('{"points": [{"x": 1, "y": 2, "color": "#123456", "radius": -3}]}', "negative"),
        ('{"points": [{"x": 1, "y": 2, "color": "#123456", "size": 3}]}', "unknown key 'size'"),
        ('{"palette": ["#zzzzzz"]}', "palette entry 0"),
        ('{"points": [' + ",".join(['{"x": 1, "y": 1, "color": "#000000"}'] * 257) + "]}", "the limit is 256"),
    ],
)
def test_bad_hints_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ColorizerError) as info:
        parse_hints(text)
    assert info.value.code == "invalid_hints"
    assert words in info.value.detail


def test_a_point_outside_the_image_is_invalid() -> None:
    g = parse_hints('{"points": [{"x": 320, "y": 10, "color": "#123456"}]}')
    with pytest.raises(ColorizerError, match=r"point 0 at \(320, 10\) is outside the 320×240 image"):
        g.for_image(320, 240, 64, BINS)


def test_a_near_neutral_palette_colour_weighs_as_the_area_such_colours_cover() -> None:
    red, gray, tinted_gray = "#e03010", "#808080", "#9090a0"  # chroma 87, 0 and 9 ab units
    assert np.hypot(*colour_ab(tinted_gray)) > 5
    hint = parse_hints(f'{{"palette": ["{red}", "{gray}"]}}').global_hint(BINS)[:-1]
    assert hint.sum() == pytest.approx(1.0)
    assert hint[bin_of(colour_ab(gray))] == pytest.approx(NEUTRAL_WEIGHT / (NEUTRAL_WEIGHT + 1))
    assert hint[bin_of(colour_ab(red))] == pytest.approx(1 / (NEUTRAL_WEIGHT + 1))
    # a gray with a visible tint is a colour like any other
    hint = parse_hints(f'{{"palette": ["{red}", "{tinted_gray}"]}}').global_hint(BINS)[:-1]
    assert hint[bin_of(colour_ab(tinted_gray))] == pytest.approx(0.5)


def test_batches_take_only_a_palette() -> None:
    assert parse_hints('{"palette": ["#123456"]}', points_allowed=False).palette
    with pytest.raises(ColorizerError, match="take only a palette"):
        parse_hints('{"points": []}', points_allowed=False)
