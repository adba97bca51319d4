"""Point hints reached after the model (app/point_follow.py), on real arrays with OpenCV: the residual at a point
is spread over the surface that was clicked, fades with distance, and stops at a change of lightness."""

from __future__ import annotations

import numpy as np

from app.point_follow import follow_points

S = 128  # the model's input side; its output is S/2


def two_surfaces() -> np.ndarray:
    """L at model size: a dark left half (L 30) and a light right half (L 80)."""
    lightness = np.full((S, S), 30.0, np.float32)
    lightness[:, S // 2 :] = 80.0
    return lightness


def points(*spots: tuple[int, int, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """hint_ab (2, S, S) and hint_mask (1, S, S) with a 4-px patch of (a, b) at each (y, x)."""
    hint_ab, mask = np.zeros((2, S, S), np.float32), np.zeros((1, S, S), np.float32)
    for y, x, a, b in spots:
        mask[0, y : y + 4, x : x + 4] = 1
        hint_ab[:, y : y + 4, x : x + 4] = np.array([a, b], np.float32)[:, None, None]
    return hint_ab, mask


def test_without_points_the_model_output_is_left_as_it_is() -> None:
    ab = np.random.default_rng(0).normal(0, 10, (2, S // 2, S // 2)).astype(np.float32)
    assert follow_points(ab, two_surfaces(), *points()) is ab


def test_a_point_gets_its_colour_which_spreads_over_its_surface_and_stops_at_an_edge() -> None:
    ab = np.zeros((2, S // 2, S // 2), np.float32)
    out = follow_points(ab, two_surfaces(), *points((60, 20, 40.0, 20.0)))  # on the dark half; output cell (31, 11)
    np.testing.assert_allclose(out[:, 31, 11], [40, 20], atol=0.5)  # the colour asked for, where it was asked
    along = [float(out[0, 31, x]) for x in (11, 18, 25, 31)]  # on the same surface, moving away from the point
    assert along == sorted(along, reverse=True)
    assert along[-1] > 10  # still well coloured near the edge
    assert np.abs(out[:, :, S // 4 :]).max() < 0.5  # across the edge in lightness: untouched
    assert out.dtype == np.float32
    assert out.shape == ab.shape


def test_each_point_keeps_its_own_colour_on_its_own_surface() -> None:
    ab = np.full((2, S // 2, S // 2), 5.0, np.float32)  # the network's colour everywhere: a warm gray
    hint_ab, mask = points((60, 20, 40.0, 20.0), (60, 100, -30.0, -30.0))
    out = follow_points(ab, two_surfaces(), hint_ab, mask)
    np.testing.assert_allclose(out[:, 31, 11], [40, 20], atol=0.5)
    np.testing.assert_allclose(out[:, 31, 51], [-30, -30], atol=0.5)
    assert out[0, 31, 28] > 20  # the left surface leans to the left point's red ...
    assert out[0, 31, 36] < -10  # ... the right one to the right point's blue-green


def test_the_colour_under_the_whole_point_is_what_reaches_the_colour_asked_for_not_one_odd_cell() -> None:
    """Model 2.3.0's output dipped at the centre cell of a red point (a ≈ 17 among neighbours ≈ 30); correcting by
    that one cell's residual overshot the whole neighbourhood by ~10 ab units."""
    ab = np.full((2, S // 2, S // 2), 30.0, np.float32)
    ab[:, 31, 11] = 10.0  # the patch below covers output cells 30-31 × 10-11; one of them is odd
    out = follow_points(ab, two_surfaces(), *points((60, 20, 40.0, 20.0)))
    footprint = out[:, 30:32, 10:12].reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(footprint, [40, 20], atol=0.5)  # on average under the point: the colour asked for
