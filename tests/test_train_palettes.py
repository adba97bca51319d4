"""train.palettes: palettes taken from photos, the neutral weight fitted to their shares, and the scoring CLI run on
real photo files with a small exported hint model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.hint_model import export_small_model
from train.lab import lab_to_bgr
from train.palettes import PALETTE_SIZES, fit_neutral_weight, main, palette_of


def test_a_palette_is_the_photos_main_colours_with_the_share_each_covers() -> None:
    rng = np.random.default_rng(0)
    ab = rng.normal(0, 1, (2, 40, 40)).astype(np.float32)  # a gray photo with a little noise ...
    ab[:, :10] += np.array([40.0, 20.0], np.float32)[:, None, None]  # ... and an orange quarter
    colours, shares = palette_of(ab, 2)
    order = np.argsort(shares)
    np.testing.assert_allclose(shares[order], [0.25, 0.75])
    np.testing.assert_allclose(colours[order], [[40, 20], [0, 0]], atol=0.5)


def test_the_fit_finds_the_neutral_weight_that_gives_the_true_shares() -> None:
    gray, orange, blue = [1.0, -2.0], [40.0, 20.0], [-10.0, -40.0]
    palettes = [
        (np.array([gray, orange]), np.array([0.75, 0.25])),
        (np.array([orange, gray, blue]), np.array([0.2, 0.6, 0.2])),  # gray covers 3 times a colour in both
        (np.array([orange, blue]), np.array([0.5, 0.5])),  # coloured alone: equal
    ]
    weight, error, equal_error = fit_neutral_weight(palettes)
    assert weight == 3.0
    assert error < 1e-9 < equal_error


def write_photo(path: Path, seed: int) -> None:
    """A mostly gray photo (noisy L and ab) with a coloured block covering a fifth of it."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((64, 80, 3), np.float32)
    lab[..., 0] = rng.uniform(30, 80, (64, 80))
    lab[..., 1:] = rng.normal(0, 1.5, (64, 80, 2))
    hue = rng.uniform(0, 2 * np.pi)
    lab[:, :16, 1:] += 45 * np.array([np.cos(hue), np.sin(hue)], np.float32)
    cv2.imwrite(str(path), lab_to_bgr(lab))


def test_the_cli_fits_on_the_train_split_and_scores_each_way_of_weighing_on_another(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(16):
        write_photo(photos / f"photo{i:02d}.png", i)
    model = export_small_model(tmp_path / "hints.onnx", hints=True)
    figure = tmp_path / "examples.png"
    args = [str(model), str(photos), "--val_fraction", "0.25", "--calib_fraction", "0.3", "--examples", str(figure)]
    result = main(args)
    sheet = cv2.imread(str(figure))
    assert sheet.shape[1] == 5 * 160  # gray, equal weights, served weights, true shares, original
    assert 28 + 160 <= sheet.shape[0] <= 28 + 6 * 160  # a header, then one row a photo shown
    assert result.pop("fitted_weight") > 2  # gray covers four times the colour in these photos
    assert set(result) == {f"{way} k={k}" for way in ("equal", "service", "true shares") for k in PALETTE_SIZES}
    assert all(np.isfinite(v) and v > 10 for v in result.values())
