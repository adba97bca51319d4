"""The default model's recipe in one command, from the photos to a scored ONNX file. Run the same command again after a
stop and it goes on where it stopped: a finished stage is skipped, the stage that was cut off resumes from its last
save (the cycle from last.pt, a fine-tune from its output file).

    python -m train.recipe runs/mine --precision bf16     # 2.5.2's steps: 118 minutes on a 2-core AMX Xeon
    python -m train.recipe runs/mine --crop_size 96       # the cycle and first fine-tune on 96² crops: ~2 hours in fp32
                                                          # on a 2-core Zen 2 (docs/training_history.md, runs/s24)

The stages (models/README.md, "Training"; each writes into the output folder):
1. ``cycle``: train.train to step 2,500 of a 4,835-step cosine, keeping its weights' moving average
   (``ema_step2500.pt``).
2. ``ft1``: the first anchored fine-tune, 2,355 steps, trunk at 3e-4 and hint weights at 1e-3 (``ft1.pt``).
3. ``ft2``: the second, 1,075 steps, at 1e-3 and 2e-3, on crops of the served size, where the service puts the
   points (``ft2.pt``).
4. ``export``: the neutral gate at power 2, its gain set on the calibration split to 0.506× the truth's colourfulness
   (2.5.1's, which every 2.5.x kept), then train.export at the served size (``colorizer.onnx``).
5. ``evaluate``: the validation split scored once (``eval_val/``).

Any other flag goes to train.train (``--width 8``, ``--data_dir …``); the fine-tunes take the cycle's settings from its
checkpoint. ``times.log`` gets a line as each stage starts, and one at the end. The int8 file is then
``python -m bench.quantize --model runs/mine/colorizer.onnx --out runs/mine/colorizer.int8.onnx``.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import onnx
import torch

from train import choose_gate, evaluate, export, finetune_hints
from train.config import parse_config
from train.train import train

log = logging.getLogger("recipe")

GATE_POWER = 2.0
GATE_COLOURFULNESS = 0.506  # ÷ the truth's, on the calibration split: 2.5.1's, and the floor of the issue's band


def stamp(out: Path, what: str) -> None:
    with open(out / "times.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())} {what}\n")


def newer(target: Path, source: Path) -> bool:
    """Whether ``target`` was written after ``source``: a stage whose output is newer than its input is done."""
    return target.exists() and target.stat().st_mtime >= source.stat().st_mtime


def exported_version(path: Path) -> str:
    """colorizer.version of an exported file, so a new --version exports again."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}["colorizer.version"]


def cycle(out: Path, a: argparse.Namespace, train_flags: list[str]) -> Path:
    """Stage 1: the cycle's weight average at its stop step (train.train resumes from last.pt on its own)."""
    average = out / f"ema_step{a.cycle_stop}.pt"
    if average.exists():
        return average
    flags = ["--out_dir", str(out), "--precision", a.precision, "--crop_size", str(a.crop_size)]
    flags += ["--hint_adapter", "true", "--plain_backdrop_share", "0.6", "--ema_decay", "0.999"]
    flags += ["--max_steps", str(a.cycle_steps), "--stop_step", str(a.cycle_stop)]
    # evaluated and snapshotted every 250 and 500 steps as 2.5.2 was, and always at the stop, which must be kept
    flags += ["--eval_every", str(math.gcd(250, a.cycle_stop)), "--snapshot_every", str(math.gcd(500, a.cycle_stop))]
    if a.cache_dir:
        flags += ["--cache_dir", a.cache_dir]
    train(parse_config([*flags, *train_flags]))
    return average


def fine_tune(start: Path, tuned: Path, steps: int, rates: tuple[str, str], a: argparse.Namespace, size: int) -> Path:
    """Stages 2 and 3: an anchored fine-tune of every weight (train.finetune_hints resumes or skips on its own)."""
    trunk_lr, lr = rates
    flags = [str(start), str(tuned), "--trunk_lr", trunk_lr, "--lr", lr, "--anchor", "1", "--steps", str(steps)]
    flags += ["--precision", a.precision, "--crop_size", str(size)]
    if a.cache_dir:
        flags += ["--cache_dir", a.cache_dir]
    finetune_hints.main(flags)
    return tuned


def gated_export(tuned: Path, onnx_path: Path, a: argparse.Namespace) -> None:
    """Stage 4: the gate's gain chosen on the calibration split at the served size, and the export with it."""
    model, ckpt = export.load_model(str(tuned), readout="regression")
    rows = choose_gate.calibration_rows(model, ckpt["config"], ckpt["config"]["data_dir"], GATE_COLOURFULNESS)
    choose_gate.print_rows(rows)
    gate = next(r for r in rows if r.power == GATE_POWER)
    flags = [str(tuned), str(onnx_path), "--readout", "regression", *gate.flags().split()]
    export.main([*flags, "--version", a.version] if a.version else flags)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(
        description="Train the default model's recipe end to end (resumable), then export and score it.",
        epilog="Any other flag goes to train.train, e.g. --data_dir or --width.",
    )
    p.add_argument("out_dir", type=Path)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 where the CPU has it (AMX)")
    p.add_argument("--crop_size", type=int, default=128, help="the cycle's and first fine-tune's crops")
    p.add_argument("--served_size", type=int, default=128, help="the second fine-tune's crops and the export's input")
    p.add_argument("--cycle_steps", type=int, default=4835, help="the cycle's cosine")
    p.add_argument("--cycle_stop", type=int, default=2500, help="where the cycle stops, in its cosine")
    p.add_argument("--ft1_steps", type=int, default=2355)
    p.add_argument("--ft2_steps", type=int, default=1075)
    p.add_argument("--cache_dir", default="", help="decoded-photo cache; default: <out_dir>/cache")
    p.add_argument("--version", default="", help="colorizer.version of the exported file; default: train.export's")
    a, train_flags = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = a.out_dir
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, scores = out / "colorizer.onnx", out / "eval_val" / "EVALUATION.md"

    stamp(out, "start cycle")
    average = cycle(out, a, train_flags)
    stamp(out, "start ft1")
    ft1 = fine_tune(average, out / "ft1.pt", a.ft1_steps, ("3e-4", "1e-3"), a, a.crop_size)
    stamp(out, "start ft2")
    ft2 = fine_tune(ft1, out / "ft2.pt", a.ft2_steps, ("1e-3", "2e-3"), a, a.served_size)
    stamp(out, "start export")
    if not newer(onnx_path, ft2) or (a.version and exported_version(onnx_path) != a.version):
        gated_export(ft2, onnx_path, a)
    stamp(out, "start evaluate")
    if not newer(scores, onnx_path):
        cfg = torch.load(ft2, map_location="cpu", weights_only=False)["config"]  # the run's splits and photos
        fractions = ["--val_fraction", str(cfg["val_fraction"]), "--calib_fraction", str(cfg["calib_fraction"])]
        evaluate.main([str(onnx_path), cfg["data_dir"], "--split", "val", *fractions, "--out", str(scores.parent)])
    stamp(out, "end")
    log.info("recipe done: %s, scored in %s", onnx_path, scores)
    return onnx_path


if __name__ == "__main__":
    main()
