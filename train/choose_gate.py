"""Choose the neutral gate (ModelArgs.neutral_gate, neutral_gain) for a checkpoint and its read-out on the calibration
split: never the evaluation split, so the evaluation stays an honest test of the choice.

A regression read-out is the mean of the model's guesses. Where the model half believes a surface is gray (a backdrop,
a wall) and half that it is tan, the mean is a weak tan cast on it: the automatic mode's neutral cast. The gate scales
each automatic pixel's ab by gain · (1 − p_gray)^power, p_gray the classification head's probability of the gray bin.
For each power the gain is set so the photos' colourfulness stays the ungated read-out's (the gate moves chroma from
pixels believed gray to the rest; it neither fades nor boosts the photo as a whole), measured on the ungated read-out
upsampled bilinearly; the gated rows are coloured as the service colours, so the gain also hands back what the
edge-aware upsampling's smoothing takes (app/edges.py). The chosen power has the lowest neutral cast among those that
keep PSNR within PSNR_TOLERANCE of the ungated read-out's; none when no power does.

    python -m train.choose_gate runs/v16/anchored.step1075.pt --readout regression
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from train.calibrate import calibrate
from train.evaluate import (
    calibration_paths,
    colour_photo,
    colourfulness,
    gain_for_colourfulness,
    join_ab,
    load_eval_image,
    neutral_cast,
    psnr,
    small_lightness,
)
from train.export import load_model
from train.model import ColorizerNet, HeadOutput

POWERS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
PSNR_TOLERANCE = 0.02  # dB of calibration-split PSNR a gate may give up for a lower cast
TARGET_GAIN_RANGE = (0.25, 4.0)  # with a colourfulness to reach, a model more colourful than it is faded
GAIN_RANGE = (1.0, 4.0)  # the gain is searched in; a gate only removes chroma, so handing it back needs gain >= 1
GAIN_STEPS = 12  # bisection steps: the gain to within (4 − 1) / 2^12 ≈ 0.001


@dataclass
class GateRow:
    power: float  # 0 for the ungated read-out
    gain: float
    psnr: float
    colourfulness: float  # the prediction's over the truth's (Hasler–Süsstrunk M, means over the photos)
    neutral_cast: float  # mean chroma where the truth is neutral (train.evaluate), mean over the photos that have any

    def flags(self) -> str:
        return f"--neutral_gate {self.power:g} --neutral_gain {self.gain:.4f}" if self.power else ""


class Scorer:
    """The automatic mode of a model on fixed photos: its head outputs computed once, decoded with any gate."""

    def __init__(self, model: ColorizerNet, photos: list[np.ndarray], size: int) -> None:
        self.model, self.photos = model, photos
        self.lightness = [small_lightness(p, size) for p in photos]  # (S, S) each: what the model sees
        with torch.no_grad():
            self.out: HeadOutput = model.heads(torch.from_numpy(np.stack(self.lightness)[:, None]), all_heads=True)
        self.truth_colourfulness = float(np.mean([colourfulness(p) for p in photos]))

    def row(self, power: float, gain: float, edges: bool = True) -> GateRow:
        """Scores with the gate at ``power`` and ``gain``, coloured as the service colours (``edges``: the ab
        upsampled along L's edges) or with plain bilinear upsampling, which shows the network's own colourfulness."""
        self.model.args.neutral_gate, self.model.args.neutral_gain = power, gain
        with torch.no_grad():
            ab = self.model.decode(self.out).numpy()
        joined = [
            colour_photo(p, a, s) if edges else join_ab(p, a)
            for p, a, s in zip(self.photos, ab, self.lightness, strict=True)
        ]
        pairs = list(zip(joined, self.photos, strict=True))
        casts = [c for c in (neutral_cast(j, p) for j, p in pairs) if np.isfinite(c)]  # NaN: no neutral pixel
        return GateRow(
            power,
            gain,
            float(np.mean([psnr(j[..., ::-1], p[..., ::-1]) for j, p in pairs])),
            float(np.mean([colourfulness(j) for j in joined])) / self.truth_colourfulness,
            float(np.mean(casts)) if casts else float("nan"),
        )

    def colour_kept(self, power: float, colourfulness: float, gains: tuple[float, float] = GAIN_RANGE) -> GateRow:
        """The row at ``power`` whose gain brings the colourfulness back to ``colourfulness`` (bisection: it grows
        with the gain); at the top of ``gains`` when even that falls short."""
        top = self.row(power, gains[1])
        if top.colourfulness <= colourfulness:
            return top
        gain = gain_for_colourfulness(lambda g: self.row(power, g).colourfulness, colourfulness, gains, GAIN_STEPS)
        return self.row(power, gain)


def compare(scorer: Scorer, powers: tuple[float, ...] = POWERS, colourfulness: float | None = None) -> list[GateRow]:
    """The ungated row first, then one per power with its colourfulness-keeping gain. The ungated row is upsampled
    bilinearly: its colourfulness is the network's own, which the gain also keeps through the smoothing of the
    service's edge-aware upsampling (app/edges.py), and its PSNR is what the gated rows are held to.

    ``colourfulness`` (÷ truth's) sets the gated rows to that colourfulness instead, gains below 1 allowed: two
    models compared at one colourfulness, since a model that fades its colour gains PSNR by that alone."""
    ungated = scorer.row(0.0, 1.0, edges=False)
    target, gains = (ungated.colourfulness, GAIN_RANGE) if colourfulness is None else (colourfulness, TARGET_GAIN_RANGE)
    return [ungated, *(scorer.colour_kept(k, target, gains) for k in powers)]


def best_row(rows: list[GateRow]) -> GateRow:
    """The lowest cast among the rows within PSNR_TOLERANCE of the ungated (first) row's PSNR; the ungated row when
    the photos have no neutral pixel to measure a cast on."""
    ungated = rows[0]
    kept = [r for r in rows if r.psnr >= ungated.psnr - PSNR_TOLERANCE and np.isfinite(r.neutral_cast)]
    return min(kept, key=lambda r: r.neutral_cast) if kept else ungated


def calibration_rows(
    model: ColorizerNet, cfg: dict, data_dir: str, colourfulness: float | None = None, input_size: int = 0
) -> list[GateRow]:
    """compare() on the calibration split of the run whose training config is ``cfg``, the photos squeezed to
    ``input_size`` (default: the training crop size, which is also train.export's default input size)."""
    paths = calibration_paths(data_dir, cfg["val_fraction"], cfg["calib_fraction"])
    photos = [load_eval_image(path) for path in paths]
    return compare(Scorer(model, photos, input_size or int(cfg["crop_size"])), colourfulness=colourfulness)


def print_rows(rows: list[GateRow]) -> None:
    print("| power | gain | PSNR, calibration split (dB) | colourfulness ÷ truth | neutral cast |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r.power:g} | {r.gain:.3f} | {r.psnr:.3f} | {r.colourfulness:.3f} | {r.neutral_cast:.2f} |")


def main(argv: list[str] | None = None) -> GateRow:
    p = argparse.ArgumentParser(
        description="Choose the neutral gate of a model's automatic mode on the calibration split."
    )
    p.add_argument("checkpoint")
    p.add_argument("--readout", default="", help="as train.export's; default: the checkpoint's")
    p.add_argument("--annealed_t", type=float, default=0.0, help="as train.export's")
    p.add_argument(
        "--calibrate", action="store_true", help="as train.export's (2×2 through the origin), before the gate"
    )
    p.add_argument("--data_dir", default="", help="photos; default: the checkpoint's data_dir")
    p.add_argument("--cache_dir", default="", help="decoded-photo cache for --calibrate; default: the run's")
    p.add_argument(
        "--colourfulness",
        type=float,
        default=0.0,
        help="gate every power to this colourfulness (÷ the truth's) instead of the ungated read-out's, to compare "
        "two models at one colourfulness",
    )
    p.add_argument(
        "--input_size",
        type=int,
        default=0,
        help="the side the photos are squeezed to, as train.export's --input_size; default: the training crop size",
    )
    a = p.parse_args(argv)
    model, ckpt = load_model(a.checkpoint, a.annealed_t, a.readout)
    if model.args.head == "regression":
        raise SystemExit("the neutral gate reads the classification head, which a regression model lacks")
    cfg = ckpt["config"]
    root = a.data_dir or cfg["data_dir"]
    if a.calibrate:
        calibrate(model, root, cfg, a.cache_dir)
    rows = calibration_rows(model, cfg, root, a.colourfulness or None, a.input_size)
    print_rows(rows)
    best = best_row(rows)
    chosen = f"export it with {best.flags()}" if best.power else "no gate keeps the PSNR: export it ungated"
    print(f"\nbest (lowest cast within {PSNR_TOLERANCE} dB of the ungated PSNR): power {best.power:g}; {chosen}")
    return best


if __name__ == "__main__":
    main()
