"""Choose a combined model's readout, and whether to calibrate it, on the calibration split: never the evaluation
split, so the evaluation stays an honest test of the choice.

For each readout (the regression head; the bins' annealed mean at a few temperatures) it scores the automatic mode's
PSNR the way train/evaluate.py does (photos at 256², the model's ab resized onto their full L), raw and with the 2×2
calibration through the origin cross-fitted in two folds (fitted on one half of the photos, scored on the other), so
the calibration's own gain is measured out of sample too, and its colourfulness against the truth's; each also with
a few chroma shrinks (a soft threshold, after the calibration, that turns weak casts gray). The best row is the
highest PSNR whose colourfulness lies in COLOURFULNESS_BAND (issue 12's target: a model that wins PSNR by fading to
gray is not the colouriser users asked for); it prints the table and that row, as export flags. Given several
checkpoints (a run's step<N>.pt snapshots and its last.pt), it chooses among all of their rows:

    python -m train.choose_readout runs/v5/step*.pt runs/v5/last.pt [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np
import torch

from train.calibrate import CALIBRATION_FORMS, apply, fit
from train.data import split_images
from train.evaluate import colour_photo, colourfulness, gray_baseline, load_eval_image, psnr, small_ab, small_lightness
from train.export import load_model
from train.model import ColorizerNet, shrink_chroma

ANNEALED_TS = (0.25, 0.3, 0.38, 0.5)  # temperatures tried for the annealed mean (Zhang 2016 used 0.38)
CHROMA_SHRINKS = (0.0, 2.0, 3.0, 4.0, 6.0)  # soft thresholds tried on the automatic ab's chroma (ab units)
COLOURFULNESS_BAND = (0.5, 1.1)  # of the truth's colourfulness


@dataclass
class Choice:
    readout: str
    annealed_t: float  # 0 for the regression head
    calibration: str  # "none", or the form of the calibration fitted (train.calibrate.CALIBRATION_FORMS)
    psnr: float
    colourfulness: float  # the prediction's over the truth's (Hasler–Süsstrunk M, means over the photos)
    checkpoint: str = ""
    chroma_shrink: float = 0.0

    def flags(self) -> str:
        t = f" --annealed_t {self.annealed_t:g}" if self.readout == "annealed_mean" else ""
        shrink = f" --chroma_shrink {self.chroma_shrink:g}" if self.chroma_shrink else ""
        calibrate = {"none": "", "2x2": " --calibrate"}.get(
            self.calibration, f" --calibrate --calibration_form {self.calibration}"
        )
        return f"--readout {self.readout}{t}{calibrate}{shrink}"

    def in_band(self) -> bool:
        return COLOURFULNESS_BAND[0] <= self.colourfulness <= COLOURFULNESS_BAND[1]

    def name(self) -> str:
        return "regression" if self.readout == "regression" else f"annealed mean, T {self.annealed_t:g}"


def automatic_ab(model: ColorizerNet, lightness: np.ndarray) -> np.ndarray:
    """The model's uncorrected automatic ab (N, 2, S/2, S/2) for the photos' L (N, S, S) at its input size."""
    return model.uncorrected_ab(torch.from_numpy(lightness[:, None])).numpy()


def scores(photos: list[np.ndarray], lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """(PSNR, colourfulness) per photo (N, 2) of ab (N, 2, h, w), coloured as the service colours it."""
    joined = [colour_photo(p, a, s) for p, s, a in zip(photos, lightness, ab, strict=True)]
    return np.array([(psnr(j[..., ::-1], p[..., ::-1]), colourfulness(j)) for j, p in zip(joined, photos, strict=True)])


def shrunk(ab: np.ndarray, shrink: float) -> np.ndarray:
    """ab with the model's own chroma shrink applied, as the exported graph applies it."""
    return shrink_chroma(torch.from_numpy(ab.astype(np.float32)), shrink).numpy() if shrink else ab


def cross_fitted(ab: np.ndarray, truth: np.ndarray, form: str = "2x2") -> np.ndarray:
    """ab calibrated with the map fitted on the other half of the photos, so each photo's is out of sample."""
    out = np.zeros_like(ab)
    first = np.arange(len(ab)) % 2 == 0
    for fit_on in (first, ~first):
        out[~fit_on] = apply(fit(ab[fit_on], truth[fit_on], form=form), ab[~fit_on])
    return out


def compare(checkpoint: str, data_dir: str = "") -> tuple[list[Choice], float]:
    """Every readout × {raw, calibrated}, scored on the calibration split; and the gray baseline's PSNR there."""
    model, ckpt = load_model(checkpoint)
    cfg = ckpt["config"]
    root = data_dir or cfg["data_dir"]
    _, _, calib = split_images(root, cfg["val_fraction"], cfg["calib_fraction"])
    if len(calib) < 2:
        raise SystemExit(f"need at least 2 calibration photos under {root}, found {len(calib)}")
    photos = [load_eval_image(os.path.join(root, f)) for f in calib]
    gray = float(np.mean([psnr(gray_baseline(p)[..., ::-1], p[..., ::-1]) for p in photos]))
    truth_colourfulness = float(np.mean([colourfulness(p) for p in photos]))
    readouts: list[tuple[str, float]] = []
    if model.args.head in ("regression", "combined"):
        readouts.append(("regression", 0.0))
    if model.args.head in ("classification", "combined"):
        readouts += [("annealed_mean", t) for t in ANNEALED_TS]
    lightness = np.stack([small_lightness(p, int(cfg["crop_size"])) for p in photos])  # (N, S, S): what it sees
    choices = []
    for readout, t in readouts:
        model.args.readout = readout
        model.args.annealed_t = t or model.args.annealed_t  # the regression head has no temperature
        ab = automatic_ab(model, lightness)
        truth = np.stack([small_ab(p, ab.shape[-1]) for p in photos])  # at this read-out's size (full_res: S or S/2)
        calibrated = [(form, cross_fitted(ab, truth, form)) for form in CALIBRATION_FORMS]
        for calibration, corrected in [("none", ab), *calibrated]:
            for shrink in CHROMA_SHRINKS:
                per_photo = scores(photos, lightness, shrunk(corrected, shrink).astype(np.float32))
                psnr_mean, colour = per_photo.mean(axis=0)
                colour_ratio = float(colour) / truth_colourfulness
                choices.append(Choice(readout, t, calibration, float(psnr_mean), colour_ratio, checkpoint, shrink))
    return choices, gray


def best_choice(choices: list[Choice]) -> Choice:
    """The highest PSNR in the colourfulness band; the highest overall when none is in it."""
    return max([c for c in choices if c.in_band()] or choices, key=lambda c: c.psnr)


def main(argv: list[str] | None = None) -> Choice:
    p = argparse.ArgumentParser(description="Choose a model's readout and calibration on the calibration split.")
    p.add_argument("checkpoints", nargs="+", help="one or more checkpoints of runs on the same photos and split")
    p.add_argument("--data_dir", default="", help="photos; default: each checkpoint's data_dir")
    a = p.parse_args(argv)
    choices: list[Choice] = []
    for checkpoint in a.checkpoints:
        rows, gray = compare(checkpoint, a.data_dir)
        choices += rows
    print("| checkpoint | read-out | calibration | shrink | PSNR, calibration split (dB) | colourfulness ÷ truth |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for c in choices:
        calibration = {"none": "none", "2x2": "2×2, cross-fitted"}.get(c.calibration, f"{c.calibration}, cross-fitted")
        measured = f"{c.psnr:.2f} | {c.colourfulness:.2f}"
        print(f"| {c.checkpoint} | {c.name()} | {calibration} | {c.chroma_shrink:g} | {measured} |")
    print(f"| gray baseline | | | | {gray:.2f} | 0 |")
    best = best_choice(choices)
    low, high = COLOURFULNESS_BAND
    band = f"in the colourfulness band {low}–{high}" if best.in_band() else f"none is in the band {low}–{high}"
    state = "uncalibrated" if best.calibration == "none" else f"calibrated ({best.calibration})"
    print(f"\nbest ({band}): {best.checkpoint}, {best.name()}, {state}; export it with {best.flags()}")
    return best


if __name__ == "__main__":
    main()
