"""Choose a combined model's readout, and whether to calibrate it, on the calibration split: never the evaluation
split, so the evaluation stays an honest test of the choice.

For each readout (the regression head; the bins' annealed mean) it scores the automatic mode's PSNR the way
train/evaluate.py does (photos at 256², the model's ab resized onto their full L), raw and with the 2×2 calibration
through the origin cross-fitted in two folds (fitted on one half of the photos, scored on the other), so the
calibration's own gain is measured out of sample too. It prints a table and the best row, as export flags:

    python -m train.choose_readout runs/v4/last.pt [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np
import torch

from train.calibrate import apply, fit
from train.data import split_images
from train.evaluate import gray_baseline, join_ab, load_eval_image, psnr, small_ab, small_lightness
from train.export import load_model
from train.model import IDENTITY_CALIBRATION, READOUTS, ColorizerNet


@dataclass
class Choice:
    readout: str
    calibrated: bool
    psnr: float

    def flags(self) -> str:
        return f"--readout {self.readout}" + (" --calibrate" if self.calibrated else "")


@torch.no_grad()
def automatic_ab(model: ColorizerNet, photos: list[np.ndarray], size: int) -> np.ndarray:
    """The model's uncalibrated automatic ab (N, 2, S/2, S/2) for 256² BGR photos, L resized as the service does."""
    model.set_calibration(IDENTITY_CALIBRATION)
    out = model(torch.from_numpy(np.stack([small_lightness(p, size)[None] for p in photos])))
    assert isinstance(out, torch.Tensor)
    return out.numpy()


def scores(photos: list[np.ndarray], ab: np.ndarray) -> np.ndarray:
    """PSNR per photo of ab (N, 2, h, w) joined with each photo's own L."""
    return np.array([psnr(join_ab(p, a)[..., ::-1], p[..., ::-1]) for p, a in zip(photos, ab, strict=True)])


def cross_fitted(photos: list[np.ndarray], ab: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PSNR per photo with the calibration fitted on the other half of the photos."""
    out = np.zeros(len(photos))
    first = np.arange(len(photos)) % 2 == 0
    for fit_on in (first, ~first):
        values = fit(ab[fit_on], truth[fit_on])
        held_out = [p for p, held in zip(photos, ~fit_on, strict=True) if held]
        out[~fit_on] = scores(held_out, apply(values, ab[~fit_on]).astype(np.float32))
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
    readouts = READOUTS if model.args.head == "combined" else (model.args.readout,)
    choices = []
    for readout in readouts:
        model.args.readout = readout
        ab = automatic_ab(model, photos, int(cfg["crop_size"]))
        truth = np.stack([small_ab(p, ab.shape[-1]) for p in photos])
        choices.append(Choice(readout, False, float(scores(photos, ab).mean())))
        choices.append(Choice(readout, True, float(cross_fitted(photos, ab, truth).mean())))
    return choices, gray


def main(argv: list[str] | None = None) -> Choice:
    p = argparse.ArgumentParser(description="Choose a model's readout and calibration on the calibration split.")
    p.add_argument("checkpoint")
    p.add_argument("--data_dir", default="", help="photos; default: the checkpoint's data_dir")
    a = p.parse_args(argv)
    choices, gray = compare(a.checkpoint, a.data_dir)
    print("| readout | calibration | PSNR on the calibration split (dB) |")
    print("| --- | --- | ---: |")
    for c in choices:
        print(f"| {c.readout} | {'2×2, cross-fitted' if c.calibrated else 'none'} | {c.psnr:.2f} |")
    print(f"| gray baseline | | {gray:.2f} |")
    best = max(choices, key=lambda c: c.psnr)
    print(f"\nbest: {best.readout}, {'calibrated' if best.calibrated else 'uncalibrated'}; export with {best.flags()}")
    return best


if __name__ == "__main__":
    main()
