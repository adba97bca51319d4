"""Could a step after the network raise a model's automatic PSNR? Corrections of its automatic ab, scored on the
calibration split (never the evaluation split) at the model's own colourfulness.

Any correction that fades colour raises PSNR by itself (a grayer guess is a safer one), so each correction's ab is
scaled by the gain that brings the photos' colourfulness back to the model's as served; only then is its PSNR a
fair comparison. The photos are coloured as the service colours them (app/edges.py, then the join).

The corrections: a gray-world shift (a share of each photo's mean or median ab taken off every pixel), and a fade
of the highlights (white subjects that come out cream). Then the mean of a photo's ab and its mirror image's ab,
mirrored back (test-time augmentation: twice the model's work per image). With ``--with other.onnx`` a last row
scores the mean of the two models' ab: if two separately trained networks made independent errors, their mean would
beat either.

With ``--table`` a row scales each automatic pixel's ab by a number per cell of (the L the model saw, the predicted
chroma), each the least-squares fit of the truth's ab on the prediction over the visible pixels of the training
photos (neither split, so the 30 calibration photos only set its gain): the regression head, trained with L1, gives
the median of its guesses, which a per-cell scale could move towards their mean. ``--validation`` then scores that
row once on the validation split too, at the gain chosen on calibration (docs/training_history.md, "A chroma
scale per (L, chroma) cell").

    python -m train.corrections models/colorizer.onnx ~/.cache/colorize/train --with runs/v21/v21.onnx
    python -m train.corrections models/colorizer.onnx ~/.cache/colorize/train --table --validation
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from app.edges import guided_ab
from train.data import split_images
from train.evaluate import (
    OnnxColorizer,
    calibration_files,
    calibration_sweep_parser,
    colourfulness,
    gain_for_colourfulness,
    join_ab,
    neutral_cast,
    psnr,
    read_eval_photo,
)
from train.lab import bgr_to_lab

Correction = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ab (2, h, w), the L the model saw (S, S)) -> ab
GAIN_RANGE = (0.5, 3.0)
GAIN_STEPS = 10  # bisection steps: the gain to within 2.5 / 2^10 ≈ 0.002
HINDSIGHT_SCALES = np.linspace(0.0, 1.6, 33)  # steps of 0.05; 1 (the model as served) and 0 (gray) among them
FLAT_STD = 0.3  # L units: a pixel whose 5 × 5 neighbourhood varies less is "flat" (a backdrop, a clear sky)
L_BIN_WIDTH = 10  # the table's rows: L in bins of 10 units, 0–100
CHROMA_EDGES = np.array([3.0, 6, 10, 15, 22, 30])  # its columns: the predicted chroma in ab units, 7 bins


@dataclass
class Photo:
    truth: np.ndarray  # uint8 BGR at the evaluation size
    small: np.ndarray  # (S, S) the L the model saw
    ab: np.ndarray  # (2, h, w) the automatic ab
    visible: np.ndarray  # alpha in [0, 1] at the evaluation size: a cut-out's backdrop is the evaluation's gray


@dataclass
class CorrectionRow:
    name: str
    gain: float  # the corrected ab's scale that gives the model's colourfulness back (1 for the model as served)
    psnr: float
    colourfulness: float  # the photos' mean (Hasler–Süsstrunk M)
    neutral_cast: float  # mean chroma where the truth is neutral, over the photos that have any


def shift_by(statistic: Callable[..., np.ndarray], share: float) -> Correction:
    """Takes ``share`` of the photo's mean or median ab off every pixel."""
    return lambda ab, small: ab - share * statistic(ab.reshape(2, -1), axis=1)[:, None, None]


def fade_highlights(strength: float, from_l: float) -> Correction:
    """Multiplies ab by 1 − strength · t, t rising from 0 at L = from_l to 1 at L = 100."""

    def fade(ab: np.ndarray, small: np.ndarray) -> np.ndarray:
        lightness = cv2.resize(small, (ab.shape[2], ab.shape[1]), interpolation=cv2.INTER_AREA)
        return ab * (1 - strength * np.clip((lightness - from_l) / (100 - from_l), 0, 1))[None]

    return fade


CORRECTIONS: dict[str, Correction] = {
    "mean ab × 0.5 off": shift_by(np.mean, 0.5),
    "mean ab × 1 off": shift_by(np.mean, 1.0),
    "median ab × 0.5 off": shift_by(np.median, 0.5),
    "median ab × 1 off": shift_by(np.median, 1.0),
    "highlights above L 70 faded by up to 0.5": fade_highlights(0.5, 70),
    "highlights above L 70 faded by up to 1": fade_highlights(1.0, 70),
    "highlights above L 50 faded by up to 0.5": fade_highlights(0.5, 50),
    "highlights above L 80 faded by up to 1": fade_highlights(1.0, 80),
}


def table_cells(ab: np.ndarray, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel of ab (2, h, w): its row (the L the model saw, area-averaged to h × w) and column (its chroma)."""
    lightness = cv2.resize(small, (ab.shape[2], ab.shape[1]), interpolation=cv2.INTER_AREA)
    rows = np.clip(lightness // L_BIN_WIDTH, 0, 100 // L_BIN_WIDTH - 1).astype(np.intp)
    return rows, np.digitize(np.hypot(*ab), CHROMA_EDGES)


def fit_chroma_table(photos: list[Photo]) -> np.ndarray:
    """Per (L, chroma) cell the scale s minimising Σ w |truth ab − s · ab|² over the photos' pixels, w each pixel's
    visibility (so a cut-out's backdrop does not count); 1 where a cell has no pixel."""
    shape = (100 // L_BIN_WIDTH, len(CHROMA_EDGES) + 1)
    num, den = np.zeros(shape), np.zeros(shape)
    for p in photos:
        size = (p.ab.shape[2], p.ab.shape[1])
        truth = cv2.resize(bgr_to_lab(p.truth)[:, :, 1:], size, interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
        w = cv2.resize(p.visible, size, interpolation=cv2.INTER_AREA)
        cells = table_cells(p.ab, p.small)
        np.add.at(num, cells, w * (p.ab * truth).sum(0))
        np.add.at(den, cells, w * (p.ab * p.ab).sum(0))
    return np.where(den > 0, num / np.where(den > 0, den, 1), 1.0)


def by_table(table: np.ndarray) -> Correction:
    """Multiplies each pixel's ab by its (L, chroma) cell's number."""
    return lambda ab, small: ab * table[table_cells(ab, small)][None]


def automatic_outputs(model: OnnxColorizer, files: list[str]) -> list[Photo]:
    photos = []
    for path in files:
        truth, visible, _ = read_eval_photo(path)
        ab, small = model.raw_ab(truth)
        photos.append(Photo(truth, small, ab, visible))
    return photos


def mirrored_mean(model: OnnxColorizer, photos: list[Photo]) -> list[Photo]:
    """Each photo's ab averaged with the ab of its left-right mirror image, mirrored back."""
    out = []
    for p in photos:
        mirrored, _ = model.raw_ab(np.ascontiguousarray(p.truth[:, ::-1]))
        out.append(dataclasses.replace(p, ab=(p.ab + mirrored[:, :, ::-1]) / 2))
    return out


def at_colourfulness(photos: list[Photo], name: str, correct: Correction, target: float | None) -> CorrectionRow:
    """The correction's row at the gain whose colourfulness is ``target`` (at gain 1 when ``target`` is None); at
    the end of GAIN_RANGE when the range cannot reach it."""
    # The edge-aware step is linear in ab, so the corrected colour is put on the edges once and only scaled after.
    on_edges = [guided_ab(correct(p.ab, p.small), p.small) for p in photos]

    def coloured(gain: float) -> list[np.ndarray]:
        return [join_ab(p.truth, gain * ab) for p, ab in zip(photos, on_edges, strict=True)]

    def colourfulness_at(gain: float) -> float:
        return float(np.mean([colourfulness(out) for out in coloured(gain)]))

    gain = 1.0 if target is None else gain_for_colourfulness(colourfulness_at, target, GAIN_RANGE, GAIN_STEPS)
    pairs = list(zip(coloured(gain), (p.truth for p in photos), strict=True))
    casts = [c for c in (neutral_cast(out, truth) for out, truth in pairs) if np.isfinite(c)]
    return CorrectionRow(
        name,
        gain,
        float(np.mean([psnr(out, truth) for out, truth in pairs])),
        float(np.mean([colourfulness(out) for out, _ in pairs])),
        float(np.mean(casts)) if casts else float("nan"),
    )


def unchanged(ab: np.ndarray, small: np.ndarray) -> np.ndarray:
    return ab


MIRRORED = "mean with the mirror image's ab (2x the work)"


def compare(photos: list[Photo], model: OnnxColorizer, other: OnnxColorizer | None = None) -> list[CorrectionRow]:
    """The model as served first, then each correction, the mirrored mean (and the two models' mean) at its
    colourfulness."""
    served = at_colourfulness(photos, "as served", unchanged, None)
    rows = [served, *(at_colourfulness(photos, n, c, served.colourfulness) for n, c in CORRECTIONS.items())]
    rows.append(at_colourfulness(mirrored_mean(model, photos), MIRRORED, unchanged, served.colourfulness))
    if other is not None:
        pair = [dataclasses.replace(p, ab=(p.ab + other.raw_ab(p.truth)[0]) / 2) for p in photos]
        rows.append(at_colourfulness(pair, "mean of the two models' ab", unchanged, served.colourfulness))
    return rows


@dataclass
class Hindsight:
    served: float  # mean PSNR at scale 1
    best: float  # mean of each photo's best PSNR over HINDSIGHT_SCALES
    scales: np.ndarray  # each photo's best scale
    correlations: dict[str, float]  # Pearson r of the best scale with each photo statistic


def photo_statistics(p: Photo) -> dict[str, float]:
    """What a service could know about a photo before colouring it, besides the network's answer."""
    local_mean = cv2.blur(p.small, (5, 5))
    local_std = np.sqrt(np.maximum(cv2.blur(p.small**2, (5, 5)) - local_mean**2, 0))
    return {
        "predicted chroma": float(np.hypot(*p.ab).mean()),
        "mean L": float(p.small.mean()),
        "spread of L": float(p.small.std()),
        "share above L 80": float((p.small > 80).mean()),
        "share flat": float((local_std < FLAT_STD).mean()),
    }


def pearson(x: list[float], y: np.ndarray) -> float:
    """Pearson's r; NaN (without numpy's warnings) where either side does not vary, or for fewer than 3 photos."""
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if xs.size < 3 or xs.std() == 0 or ys.std() == 0:
        return float("nan")
    return float(np.corrcoef(xs, ys)[0, 1])


def hindsight(photos: list[Photo]) -> Hindsight:
    """Each photo at the scale of its ab that scores best against its truth (see the module's docstring)."""
    curves = []
    for p in photos:
        on_edges = guided_ab(p.ab, p.small)
        curves.append([psnr(join_ab(p.truth, s * on_edges), p.truth) for s in HINDSIGHT_SCALES])
    scores = np.array(curves)  # (photos, scales)
    scales = HINDSIGHT_SCALES[scores.argmax(axis=1)]
    stats = [photo_statistics(p) for p in photos]
    correlations = {k: pearson([s[k] for s in stats], scales) for k in stats[0]}
    served = float(scores[:, np.flatnonzero(np.isclose(HINDSIGHT_SCALES, 1.0))[0]].mean())
    return Hindsight(served, float(scores.max(axis=1).mean()), scales, correlations)


def table_rows(
    model: OnnxColorizer, train: list[str], val: list[str], served_colourfulness: float, calibration: list[Photo]
) -> list[CorrectionRow]:
    """The --table row: fitted on the ``train`` photos' paths, on calibration at the served colourfulness; with
    ``val`` paths (--validation), the model as served and the table at that row's gain on them."""
    table = fit_chroma_table(automatic_outputs(model, train))
    print(f"(L, chroma) table from {len(train)} training photos; rows L 0–100 by {L_BIN_WIDTH}, columns chroma up to")
    print(f"{', '.join(f'{e:g}' for e in CHROMA_EDGES)}, beyond:\n{np.array2string(table, precision=2)}\n")
    name = f"(L, chroma) table from {len(train)} training photos"
    row = at_colourfulness(calibration, name, by_table(table), served_colourfulness)
    if not val:
        return [row]
    held_out = automatic_outputs(model, val)
    at_gain = by_table(row.gain * table)
    return [
        row,
        at_colourfulness(held_out, f"validation ({len(val)} photos): as served", unchanged, None),
        at_colourfulness(held_out, f"validation: the table at gain {row.gain:.3f}", at_gain, None),
    ]


def main(argv: list[str] | None = None) -> list[CorrectionRow]:
    parser = calibration_sweep_parser("Score corrections after the network on the calibration split.")
    parser.add_argument("--with", dest="other", default="", help="a second model file: also score the two's mean")
    parser.add_argument(
        "--table", action="store_true", help="also a chroma scale per (L, chroma) cell, fitted on training photos"
    )
    parser.add_argument(
        "--validation", action="store_true", help="with --table: score it on the validation split too, once"
    )
    a = parser.parse_args(argv)
    if a.validation and not a.table:
        parser.error("--validation scores the --table row; give --table")
    splits = split_images(a.folder, a.val_fraction, a.calib_fraction) if a.table else ([], [], [])
    train, val = ([os.path.join(a.folder, f) for f in split] for split in splits[:2])
    if a.validation and not val:
        raise SystemExit(f"no validation photos under {a.folder}")
    files = calibration_files(a)
    model = OnnxColorizer(a.model)
    photos = automatic_outputs(model, files)
    rows = compare(photos, model, OnnxColorizer(a.other) if a.other else None)
    if a.table:
        rows += table_rows(model, train, val if a.validation else [], rows[0].colourfulness, photos)
    print(f"{len(files)} calibration photos; each correction at the colourfulness of the model as served\n")
    print("| correction | gain | PSNR (dB) | colourfulness | neutral cast |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r.name} | {r.gain:.3f} | {r.psnr:.3f} | {r.colourfulness:.2f} | {r.neutral_cast:.2f} |")
    bound = hindsight(photos)
    print(f"\nIn hindsight, each photo's ab at its best scale: {bound.best:.3f} dB (as served {bound.served:.3f})")
    print("correlation of the best scale with: " + ", ".join(f"{k} {r:+.2f}" for k, r in bound.correlations.items()))
    return rows


if __name__ == "__main__":
    main()
