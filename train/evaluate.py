"""Evaluation CLI: an exported ONNX model on a folder of colour photos, against the gray baseline.

    python -m train.evaluate models/colorizer.onnx ~/.cache/colorize/train --split val --out docs/eval

Metrics at 256×256 on uint8 RGB, as DDColor's basicsr computes PSNR; colourfulness is Hasler and
Süsstrunk's (2003) M. The gray baseline predicts a = b = 0.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from train.data import is_validation, list_images, read_bgra
from train.lab import bgr_to_lab, lab_to_bgr

EVAL_SIZE = 256


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))


def colourfulness(bgr: np.ndarray) -> float:
    """Hasler–Süsstrunk M: std and mean of the rg and yb opponent channels."""
    b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


@dataclass
class Scores:
    psnr: float
    colourfulness: float


class OnnxColorizer:
    """The exported model, used the way the service uses it: L at its size in, ab out, joined with L."""

    def __init__(self, path: str) -> None:
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.size = int(self.session.get_modelmeta().custom_metadata_map["colorizer.input_size"])

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        lab = bgr_to_lab(bgr)
        small = cv2.resize(lab[:, :, 0], (self.size, self.size), interpolation=cv2.INTER_AREA)
        (ab,) = self.session.run(["ab"], {"L": small[None, None]})  # (1, 2, h, w)
        ab_full = cv2.resize(ab[0].transpose(1, 2, 0), (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
        return lab_to_bgr(np.dstack([lab[:, :, :1], ab_full]))


def gray_baseline(bgr: np.ndarray) -> np.ndarray:
    lab = bgr_to_lab(bgr)
    lab[:, :, 1:] = 0
    return lab_to_bgr(lab)


def load_eval_image(path: str) -> np.ndarray:
    """uint8 BGR at 256×256; cut-outs are composited on mid-gray."""
    img = read_bgra(path)
    if img is None:
        raise ValueError(f"cannot read {path}")
    alpha = img[:, :, 3:4].astype(np.float32) / 255
    bgr = (alpha * img[:, :, :3] + (1 - alpha) * 128).astype(np.uint8)
    return cv2.resize(bgr, (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_AREA)


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], thumb: int = 160) -> np.ndarray:
    """A grid with one row per photo: gray input | model output | ground truth."""
    tiles = []
    for truth, gray, pred in rows:
        tiles.append(
            np.hstack([cv2.resize(x, (thumb, thumb), interpolation=cv2.INTER_AREA) for x in (gray, pred, truth)])
        )
    grid = np.vstack(tiles)
    header = np.full((28, grid.shape[1], 3), 255, np.uint8)
    for i, label in enumerate(("gray input", "colorizer", "original")):
        cv2.putText(header, label, (i * thumb + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, grid])


def evaluate(model_path: str, files: list[str], grid_rows: int = 8) -> tuple[Scores, Scores, Scores, np.ndarray]:
    """Mean scores of model, gray baseline and ground truth; and a before/after grid."""
    model = OnnxColorizer(model_path)
    m, g, t = [], [], []
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for path in files:
        truth = load_eval_image(path)
        gray = gray_baseline(truth)
        pred = model(truth)
        m.append((psnr(pred[..., ::-1], truth[..., ::-1]), colourfulness(pred)))
        g.append((psnr(gray[..., ::-1], truth[..., ::-1]), colourfulness(gray)))
        t.append((float("nan"), colourfulness(truth)))
        if len(rows) < grid_rows:
            rows.append((truth, gray, pred))

    def mean(xs: list[tuple[float, float]]) -> Scores:
        arr = np.array(xs)
        return Scores(
            float(np.nanmean(arr[:, 0])) if not np.isnan(arr[:, 0]).all() else float("nan"), float(arr[:, 1].mean())
        )

    return mean(m), mean(g), mean(t), contact_sheet(rows)


def markdown_table(model: Scores, gray: Scores, truth: Scores, n: int, model_path: str) -> str:
    return "\n".join(
        [
            f"Evaluation of `{os.path.basename(model_path)}` on {n} photos at {EVAL_SIZE}×{EVAL_SIZE}",
            "",
            "| | PSNR RGB (dB) ↑ | colourfulness (Hasler–Süsstrunk) |",
            "| --- | ---: | ---: |",
            f"| colorizer | {model.psnr:.2f} | {model.colourfulness:.1f} |",
            f"| gray baseline (a = b = 0) | {gray.psnr:.2f} | {gray.colourfulness:.1f} |",
            f"| ground truth | – | {truth.colourfulness:.1f} |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Evaluate an ONNX Colorizer model on a folder of colour photos.")
    p.add_argument("model")
    p.add_argument("folder")
    p.add_argument(
        "--split",
        choices=["all", "val", "train"],
        default="all",
        help="val/train: the training run's hash split of the folder",
    )
    p.add_argument("--val_fraction", type=float, default=0.05)
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many photos")
    p.add_argument("--out", type=Path, default=Path("eval"))
    a = p.parse_args(argv)
    rel = list_images(a.folder)
    if a.split != "all":
        rel = [f for f in rel if is_validation(f, a.val_fraction) == (a.split == "val")]
    files = [os.path.join(a.folder, f) for f in rel][: a.limit or None]
    if not files:
        raise SystemExit(f"no images in {a.folder} (split {a.split})")
    model, gray, truth, grid = evaluate(a.model, files)
    a.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(model, gray, truth, len(files), a.model)
    (a.out / "EVALUATION.md").write_text(table)
    cv2.imwrite(str(a.out / "grid.png"), grid)
    print(table)


if __name__ == "__main__":
    main()
