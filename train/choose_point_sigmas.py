"""Choose app/point_follow.py's two sigmas on the calibration split (never the evaluation split): PSNR with 10
point hints sampled from the truth as train/evaluate.py samples them, for each pair on a small grid.

    python -m train.choose_point_sigmas models/colorizer.onnx ~/.cache/colorize/train
"""

from __future__ import annotations

import numpy as np

from app.point_follow import LIGHTNESS_SIGMA, SPATIAL_SIGMA, follow_points
from train.evaluate import SEED, Hints, OnnxColorizer, calibration_sweep_args, colour_photo, load_eval_image, psnr
from train.hints import place_hints

SPATIAL = (0.1, 0.2, 0.3, 0.5)
LIGHTNESS = (5.0, 10.0, 20.0)
POINTS = 10


def sweep(model_path: str, files: list[str]) -> tuple[float, dict[tuple[float, float], float]]:
    """Mean PSNR without the follow-up step, and with it for every (spatial, lightness) pair."""
    model = OnnxColorizer(model_path)
    without: list[float] = []
    scores: dict[tuple[float, float], list[float]] = {(s, ls): [] for s in SPATIAL for ls in LIGHTNESS}
    for i, path in enumerate(files):
        truth = load_eval_image(path)
        hint_ab, mask = place_hints(model.truth_ab(truth), POINTS, np.random.default_rng([SEED, i, POINTS]))
        hints = Hints(hint_ab, mask, model.no_hints().global_hint)
        ab, small = model.raw_ab(truth, hints)  # the network once per photo; only the follow-up varies
        without.append(psnr(colour_photo(truth, ab, small)[..., ::-1], truth[..., ::-1]))
        for s, ls in scores:
            out = colour_photo(truth, follow_points(ab, small, hint_ab, mask, s, ls), small)
            scores[(s, ls)].append(psnr(out[..., ::-1], truth[..., ::-1]))
    return float(np.mean(without)), {k: float(np.mean(v)) for k, v in scores.items()}


def main(argv: list[str] | None = None) -> tuple[float, float]:
    path, calib = calibration_sweep_args(argv, "Sweep the point follow-up's sigmas on the calibration split.")
    without, scores = sweep(path, calib)
    print(f"{len(calib)} calibration photos, {POINTS} points each; without the follow-up: {without:.2f} dB\n")
    print("| spatial σ (of the side) | " + " | ".join(f"lightness σ {ls:g}" for ls in LIGHTNESS) + " |")
    print("| --- |" + " ---: |" * len(LIGHTNESS))
    for s in SPATIAL:
        print(f"| {s:g} | " + " | ".join(f"{scores[(s, ls)]:.2f}" for ls in LIGHTNESS) + " |")
    best = max(scores, key=lambda k: scores[k])
    print(f"\nbest: spatial {best[0]:g}, lightness {best[1]:g}; shipped: {SPATIAL_SIGMA:g}, {LIGHTNESS_SIGMA:g}")
    return best


if __name__ == "__main__":
    main()
