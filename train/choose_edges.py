"""Choose app/edges.py's radius and ε on the calibration split (never the evaluation split).

Smoothing colour raises PSNR by itself (a grayer guess is a safer one), so the filter is compared with plain
bilinear upsampling at the same colourfulness: for each (radius, ε) the automatic ab is scaled by the gain that
brings the photos' colourfulness back to bilinear's, and scored. Among the settings that keep automatic PSNR within
PSNR_TOLERANCE of bilinear's that way, the one with the best PSNR with 10 point hints (sampled as train/evaluate.py
samples them, then followed as the service follows them) is chosen. The gain itself is not shipped: the neutral
gate's gain, chosen by train.choose_gate with the filter in the join, keeps the automatic colourfulness.

    python -m train.choose_edges models/colorizer.onnx ~/.cache/colorize/train
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.edges import EPSILON, RADIUS_OF_SIDE, guided_ab
from app.point_follow import follow_points
from train.evaluate import (
    SEED,
    Hints,
    OnnxColorizer,
    calibration_sweep_args,
    colourfulness,
    gain_for_colourfulness,
    join_ab,
    load_eval_image,
    psnr,
)
from train.hints import place_hints

RADII = (1 / 32, 1 / 16, 3 / 32, 1 / 8)  # of the model's side
EPSILONS = (1e-4, 1e-3, 1e-2)
POINTS = 10
PSNR_TOLERANCE = 0.02  # dB of automatic PSNR, at equal colourfulness, the filter may give up
GAIN_RANGE = (0.5, 2.0)
GAIN_STEPS = 10


@dataclass
class Photo:
    truth: np.ndarray  # uint8 BGR at the evaluation size
    small: np.ndarray  # (S, S) the L the model saw
    auto: np.ndarray  # (2, h, w) automatic ab
    hinted: np.ndarray  # (2, h, w) ab with 10 points, followed


@dataclass
class EdgeRow:
    radius: float  # of the side; 0 for bilinear
    epsilon: float
    gain: float  # the automatic ab's scale that gives bilinear's colourfulness
    automatic: float  # PSNR at that gain
    points: float  # PSNR with 10 points, no gain
    colourfulness: float  # automatic, without the gain


def network_outputs(model: OnnxColorizer, files: list[str]) -> list[Photo]:
    """The network once per photo and mode; only the upsampling varies after this."""
    photos = []
    for i, path in enumerate(files):
        truth = load_eval_image(path)
        hint_ab, mask = place_hints(model.truth_ab(truth), POINTS, np.random.default_rng([SEED, i, POINTS]))
        auto, small = model.raw_ab(truth)
        hinted, _ = model.raw_ab(truth, Hints(hint_ab, mask, model.no_hints().global_hint))
        photos.append(Photo(truth, small, auto, follow_points(hinted, small, hint_ab, mask)))
    return photos


def score(photos: list[Photo], radius: float, epsilon: float, target_colourfulness: float | None) -> EdgeRow:
    """One setting's row; radius 0 is plain bilinear. With ``target_colourfulness`` the gain is bisected to it."""

    def upsample(ab: np.ndarray, small: np.ndarray) -> np.ndarray:
        return guided_ab(ab, small, radius, epsilon) if radius else ab

    def psnr_of(photo: Photo, ab: np.ndarray) -> float:
        return psnr(join_ab(photo.truth, ab)[..., ::-1], photo.truth[..., ::-1])

    auto = [upsample(p.auto, p.small) for p in photos]

    def colour(gain: float) -> float:
        return float(np.mean([colourfulness(join_ab(p.truth, gain * a)) for p, a in zip(photos, auto, strict=True)]))

    plain = colour(1.0)
    gain = 1.0
    if target_colourfulness is not None:
        gain = gain_for_colourfulness(colour, target_colourfulness, GAIN_RANGE, GAIN_STEPS)
    return EdgeRow(
        radius,
        epsilon,
        gain,
        float(np.mean([psnr_of(p, gain * a) for p, a in zip(photos, auto, strict=True)])),
        float(np.mean([psnr_of(p, upsample(p.hinted, p.small)) for p in photos])),
        plain,
    )


def sweep(photos: list[Photo]) -> list[EdgeRow]:
    """Bilinear first, then every (radius, ε) at bilinear's colourfulness."""
    bilinear = score(photos, 0.0, 0.0, None)
    return [bilinear, *(score(photos, r, e, bilinear.colourfulness) for r in RADII for e in EPSILONS)]


def best_row(rows: list[EdgeRow]) -> EdgeRow:
    """The best 10-point PSNR among the settings within PSNR_TOLERANCE of bilinear's automatic PSNR."""
    kept = [r for r in rows[1:] if r.automatic >= rows[0].automatic - PSNR_TOLERANCE]
    return max(kept, key=lambda r: r.points) if kept else rows[0]


def main(argv: list[str] | None = None) -> EdgeRow:
    path, calib = calibration_sweep_args(
        argv, "Sweep the edge-aware upsampling's radius and ε on the calibration split."
    )
    model = OnnxColorizer(path)
    rows = sweep(network_outputs(model, calib))
    print(f"{len(calib)} calibration photos; automatic PSNR at bilinear's colourfulness; {POINTS} points as they are\n")
    print(f"| radius (px at {model.size}) | ε | gain | automatic | {POINTS} points | colourfulness without the gain |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        name = f"{r.radius * model.size:g}" if r.radius else "bilinear"
        print(f"| {name} | {r.epsilon:g} | {r.gain:.3f} | {r.automatic:.3f} | {r.points:.3f} | {r.colourfulness:.2f} |")
    best = best_row(rows)
    print(f"\nbest: radius {best.radius:g} of the side, ε {best.epsilon:g}; shipped: {RADIUS_OF_SIDE:g}, {EPSILON:g}")
    return best


if __name__ == "__main__":
    main()
