"""Two models on the same photos, paired: the mean per-photo difference of their automatic PSNR, with its bootstrap
interval (train.interval), by kind (photos, cut-outs on mid-gray) and overall. Two models can differ by several dB
on one photo and in opposite directions on the next, so a difference of their means on ~30 photos needs its
interval before it decides anything.

    python -m train.compare docs/eval/per_photo.csv runs/eval-new/per_photo.csv

Each file is a ``per_photo.csv`` that ``train.evaluate`` wrote; the photos they share are compared.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Paired comparison of two evaluations' per-photo automatic PSNR.")
    p.add_argument("before", help="per_photo.csv of the model to compare against")
    p.add_argument("after", help="per_photo.csv of the new model")
    a = p.parse_args(argv)
    print("\n".join(paired_lines(read_per_photo(a.before), read_per_photo(a.after))))


if __name__ == "__main__":
    main()
