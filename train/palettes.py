"""How much a palette colour weighs in the global hint (app/guidance.py, NEUTRAL_WEIGHT), fitted and then scored.

A person's palette names colours, not how much of the photo each covers. Training's palette-like global hints carry
the truth's area shares (train/hints.py), so the service gives each colour the share such a colour is likely to
cover. This fits that prior on the train split: each photo's palette is the k-means colours of its ab (k = 2, 3, 5),
and the weight of a near-neutral colour against a coloured one is the one whose predicted shares come closest to the
clusters' real ones. It then scores, on the calibration split, the model given each palette with equal weights,
with the fitted weight, and with the true shares (an oracle no user has), photos and cut-outs apart:

    .venv/bin/python -m train.palettes models/colorizer.onnx ~/.cache/colorize/train [--split val] \
        [--examples docs/palette_weights.png]
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np

from app.guidance import NEUTRAL_WEIGHT, colours_on_bins, palette_distribution, palette_weights
from train.data import split_images
from train.evaluate import (
    PALETTE_COLOURS,
    Hints,
    OnnxColorizer,
    calibration_sweep_parser,
    contact_sheet,
    eval_photo,
    gray_baseline,
    psnr,
)
from train.hints import global_hint, palette_of

PALETTE_SIZES = (2, 3, 5)
WEIGHTS = np.round(np.arange(1.0, 6.01, 0.1), 1)  # the neutral weights tried by the fit
EXAMPLE_ROWS = (4, 2)  # the photos the served weights helped most, then the ones they hurt most


def predicted_shares(colours: np.ndarray, neutral_weight: float) -> np.ndarray:
    """The shares the service's weights give a palette's colours (K, 2) when a near-neutral one weighs
    ``neutral_weight``."""
    weights = palette_weights(colours, neutral_weight)
    return weights / weights.sum()


def fit_neutral_weight(palettes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    """The neutral weight of WEIGHTS whose predicted shares have the least squared error against the true ones,
    that error, and equal weights' error (the mean over palettes of the summed squares)."""

    def error(w: float) -> float:
        return float(np.mean([((predicted_shares(c, w) - s) ** 2).sum() for c, s in palettes]))

    errors = [error(w) for w in WEIGHTS]
    best = int(np.argmin(errors))
    return float(WEIGHTS[best]), errors[best], error(1.0)


def truth_palettes(colorizer: OnnxColorizer, files: list[str]) -> Iterator[tuple[np.ndarray, bool, int, tuple]]:
    """For each photo and palette size: the photo, whether it is a cut-out, k, and its palette (colours, shares)."""
    for path in files:
        truth, cut_out = eval_photo(path)
        ab = colorizer.truth_ab(truth)
        for k in PALETTE_SIZES:
            yield truth, cut_out, k, palette_of(ab, k)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = calibration_sweep_parser(__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=["calib", "val"], default="calib", help="the photos the weights are scored on")
    p.add_argument("--examples", default="", help=f"a figure of the photos most changed, k = {PALETTE_COLOURS}")
    a = p.parse_args(argv)
    train, val, calib = split_images(a.folder, a.val_fraction, a.calib_fraction)
    colorizer = OnnxColorizer(a.model)
    assert colorizer.bins is not None, "this model takes no hints"
    bins = colorizer.bins
    fitted = [pal for *_, pal in truth_palettes(colorizer, [os.path.join(a.folder, f) for f in train])]
    weight, err, equal_err = fit_neutral_weight(fitted)
    print(f"train split, {len(fitted)} palettes: neutral weight {weight:g} (squared share error {err:.4f}, equal")
    print(f"  weights {equal_err:.4f}); the service's NEUTRAL_WEIGHT is {NEUTRAL_WEIGHT:g}")
    blank = colorizer.no_hints()
    scores: dict[tuple[str, int, bool], list[float]] = {}
    examples: list[tuple[float, list[np.ndarray]]] = []  # (served − equal PSNR, the row's images), k = 3
    scored = calib if a.split == "calib" else val
    for truth, cut_out, k, (colours, shares) in truth_palettes(colorizer, [os.path.join(a.folder, f) for f in scored]):
        ways = {
            "equal": palette_distribution(colours, bins, neutral_weight=1.0),
            "service": palette_distribution(colours, bins),
            "true shares": colours_on_bins(colours, shares, bins),
        }
        preds = {w: colorizer(truth, Hints(blank.hint_ab, blank.hint_mask, global_hint(d))) for w, d in ways.items()}
        psnrs = {way: psnr(pred[..., ::-1], truth[..., ::-1]) for way, pred in preds.items()}
        for way, value in psnrs.items():
            scores.setdefault((way, k, cut_out), []).append(value)
        if k == PALETTE_COLOURS:
            examples.append((psnrs["service"] - psnrs["equal"], [gray_baseline(truth), *preds.values(), truth]))
    result: dict[str, float] = {}
    print(f"{a.split} split, PSNR (dB) of the model given each photo's palette: all | photos | cut-outs")
    for way in ("equal", "service", "true shares"):
        for k in PALETTE_SIZES:
            photos, cut_outs = scores.get((way, k, False), []), scores.get((way, k, True), [])
            result[f"{way} k={k}"] = float(np.mean(photos + cut_outs))
            print(
                f"  {way:12s} k={k}: {result[f'{way} k={k}']:.3f} | {np.mean(photos) if photos else float('nan'):.3f}"
                f" | {np.mean(cut_outs) if cut_outs else float('nan'):.3f}"
            )
    if a.examples:
        write_examples(examples, a.examples)
    return result | {"fitted_weight": weight}


def write_examples(examples: list[tuple[float, list[np.ndarray]]], path: str) -> None:
    """The photos the served weights changed most, gains first, then the largest losses, as a contact sheet."""
    ranked = sorted(examples, key=lambda e: -e[0])
    gains, losses = ranked[: EXAMPLE_ROWS[0]], [e for e in ranked[EXAMPLE_ROWS[0] :] if e[0] < 0]
    chosen = gains + losses[max(0, len(losses) - EXAMPLE_ROWS[1]) :]  # the largest losses, which sort last
    labels = ["gray input", "equal weights", "served weights", "true shares", "original"]
    cv2.imwrite(path, contact_sheet([row for _, row in chosen], labels))
    print(f"wrote {path}: served − equal weights, dB: " + ", ".join(f"{c:+.2f}" for c, _ in chosen))


if __name__ == "__main__":
    main()
