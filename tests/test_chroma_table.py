"""The (L, chroma) table of train.corrections: each cell's least-squares scale, over the visible pixels only."""

from __future__ import annotations

import dataclasses

import numpy as np

from train.corrections import Photo, by_table, fit_chroma_table, table_cells
from train.lab import bgr_to_lab, lab_to_bgr


def photo_whose_truth_is(scale_left: float, scale_right: float, visible: np.ndarray) -> Photo:
    """A 16 × 32 photo at L 60 whose predicted ab is a mild orange everywhere; its truth has that ab times
    scale_left on the left half and times scale_right on the right half; ``visible`` its alpha."""
    ab = np.zeros((2, 16, 32), np.float32)
    ab[0], ab[1] = 8.0, 12.0  # chroma 14.4: one column of the table
    truth_lab = np.zeros((16, 32, 3), np.float32)
    truth_lab[..., 0] = 60.0
    truth_lab[:, :16, 1:] = scale_left * ab[:, :, :16].transpose(1, 2, 0)
    truth_lab[:, 16:, 1:] = scale_right * ab[:, :, 16:].transpose(1, 2, 0)
    return Photo(lab_to_bgr(truth_lab), np.full((16, 32), 60.0, np.float32), ab, visible)


def test_each_cell_gets_the_least_squares_scale_of_its_visible_pixels() -> None:
    visible_left = np.zeros((16, 32), np.float32)
    visible_left[:, :16] = 1.0  # the right half lies under a cut-out's transparent backdrop ...
    photo = photo_whose_truth_is(2.0, -1.0, visible_left)  # ... and says the opposite colour
    table = fit_chroma_table([photo])
    row, column = (int(c[0, 0]) for c in table_cells(photo.ab, photo.small))
    assert (row, column) == (6, 3)  # L 60–70; chroma 14.4 in the 10–15 bin, the fourth
    truth_ab = bgr_to_lab(photo.truth)[:, :16, 1:]
    expected = (truth_ab * photo.ab[:, :, :16].transpose(1, 2, 0)).sum() / (photo.ab[:, :, :16] ** 2).sum()
    assert abs(table[row, column] - expected) < 1e-6
    assert abs(table[row, column] - 2.0) < 0.05  # up to the truth's 8-bit rounding
    untouched = np.ones_like(table, dtype=bool)
    untouched[row, column] = False
    assert (table[untouched] == 1.0).all()  # a cell with no pixel leaves colour as it is
    everywhere = fit_chroma_table([dataclasses.replace(photo, visible=np.ones((16, 32), np.float32))])
    assert abs(everywhere[row, column] - 0.5) < 0.05  # (2 − 1) / 2 once the hidden half counts


def test_the_table_scales_each_pixel_by_its_own_cell() -> None:
    ab = np.zeros((2, 2, 2), np.float32)
    ab[0] = [[1.0, 20.0], [1.0, 40.0]]  # chroma bins 0, 4 / 0, 6
    small = np.array([[5.0, 5.0], [95.0, 95.0]], np.float32)  # rows 0 (top) and 9 (bottom)
    table = np.arange(70, dtype=np.float64).reshape(10, 7)
    scaled = by_table(table)(ab, small)
    np.testing.assert_allclose(scaled[0], [[1.0 * 0, 20.0 * 4], [1.0 * 63, 40.0 * 69]])
    assert (scaled[1] == 0).all()
