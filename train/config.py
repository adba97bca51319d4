"""Training configuration: a dataclass of defaults, overridable as ``--key value`` on the command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DATA = os.path.join(os.environ.get("COLORIZE_DATA", os.path.expanduser("~/.cache/colorize")), "train")


@dataclass
class TrainConfig:
    data_dir: str = DEFAULT_DATA  # folder of colour photos, searched recursively
    cache_dir: str = ""  # decoded-image cache; default: <out_dir>/cache
    out_dir: str = "runs/default"  # checkpoints, logs and bin tables go here
    val_fraction: float = 0.05  # share of photos held out (chosen by a hash of the path, so stable)
    calib_fraction: float = 0.05  # share held out for fitting the ab calibration after training (not val)
    crop_size: int = 128  # training crop side; also the exported model's input size S
    cache_max_side: int = 512  # longer side of the cached decoded images
    min_crop_fraction: float = 0.3  # smallest crop side as a share of the image's shorter side
    plain_backdrop_share: float = 0.3  # share of cut-outs pasted on a plain neutral backdrop instead of a photo
    cutout_share: float = 0.0  # share of draws that are cut-outs; 0 = as their √pixels weight falls (about 31%)
    head: str = "combined"  # "classification" (Zhang et al. bins), "regression", or "combined" (both, Zhang 2017)
    regression_weight: float = 10.0  # combined head: loss = CE + this × L1 (or L2) on ab/110 (colorization-pytorch)
    # The combined head's regression term: "l1" (colorization-pytorch; learns each channel's median, which commits to
    # one colour of a bimodal object) or "l2" (learns the mean, which PSNR rewards: unsure colour fades toward gray).
    regression_loss: str = "l1"
    # > 0: add this × the batch's mean ln(MSE + rgb_log_floor) of each photo in sRGB (train/rgb_loss.py): the
    # evaluation's per-photo PSNR as a loss, which weighs nearly-gray photos by how little error they have left.
    rgb_log_weight: float = 0.0
    rgb_log_floor: float = 1e-4  # caps a right photo's weight; 1e-4 is a PSNR of 40 dB
    skips: bool = True  # U-Net shortcuts from the encoder into the decoder
    hints: bool = True  # train with sampled local and global colour hints (Zhang et al. 2017)
    full_res: bool = False  # the regression head at the crop's resolution, not half of it (ModelArgs.full_res)
    hint_adapter: bool = False  # also a second path from the local hints into the encoder (train.model.HintAdapter)
    global_extractor: str = "compact"  # "compact" (from scratch) or "inception_resnet_v2" (frozen, ImageNet)
    global_weights: str = ""  # local timm inception_resnet_v2 checkpoint, required by that extractor (no download)
    width: int = 16  # channels of the first encoder layer; the rest scale from it
    rebalance_lambda: float = 1.0  # mix of empirical ab prior and uniform for class weights; 1 = no rebalancing
    soft_sigma: float = 5.0  # Gaussian sigma (ab units) of soft-encoded targets
    soft_neighbours: int = 5  # bins each target pixel is spread over
    annealed_t: float = 0.38  # temperature of the annealed-mean decoding
    batch_size: int = 32  # images per optimiser step (per process under DDP)
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 200  # linear warm-up before cosine decay
    max_steps: int = 6000  # optimiser steps in total
    max_minutes: float = 0.0  # stop (with a checkpoint) after this many minutes; 0 = no limit
    # > 0: stop (with a checkpoint) at this step while the cosine still runs over max_steps, so a recipe that used a
    # cycle's middle (2.5.x: step 2,500 of a 4,835-step cycle) replays step for step without running the rest
    stop_step: int = 0
    schedule_from_minutes: float = 0.0  # a resumed run's new cosine cycle starts here (warm restart); 0 = one cycle
    eval_every: int = 500  # steps between validation losses and checkpoints
    # Also keep <out_dir>/step<N>.pt every this many steps (a multiple of eval_every; 0 = only last.pt): a cycle's
    # middle can beat its end on the calibration split (2.3.0 shipped step 3,050 of a cycle that ended at 4,639),
    # and train.choose_readout picks among checkpoints.
    snapshot_every: int = 0
    # > 0: also keep an exponential moving average of the weights (train/ema.py) with this decay, written beside each
    # checkpoint as ema.pt (and each snapshot as ema_step<N>.pt): a checkpoint whose "model" is the average, which
    # train.choose_readout and train.export take like any other. 0.999 averages over about the last 1,000 steps.
    ema_decay: float = 0.0
    workers: int = 1  # data-loader processes (crops are cheap once cached)
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    # "bf16": the forward pass and loss run under torch.autocast in bfloat16 (weights, optimiser and validation stay
    # fp32). On a CPU with AVX-512 bf16 or AMX it is ~1.4x faster per step (models/README.md); elsewhere it is slower.
    precision: str = "fp32"
    seed: int = 1337  # seeds Python, NumPy and torch
    device: str = "auto"  # "auto" = cuda when present, else cpu
    resume: bool = True  # continue from <out_dir>/last.pt when it exists
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes stored in checkpoints


def parse_config(argv: list[str] | None = None, base: TrainConfig | None = None) -> TrainConfig:
    """Build a config from defaults plus ``--key value`` overrides; an unknown key is an error."""
    cfg = base or TrainConfig()
    parser = argparse.ArgumentParser(description="Train the Colorizer model.")
    for f in dataclasses.fields(cfg):
        if f.name == "extra":
            continue
        default = getattr(cfg, f.name)
        if isinstance(default, bool):
            parser.add_argument(f"--{f.name}", type=_parse_bool, default=default)
        else:
            parser.add_argument(f"--{f.name}", type=type(default), default=default)
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(cfg, **vars(args))
    if cfg.head not in ("classification", "regression", "combined"):
        parser.error(f"--head must be classification, regression or combined, not {cfg.head!r}")
    if cfg.global_extractor not in ("compact", "inception_resnet_v2"):
        parser.error(f"--global_extractor must be compact or inception_resnet_v2, not {cfg.global_extractor!r}")
    if cfg.global_extractor == "inception_resnet_v2" and not cfg.global_weights:
        parser.error(
            "--global_extractor inception_resnet_v2 needs --global_weights PATH, a local timm inception_resnet_v2 "
            "checkpoint (e.g. the tf_in1k weights); nothing is downloaded"
        )
    if cfg.regression_loss not in ("l1", "l2"):
        parser.error(f"--regression_loss must be l1 or l2, not {cfg.regression_loss!r}")
    if cfg.regression_loss != "l1" and cfg.head != "combined":
        parser.error("--regression_loss is the combined head's regression term; --head regression trains smooth L1")
    if cfg.rgb_log_weight and cfg.head == "classification":
        parser.error("--rgb_log_weight needs a regression output (--head regression or combined)")
    if cfg.rgb_log_floor <= 0:
        parser.error(f"--rgb_log_floor must be positive, not {cfg.rgb_log_floor}")
    if cfg.precision not in ("fp32", "bf16"):
        parser.error(f"--precision must be fp32 or bf16, not {cfg.precision!r}")
    if cfg.hint_adapter and not cfg.hints:
        parser.error("--hint_adapter needs --hints true: it is a path for the hints")
    if cfg.snapshot_every % cfg.eval_every:
        parser.error(f"--snapshot_every must be a multiple of --eval_every ({cfg.eval_every}): {cfg.snapshot_every}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        parser.error(f"--ema_decay must lie in [0, 1), not {cfg.ema_decay}")
    if problem := crop_size_problem(cfg.crop_size):
        parser.error(problem)
    return cfg


def crop_size_problem(size: int) -> str:
    """Why ``size`` cannot be a training crop's side, or "" when it can (train.train's and the fine-tunes' check)."""
    return f"--crop_size must be a multiple of 8 (the encoder strides by 8), not {size}" if size % 8 else ""


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
