"""Cut-outs through the service's own pipeline (app.pipeline.prepare, ModelRuntime, app.pipeline.finish), with
the model seeing them flattened on mid-gray (what the service does) and seeing the colour stored under their
transparent pixels (what it did before). Scored on the opaque pixels only, the part a person sees: PSNR of the
answer against the original photo. Photos: the cut-outs of the validation and calibration splits, which the model
never trained on, at 256 px as train/evaluate.py sizes them.

    .venv/bin/python -m bench.cutouts [--out docs/eval/CUTOUTS.md]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from app.color import model_input
from app.pipeline import finish, prepare
from app.runtime import ModelRuntime
from bench.common import MODEL
from train.config import DEFAULT_DATA
from train.data import has_cutout, read_bgra, split_images
from train.evaluate import EVAL_SIZE, psnr


def visible_psnr(runtime: ModelRuntime, bgra: np.ndarray, flatten: bool) -> float:
    """PSNR over the fully opaque pixels of the service's answer for the gray version of a BGRA cut-out."""
    gray = cv2.cvtColor(cv2.cvtColor(bgra[:, :, :3], cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    upload = cv2.imencode(".png", np.dstack([gray, bgra[:, :, 3]]))[1].tobytes()
    size = runtime.info.input_size
    prepared = prepare(upload, size, EVAL_SIZE * EVAL_SIZE)
    if not flatten:  # the model sees the stored colour under transparent pixels
        prepared.small_l = model_input(prepared.full_l, size)
    ab = runtime.run(prepared.small_l[None])[0]
    out = cv2.imdecode(np.frombuffer(finish(prepared, ab, "png", 1), np.uint8), cv2.IMREAD_UNCHANGED)
    assert out is not None
    opaque = bgra[:, :, 3] == 255
    return psnr(out[:, :, :3][opaque][:, ::-1], bgra[:, :, :3][opaque][:, ::-1])


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description="Cut-outs: flattened on mid-gray against the stored hidden colour.")
    p.add_argument("--data_dir", default=DEFAULT_DATA)
    p.add_argument("--out", default="", help="also write the table to this Markdown file")
    a = p.parse_args(argv)
    _, val, calib = split_images(a.data_dir, 0.05, 0.05)
    runtime = ModelRuntime(MODEL, ["CPUExecutionProvider"], threads=2)
    rows = []
    for name in val + calib:
        img = read_bgra(os.path.join(a.data_dir, name))
        if img is None or not has_cutout(img):
            continue
        bgra = cv2.resize(img, (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_AREA)
        rows.append((name, visible_psnr(runtime, bgra, False), visible_psnr(runtime, bgra, True)))
    before, after = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    lines = [
        f"Cut-outs of the validation and calibration splits ({len(rows)} photos, {EVAL_SIZE} px), model "
        f"{runtime.info.version}: PSNR (dB) over the opaque pixels, through the service's pipeline.",
        "Reproduce: `.venv/bin/python -m bench.cutouts --out docs/eval/CUTOUTS.md`",
        "",
        "| photo | model sees the stored hidden colour | model sees the cut-out on mid-gray |",
        "| --- | ---: | ---: |",
        *(f"| {Path(n).name} | {b:.2f} | {f:.2f} |" for n, b, f in rows),
        f"| **mean** | **{before:.2f}** | **{after:.2f}** |",
        f"| better with mid-gray | | {sum(f > b for _, b, f in rows)} of {len(rows)} |",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if a.out:
        Path(a.out).write_text(table)
    return table


if __name__ == "__main__":
    main()
