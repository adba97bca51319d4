"""Two models on the same photos, paired: the mean per-photo difference of their automatic PSNR, with its bootstrap
interval (train.interval), by kind (photos, cut-outs on mid-gray) and overall. Two models can differ by several dB
on one photo and in opposite directions on the next, so a difference of their means on ~30 photos needs its
interval before it decides anything.

    python -m train.compare docs/eval/per_photo.csv runs/eval-new/per_photo.csv

Each file is a ``per_photo.csv`` that ``train.evaluate`` wrote; the photos they share are compared. Given the two
models and the photos' folder, it also draws the photos the new model loses most on and wins most on, so a mean
that moved little cannot hide what moved a lot:

    python -m train.compare before.csv after.csv --models before.onnx after.onnx --data_dir DIR --grid out.png
"""

from __future__ import annotations

import argparse
import csv
import os

import cv2
import numpy as np

from train.evaluate import OnnxColorizer, contact_sheet, gray_baseline, load_eval_image
from train.interval import mean_interval


def read_per_photo(path: str) -> dict[str, tuple[float, bool]]:
    """photo -> (automatic PSNR, whether it is a cut-out) from a per_photo.csv."""
    with open(path, newline="") as f:
        return {row["photo"]: (float(row["automatic_psnr"]), row["cut_out"] == "1") for row in csv.DictReader(f)}


def paired_lines(before: dict[str, tuple[float, bool]], after: dict[str, tuple[float, bool]]) -> list[str]:
    """A markdown table: after − before, per kind and overall, with 95 % bootstrap intervals."""
    shared = sorted(set(before) & set(after))
    if not shared:
        raise SystemExit("the two files share no photos")
    kinds = {
        "photos": [p for p in shared if not before[p][1]],
        "cut-outs on mid-gray": [p for p in shared if before[p][1]],
        "all": shared,
    }
    lines = ["| | photos | mean difference (dB) | 95 % bootstrap interval (dB) |", "| --- | ---: | ---: | --- |"]
    for kind, photos in kinds.items():
        if not photos:
            continue
        d = np.array([after[p][0] - before[p][0] for p in photos])
        low, high = mean_interval(d)
        lines.append(f"| {kind} | {len(d)} | {d.mean():+.2f} | {low:+.2f} to {high:+.2f} |")
    return lines


def largest_changes(
    before: dict[str, tuple[float, bool]], after: dict[str, tuple[float, bool]], count: int
) -> list[str]:
    """The ``count`` shared photos the new model loses most on (worst first), then the ``count`` it wins most on."""
    by_change = sorted(set(before) & set(after), key=lambda p: after[p][0] - before[p][0])
    return by_change[:count] + by_change[-count:] if len(by_change) > 2 * count else by_change


def difference_grid(models: tuple[str, str], data_dir: str, photos: list[str]) -> np.ndarray:
    """One row per photo: gray input, each model's automatic colour (labelled with its version), the original."""
    colorizers = [OnnxColorizer(m) for m in models]
    rows = []
    for photo in photos:
        bgr = load_eval_image(os.path.join(data_dir, photo))
        rows.append([gray_baseline(bgr), *(c(bgr) for c in colorizers), bgr])
    versions = [c.session.get_modelmeta().custom_metadata_map.get("colorizer.version", "?") for c in colorizers]
    return contact_sheet(rows, ["gray input", *(f"model {v}" for v in versions), "original"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Paired comparison of two evaluations' per-photo automatic PSNR.")
    p.add_argument("before", help="per_photo.csv of the model to compare against")
    p.add_argument("after", help="per_photo.csv of the new model")
    p.add_argument("--models", nargs=2, metavar=("BEFORE", "AFTER"), help="the two ONNX files, for --grid")
    p.add_argument("--data_dir", default="", help="the photos the csv files name, for --grid")
    p.add_argument("--grid", default="", help="write the largest losses and wins of the new model side by side here")
    p.add_argument("--rows", type=int, default=3, help="losses (and as many wins) in the grid")
    a = p.parse_args(argv)
    before, after = read_per_photo(a.before), read_per_photo(a.after)
    print("\n".join(paired_lines(before, after)))
    if a.grid:
        if not (a.models and a.data_dir):
            raise SystemExit("--grid needs --models and --data_dir")
        photos = largest_changes(before, after, a.rows)
        cv2.imwrite(a.grid, difference_grid(a.models, a.data_dir, photos))
        for photo in photos:
            print(f"{after[photo][0] - before[photo][0]:+.2f} dB  {photo}")


if __name__ == "__main__":
    main()
