"""Evaluation CLI: an exported ONNX model on a folder of colour photos, against the gray baseline, automatic
and with colour hints.

    python -m train.evaluate models/colorizer.onnx ~/.cache/colorize/train --split val --out docs/eval

Metrics at 256×256 on uint8 RGB, as DDColor's basicsr computes PSNR; colourfulness is Hasler and
Süsstrunk's (2003) M; the neutral cast is the mean chroma (ab units) a prediction puts where the truth is neutral
(chroma < NEUTRAL_CHROMA): a gray wall, a studio backdrop, an overcast sky. The gray baseline predicts a = b = 0.
For a model with hint inputs, the same photos are also scored with 1, 2, 5, 10 and 20 local hints from the truth,
sampled as in training with a fixed seed, and with the truth's own global hint (Zhang et al. 2017's evaluation);
and with a palette of the truth's 3 main colours (k-means of its ab), weighed as the service weighs a palette.
per_photo.csv lists each photo's automatic and gray PSNR, worst against gray first.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import onnxruntime as ort

from app.edges import guided_ab
from app.guidance import palette_distribution
from app.point_follow import follow_points
from train.data import is_calibration, is_validation, list_images, read_bgra, split_images
from train.hints import ab_distribution, global_hint, palette_of, place_hints
from train.interval import RESAMPLES, mean_interval
from train.lab import bgr_to_lab, lab_to_bgr

EVAL_SIZE = 256
NEUTRAL_CHROMA = 3.0  # ab units; a pixel of the truth below it counts as neutral (just-noticeable is ~2.3)
HINT_COUNTS = (1, 2, 5, 10, 20)
PALETTE_COLOURS = 3
PALETTE_MODE = f"palette (the truth's {PALETTE_COLOURS} main colours)"
SEED = 2017


def hint_mode(count: int) -> str:
    """The report's name for scores with ``count`` local hints: "1 hint", "10 hints"."""
    return f"{count} hint{'s' if count > 1 else ''}"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))


def colourfulness(bgr: np.ndarray) -> float:
    """Hasler–Süsstrunk M: std and mean of the rg and yb opponent channels."""
    b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def chroma(bgr: np.ndarray) -> np.ndarray:
    """(H, W) chroma in ab units of a uint8 BGR image."""
    return np.hypot(*bgr_to_lab(bgr)[:, :, 1:].transpose(2, 0, 1))


def neutral_cast(pred: np.ndarray, truth: np.ndarray, neutral: np.ndarray | None = None) -> float:
    """Mean chroma of pred (uint8 BGR) where the truth is neutral; NaN when the truth has no neutral pixel.
    ``neutral`` is the truth's mask (chroma < NEUTRAL_CHROMA) when the caller already has it."""
    neutral = chroma(truth) < NEUTRAL_CHROMA if neutral is None else neutral
    return float(chroma(pred)[neutral].mean()) if neutral.any() else float("nan")


@dataclass
class Scores:
    psnr: float
    colourfulness: float
    neutral_cast: float


@dataclass
class Hints:
    hint_ab: np.ndarray  # (2, S, S) raw ab, 0 where no hint
    hint_mask: np.ndarray  # (1, S, S)
    global_hint: np.ndarray  # (Q + 1,)


class OnnxColorizer:
    """The exported model, used the way the service uses it: L at its size in (with hints, or zeros for a hint
    model), ab out, joined with the full-resolution L."""

    def __init__(self, path: str) -> None:
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.size = int(meta["colorizer.input_size"])
        self.takes_hints = {i.name for i in self.session.get_inputs()} >= {"hint_ab", "hint_mask", "global_hint"}
        self.bins = np.array(json.loads(meta["colorizer.ab_bins"]), np.float32) if self.takes_hints else None

    def no_hints(self) -> Hints:
        q = 0 if self.bins is None else len(self.bins)
        s = self.size
        return Hints(np.zeros((2, s, s), np.float32), np.zeros((1, s, s), np.float32), np.zeros(q + 1, np.float32))

    def truth_ab(self, bgr: np.ndarray) -> np.ndarray:
        """The truth's ab at model resolution (2, S, S), where local hints are taken."""
        return small_ab(bgr, self.size)

    def raw_ab(self, bgr: np.ndarray, hints: Hints | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The network's own ab (2, h, w) for a photo (and its hints), and the L (S, S) it saw."""
        small = small_lightness(bgr, self.size)
        feeds = {"L": small[None, None]}
        if self.takes_hints:
            h = hints or self.no_hints()
            feeds |= {"hint_ab": h.hint_ab[None], "hint_mask": h.hint_mask[None], "global_hint": h.global_hint[None]}
        elif hints is not None:
            raise ValueError("this model takes no hints")
        (ab,) = self.session.run(["ab"], feeds)  # (1, 2, h, w)
        return ab[0], small

    def __call__(self, bgr: np.ndarray, hints: Hints | None = None) -> np.ndarray:
        """The colourised photo, as the service gives it: the network's ab moved to the point hints, upsampled
        along the edges of the L it saw, joined with the photo's full-resolution L."""
        ab, small = self.raw_ab(bgr, hints)
        if hints is not None:
            ab = follow_points(ab, small, hints.hint_ab, hints.hint_mask)
        return colour_photo(bgr, ab, small)


def small_lightness(bgr: np.ndarray, size: int) -> np.ndarray:
    """The model's input L (S, S) for a photo, resized as the service resizes it."""
    return cv2.resize(bgr_to_lab(bgr)[:, :, 0], (size, size), interpolation=cv2.INTER_AREA)


def small_ab(bgr: np.ndarray, side: int) -> np.ndarray:
    """A photo's own ab resized to side × side: (2, side, side)."""
    return cv2.resize(bgr_to_lab(bgr)[:, :, 1:], (side, side), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)


def join_ab(bgr: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """ab (2, h, w) resized onto the photo's own L -> uint8 BGR."""
    lab = bgr_to_lab(bgr)
    full = cv2.resize(ab.transpose(1, 2, 0), (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    return lab_to_bgr(np.dstack([lab[:, :, :1], full]))


def colour_photo(bgr: np.ndarray, ab: np.ndarray, small_l: np.ndarray) -> np.ndarray:
    """The network's ab (2, h, w) for a photo -> the photo as the service colours it: the ab upsampled along the
    edges of small_l (S, S), the L the network saw (app/edges.py), then joined with the photo's own L."""
    return join_ab(bgr, guided_ab(ab, small_l))


def gain_for_colourfulness(
    colourfulness_at: Callable[[float], float], target: float, gain_range: tuple[float, float], steps: int
) -> float:
    """The gain at which ``colourfulness_at(gain)`` is ``target``, by bisection over ``gain_range`` (colourfulness
    grows with the gain); near the range's top when even that falls short. Used wherever a change of the colour is
    compared with the model's own at equal colourfulness (choose_gate, choose_edges, corrections)."""
    low, high = gain_range
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if colourfulness_at(middle) < target else (low, middle)
    return (low + high) / 2


def gray_baseline(bgr: np.ndarray) -> np.ndarray:
    lab = bgr_to_lab(bgr)
    lab[:, :, 1:] = 0
    return lab_to_bgr(lab)


def load_eval_image(path: str) -> np.ndarray:
    """uint8 BGR at 256×256; cut-outs are composited on mid-gray."""
    return eval_photo(path)[0]


class EvalPhoto(NamedTuple):
    bgr: np.ndarray  # uint8 at EVAL_SIZE², a cut-out composited on mid-gray (load_eval_image)
    alpha: np.ndarray  # float32 in [0, 1] at EVAL_SIZE²: where the photo's own colour is
    cut_out: bool  # whether any pixel of the original is transparent


def read_eval_photo(path: str) -> EvalPhoto:
    """A photo as every evaluation sees it, from one read."""
    img = read_bgra(path)
    if img is None:
        raise ValueError(f"cannot read {path}")
    alpha = img[:, :, 3:4].astype(np.float32) / 255
    bgr = (alpha * img[:, :, :3] + (1 - alpha) * 128).astype(np.uint8)
    size = (EVAL_SIZE, EVAL_SIZE)
    return EvalPhoto(
        cv2.resize(bgr, size, interpolation=cv2.INTER_AREA),
        cv2.resize(alpha[:, :, 0], size, interpolation=cv2.INTER_AREA),
        bool((alpha < 1).any()),  # at full size, where a single transparent pixel still counts
    )


def eval_photo(path: str) -> tuple[np.ndarray, bool]:
    """load_eval_image's photo, and whether it is a cut-out (has transparent pixels), from one read."""
    photo = read_eval_photo(path)
    return photo.bgr, photo.cut_out


def mark_hints(bgr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Outline each hint patch (mask at model size) on the image, so a grid shows where the hints were."""
    out = bgr.copy()
    scale = bgr.shape[0] / mask.shape[-1]
    n, labels, stats, _ = cv2.connectedComponentsWithStats((mask[0] > 0).astype(np.uint8))
    for x, y, w, h, _ in stats[1:n]:
        x0, y0 = int(x * scale) - 2, int(y * scale) - 2
        x1, y1 = int((x + w) * scale) + 1, int((y + h) * scale) + 1
        cv2.rectangle(out, (x0 - 1, y0 - 1), (x1 + 1, y1 + 1), (0, 0, 0), 1)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), 1)
    return out


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str], thumb: int = 160) -> np.ndarray:
    """A grid with one row per photo and one labelled column per image in the row."""
    tiles = [np.hstack([cv2.resize(x, (thumb, thumb), interpolation=cv2.INTER_AREA) for x in row]) for row in rows]
    grid = np.vstack(tiles)
    header = np.full((28, grid.shape[1], 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * thumb + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, grid])


class PhotoScore(NamedTuple):
    path: str
    automatic: float  # PSNR
    gray: float  # the gray baseline's PSNR
    cut_out: bool  # scored composited on mid-gray


@dataclass
class Report:
    modes: dict[str, Scores]  # "automatic", "1 hint", …, "global hint", "gray baseline", "ground truth"
    photos: int
    grid: np.ndarray  # gray | automatic | truth
    hint_grid: np.ndarray | None  # gray | automatic | 10 hints (marked) | truth
    per_photo: list[PhotoScore]


def evaluate(model_path: str, files: list[str], grid_rows: int = 8) -> Report:
    """Mean scores per mode; hint modes use one seeded generator per photo, so every model sees the same hints."""
    model = OnnxColorizer(model_path)
    scores: dict[str, list[tuple[float, float, float]]] = {}
    rows: list[list[np.ndarray]] = []
    hint_rows: list[list[np.ndarray]] = []
    cut_outs: list[bool] = []

    def score(mode: str, pred: np.ndarray, truth: np.ndarray) -> None:
        scores.setdefault(mode, []).append(
            (psnr(pred[..., ::-1], truth[..., ::-1]), colourfulness(pred), neutral_cast(pred, truth, neutral))
        )

    for i, path in enumerate(files):
        truth, cut_out = eval_photo(path)
        cut_outs.append(cut_out)
        neutral = chroma(truth) < NEUTRAL_CHROMA  # the same for every mode of this photo
        gray = gray_baseline(truth)
        auto = model(truth)
        score("automatic", auto, truth)
        score("gray baseline", gray, truth)
        scores.setdefault("ground truth", []).append(
            (float("nan"), colourfulness(truth), neutral_cast(truth, truth, neutral))
        )
        if len(rows) < grid_rows:
            rows.append([gray, auto, truth])
        if not model.takes_hints:
            continue
        assert model.bins is not None
        ab = model.truth_ab(truth)
        for n in HINT_COUNTS:
            hint_ab, mask = place_hints(ab, n, np.random.default_rng([SEED, i, n]))
            pred = model(truth, Hints(hint_ab, mask, model.no_hints().global_hint))
            score(hint_mode(n), pred, truth)
            if n == 10 and len(hint_rows) < grid_rows:
                hint_rows.append([gray, auto, mark_hints(pred, mask), truth])
        blank = model.no_hints()
        pred = model(truth, Hints(blank.hint_ab, blank.hint_mask, global_hint(ab_distribution(ab, model.bins))))
        score("global hint (truth's)", pred, truth)
        colours, _ = palette_of(ab, PALETTE_COLOURS)  # the truth's main colours, weighed as the service weighs them
        palette = global_hint(palette_distribution(colours, model.bins))
        pred = model(truth, Hints(blank.hint_ab, blank.hint_mask, palette))
        score(PALETTE_MODE, pred, truth)

    def mean(xs: list[tuple[float, float, float]]) -> Scores:
        return Scores(*(float(np.nanmean(col)) if not np.isnan(col).all() else float("nan") for col in np.array(xs).T))

    return Report(
        {mode: mean(xs) for mode, xs in scores.items()},
        len(files),
        contact_sheet(rows, ["gray input", "colorizer", "original"]),
        contact_sheet(hint_rows, ["gray input", "automatic", "10 hints", "original"]) if hint_rows else None,
        [
            PhotoScore(path, auto[0], gray[0], cut)
            for path, auto, gray, cut in zip(files, scores["automatic"], scores["gray baseline"], cut_outs, strict=True)
        ],
    )


def markdown_table(report: Report, model_path: str) -> str:
    lines = [
        f"Evaluation of `{os.path.basename(model_path)}` on {report.photos} photos at {EVAL_SIZE}×{EVAL_SIZE}",
        "",
        "| | PSNR RGB (dB) ↑ | colourfulness (Hasler–Süsstrunk) | neutral cast (chroma where the truth is neutral) ↓ |",
        "| --- | ---: | ---: | ---: |",
    ]
    for mode, s in report.modes.items():
        p = "–" if np.isnan(s.psnr) else f"{s.psnr:.2f}"
        lines.append(f"| {mode} | {p} | {s.colourfulness:.1f} | {s.neutral_cast:.1f} |")
    return "\n".join([*lines, *by_kind_table(report), *spread_lines(report), ""])


def spread_lines(report: Report) -> list[str]:
    """The automatic mode's mean gain over gray with its bootstrap interval over the photos (train.interval): on
    about 30 photos a difference of a few tenths of a dB can be the split's luck."""
    gains = np.array([r.automatic - r.gray for r in report.per_photo])
    low, high = mean_interval(gains)
    return [
        "",
        f"Automatic − gray baseline: {gains.mean():+.2f} dB over {len(gains)} photos, 95 % bootstrap interval "
        f"{low:+.2f} to {high:+.2f} dB ({RESAMPLES:,} resamples of the photos).",
    ]


def by_kind_table(report: Report) -> list[str]:
    """Automatic and gray PSNR on photos and on cut-outs apart, when there are both: half the validation split is
    cut-outs on mid-gray, where gray scores up to 33 dB, so the mean alone hides which kind a model got better at."""
    kinds = {
        "photos": [r for r in report.per_photo if not r.cut_out],
        "cut-outs on mid-gray": [r for r in report.per_photo if r.cut_out],
    }
    if not all(kinds.values()):
        return []
    lines = [
        "",
        "| automatic, by kind | photos | PSNR RGB (dB) ↑ | gray baseline (dB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, rows in kinds.items():
        auto, gray = np.mean([r.automatic for r in rows]), np.mean([r.gray for r in rows])
        lines.append(f"| {kind} | {len(rows)} | {auto:.2f} | {gray:.2f} |")
    return lines


def per_photo_csv(report: Report, folder: str) -> str:
    """One line per photo, worst against gray first: where the automatic mode wins and loses."""
    lines = ["photo,automatic_psnr,gray_psnr,difference,cut_out"]
    for path, auto, gray, cut_out in sorted(report.per_photo, key=lambda r: r.automatic - r.gray):
        lines.append(f"{os.path.relpath(path, folder)},{auto:.2f},{gray:.2f},{auto - gray:+.2f},{int(cut_out)}")
    return "\n".join([*lines, ""])


def hint_plot(reports: dict[str, Report], path: Path) -> None:
    """PSNR against the number of local hints, one line per model, the gray baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in reports.items():
        counts = [0, *[n for n in HINT_COUNTS if hint_mode(n) in r.modes]]
        ys = [r.modes["automatic"].psnr] + [r.modes[hint_mode(n)].psnr for n in counts[1:]]
        ax.plot(counts, ys, marker="o", label=name)
    gray = next(iter(reports.values())).modes["gray baseline"].psnr
    ax.axhline(gray, linestyle="--", color="gray", label="gray baseline")
    ax.set(xlabel="local hints from the truth", ylabel="PSNR RGB (dB)", title="Colour hints: PSNR on validation")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def select_split(rel: list[str], split: str, val_fraction: float, calib_fraction: float) -> list[str]:
    """The photos of a split, as training drew it; "train" is everything but validation (calibration included)."""
    if split == "calib":
        return [f for f in rel if is_calibration(f, val_fraction, calib_fraction)]
    if split in ("val", "train"):
        return [f for f in rel if is_validation(f, val_fraction) == (split == "val")]
    return rel


def calibration_sweep_parser(description: str) -> argparse.ArgumentParser:
    """The command line of a sweep on the calibration split (train.choose_edges, train.choose_point_sigmas,
    train.corrections): a model file and the photo folder; a sweep may add options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("model")
    p.add_argument("folder")
    p.add_argument("--val_fraction", type=float, default=0.05)
    p.add_argument("--calib_fraction", type=float, default=0.05)
    return p


def calibration_paths(folder: str, val_fraction: float, calib_fraction: float) -> list[str]:
    """The calibration split's photo paths under ``folder``; exits when there are none."""
    _, _, calib = split_images(folder, val_fraction, calib_fraction)
    if not calib:
        raise SystemExit(f"no calibration photos under {folder}")
    return [os.path.join(folder, f) for f in calib]


def calibration_files(a: argparse.Namespace) -> list[str]:
    """The calibration photos' paths for a parsed calibration_sweep_parser command line."""
    return calibration_paths(a.folder, a.val_fraction, a.calib_fraction)


def calibration_sweep_args(argv: list[str] | None, description: str) -> tuple[str, list[str]]:
    """A sweep's model path and calibration photos' paths, from its command line (calibration_sweep_parser)."""
    a = calibration_sweep_parser(description).parse_args(argv)
    return a.model, calibration_files(a)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Evaluate an ONNX Colorizer model on a folder of colour photos.")
    p.add_argument("model")
    p.add_argument("folder")
    p.add_argument(
        "--split",
        choices=["all", "val", "calib", "train"],
        default="all",
        help="val/calib/train: the training run's hash split of the folder (calib: where choices are made)",
    )
    p.add_argument("--val_fraction", type=float, default=0.05)
    p.add_argument("--calib_fraction", type=float, default=0.05)
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many photos")
    p.add_argument(
        "--sample", type=int, default=0, help="evaluate this many of the split's photos drawn at random (seed fixed)"
    )
    p.add_argument("--out", type=Path, default=Path("eval"))
    a = p.parse_args(argv)
    rel = select_split(list_images(a.folder), a.split, a.val_fraction, a.calib_fraction)
    if a.sample:  # the files are sorted by source, so the first N (--limit) would be one or two sources
        rel = sorted(random.Random(SEED).sample(rel, min(a.sample, len(rel))))
    files = [os.path.join(a.folder, f) for f in rel][: a.limit or None]
    if not files:
        raise SystemExit(f"no images in {a.folder} (split {a.split})")
    report = evaluate(a.model, files)
    a.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(report, a.model)
    (a.out / "EVALUATION.md").write_text(table)
    (a.out / "per_photo.csv").write_text(per_photo_csv(report, a.folder))
    cv2.imwrite(str(a.out / "grid.png"), report.grid)
    if report.hint_grid is not None:
        cv2.imwrite(str(a.out / "grid_hints.png"), report.hint_grid)
        hint_plot({os.path.basename(a.model): report}, a.out / "hints_psnr.png")
    print(table)


if __name__ == "__main__":
    main()
