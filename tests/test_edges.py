"""Edge-aware upsampling of the model's colour (app/edges.py), on real arrays with OpenCV: colour that the network
smeared across an edge of lightness is put back on its own side, a surface's colour is kept, and the result is at
the model's input size for the join."""

from __future__ import annotations

import cv2
import numpy as np

from app.edges import guided_ab

S = 128  # the model's input side; its output is S/2
RED, BLUE = np.array([40.0, 20.0], np.float32), np.array([-30.0, -30.0], np.float32)


def two_surfaces() -> np.ndarray:
    """L at model size: a dark left half (L 30) and a light right half (L 80), the edge between x = 63 and 64."""
    lightness = np.full((S, S), 30.0, np.float32)
    lightness[:, S // 2 :] = 80.0
    return lightness


def smeared() -> np.ndarray:
    """(2, S/2, S/2): red on the left, blue on the right, blended over 4 output cells around the edge, as a network
    unsure where one surface ends gives it."""
    x = np.arange(S // 2, dtype=np.float32) + 0.5
    weight = np.clip((x - (S // 4 - 2)) / 4, 0, 1)  # 0 left of the blend, 1 right of it
    ab = RED[:, None] * (1 - weight) + BLUE[:, None] * weight  # (2, S/2)
    return np.ascontiguousarray(np.repeat(ab[:, None, :], S // 2, axis=1), dtype=np.float32)


def bilinear(ab: np.ndarray) -> np.ndarray:
    return cv2.resize(ab.transpose(1, 2, 0), (S, S), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)


def test_colour_smeared_across_an_edge_goes_back_to_its_own_side() -> None:
    ab = smeared()
    out, plain = guided_ab(ab, two_surfaces()), bilinear(ab)
    assert out.shape == (2, S, S)
    assert out.dtype == np.float32
    row, edge = S // 2, S // 2  # the first light pixel
    for x, truth in ((edge - 2, RED), (edge - 1, RED), (edge, BLUE), (edge + 1, BLUE)):  # the pixels at the edge
        error, plain_error = np.abs(out[:, row, x] - truth).max(), np.abs(plain[:, row, x] - truth).max()
        assert error < 0.6 * plain_error, (x, out[:, row, x], plain[:, row, x])  # bilinear: a blend of both
    near = out[0, row, edge - 10 : edge + 10]
    assert (near[:10] > 20).all()
    assert (near[10:] < -10).all()
    assert int(np.argmax(np.abs(np.diff(out[0, row])))) == edge - 1  # the step in colour is the step in lightness


def test_one_surface_keeps_its_colour_to_the_borders() -> None:
    ab = np.broadcast_to(RED[:, None, None], (2, S // 2, S // 2)).astype(np.float32)
    ramp = np.tile(np.linspace(20, 90, S, dtype=np.float32), (S, 1))  # shading, no edge: the colour must not follow it
    np.testing.assert_allclose(guided_ab(ab, ramp), np.broadcast_to(RED[:, None, None], (2, S, S)), atol=1e-3)


def test_where_lightness_is_flat_the_colour_is_smoothed_not_moved() -> None:
    rng = np.random.default_rng(0)
    ab = rng.normal(0, 15, (2, S // 2, S // 2)).astype(np.float32)
    out = guided_ab(ab, np.full((S, S), 50.0, np.float32))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), bilinear(ab).mean(axis=(1, 2)), atol=0.5)  # no colour shift
    assert out.std() < bilinear(ab).std()  # speckle smoothed where nothing in L says it is real
