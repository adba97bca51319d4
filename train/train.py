"""Training CLI: ``python -m train.train --key value ...`` (see train/config.py for the keys).

CPU by default, CUDA when present, several GPUs with ``torchrun --nproc_per_node N -m train.train``.
Checkpoints carry model_args, the config and the bin table, so resume and export need nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from train.bins import SoftEncoder, bins_from_counts, count_ab, rebalance_weights, rebalanced_cross_entropy
from train.config import TrainConfig, parse_config
from train.data import RandomCrops, load_cached, split_images, validation_batch
from train.ema import WeightAverage
from train.lab import bgr_to_lab
from train.model import AB_NORM, ColorizerNet, HeadOutput, ModelArgs
from train.rgb_loss import log_rgb_mse

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def compute_bins(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """In-gamut bins and their prior, from the opaque pixels of the training photos."""

    def opaque_ab() -> Any:
        for img in images:
            small = (
                img if max(img.shape[:2]) <= 256 else img[:: max(img.shape[:2]) // 256, :: max(img.shape[:2]) // 256]
            )
            lab = bgr_to_lab(np.ascontiguousarray(small[:, :, :3]))
            keep = small[:, :, 3] > 127
            yield lab[:, :, 1:][keep][:, None, :]

    return bins_from_counts(count_ab(opaque_ab()))


def at_size(ab: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The target ab (N, 2, H, W) area-averaged down to ``like``'s size: a full-resolution model's batches carry ab at
    S for its regression head, and its bins are at S/2 (for a 2× step the same as the data's cv2.INTER_AREA)."""
    if ab.shape[-2:] == like.shape[-2:]:
        return ab
    if ab.shape[-1] < like.shape[-1]:  # a full-resolution model fed a half-resolution model's batches
        raise ValueError(f"target ab at {tuple(ab.shape[-2:])} is coarser than the output, {tuple(like.shape[-2:])}")
    return F.adaptive_avg_pool2d(ab, (like.shape[-2], like.shape[-1]))


class Objective:
    """Turns head output and target ab into the training loss for any head."""

    def __init__(self, cfg: TrainConfig, centres: torch.Tensor | None, weights: torch.Tensor | None) -> None:
        self.cfg, self.weights = cfg, weights
        self.encode = None if centres is None else SoftEncoder(centres, cfg.soft_neighbours, cfg.soft_sigma)
        self.distance = F.mse_loss if cfg.regression_loss == "l2" else F.l1_loss  # the combined head's regression term

    def __call__(self, out: HeadOutput, ab: torch.Tensor, lightness: torch.Tensor | None = None) -> torch.Tensor:
        """``lightness`` (the input L) is needed only by the sRGB term (``rgb_log_weight``)."""
        loss = ab.new_zeros(())
        if self.cfg.rgb_log_weight and out.ab_norm is not None:
            if lightness is None:
                raise ValueError("the sRGB term (rgb_log_weight) needs the input lightness")
            loss = loss + self.cfg.rgb_log_weight * log_rgb_mse(
                lightness, out.ab_norm * AB_NORM, ab, self.cfg.rgb_log_floor
            )
        if out.logits is not None:
            assert self.encode is not None
            assert self.weights is not None
            bins, targets = self.encode(at_size(ab, out.logits))
            loss = loss + rebalanced_cross_entropy(out.logits, bins, targets, self.weights)
        if out.ab_norm is not None:
            ab = at_size(ab, out.ab_norm)
            if self.cfg.head == "regression":
                return loss + F.smooth_l1_loss(out.ab_norm, ab / AB_NORM, beta=0.05)
            loss = loss + self.cfg.regression_weight * self.distance(out.ab_norm, ab / AB_NORM)
        return loss


def uses_bins(cfg: TrainConfig) -> bool:
    """The bin table serves the classification head and the global hint."""
    return cfg.head != "regression" or cfg.hints


def model_args(cfg: TrainConfig, num_bins: int) -> ModelArgs:
    """The network a training configuration describes."""
    return ModelArgs(
        head=cfg.head,
        width=cfg.width,
        global_extractor=cfg.global_extractor,
        global_weights=cfg.global_weights,
        num_bins=num_bins,
        annealed_t=cfg.annealed_t,
        skips=cfg.skips,
        hints=cfg.hints,
        hint_adapter=cfg.hint_adapter,
        full_res=cfg.full_res,
    )


def lr_at(step: int, minutes: float, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % over whichever budget (steps or minutes) runs out first,
    so a time-boxed run still ends with a fully decayed learning rate. With ``schedule_from_minutes`` a resumed,
    time-boxed run starts a fresh cosine cycle at full rate there (a warm restart) instead of continuing the old one's
    tail; the step budget then only stops the run."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    if cfg.max_minutes and cfg.schedule_from_minutes:
        start = min(cfg.schedule_from_minutes, cfg.max_minutes - 1e-6)
        progress = max(0.0, (minutes - start) / (cfg.max_minutes - start))
    elif cfg.max_minutes:
        progress = max(progress, minutes / cfg.max_minutes)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Write atomically, so an interrupted save never corrupts the last good checkpoint."""
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def train(cfg: TrainConfig) -> str:
    """Train to cfg.max_steps (or cfg.max_minutes) and return the path of the last checkpoint."""
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    is_main = not distributed or dist.get_rank() == 0
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + (dist.get_rank() if distributed else 0))
    os.makedirs(cfg.out_dir, exist_ok=True)
    ckpt_path = os.path.join(cfg.out_dir, "last.pt")

    train_files, val_files, _calib_files = split_images(cfg.data_dir, cfg.val_fraction, cfg.calib_fraction)
    if not train_files:
        raise SystemExit(f"no images found under {cfg.data_dir}: fetch them with python -m train.fetch_data")
    cache = cfg.cache_dir or os.path.join(cfg.out_dir, "cache")
    train_images = load_cached(cfg.data_dir, train_files, cache, cfg.cache_max_side)
    val_images = load_cached(cfg.data_dir, val_files, cache, cfg.cache_max_side)
    log.info("%d training and %d validation photos", len(train_images), len(val_images))

    resume = (
        torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if cfg.resume and os.path.exists(ckpt_path)
        else None
    )
    centres_t = weights_t = None
    if uses_bins(cfg):
        if resume is not None:
            centres, prior = resume["bins"]["centres"], resume["bins"]["prior"]
        else:
            centres, prior = compute_bins(train_images)
        weights = rebalance_weights(centres, prior, cfg.rebalance_lambda, cfg.soft_sigma)
        centres_t, weights_t = torch.from_numpy(centres).to(device), torch.from_numpy(weights).to(device)
        log.info("%d in-gamut ab bins; class weights %.2f..%.2f", len(centres), weights.min(), weights.max())
    else:
        centres, prior = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)

    args = model_args(cfg, len(centres))
    model = ColorizerNet(args, torch.from_numpy(centres) if uses_bins(cfg) else None)
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed_before = 0, 0.0
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        if average is not None:  # a run that starts averaging on resume starts from the weights it resumes
            average.load_state_dict(resume.get("ema", resume["model"]))
        step, elapsed_before = resume["step"], resume.get("train_seconds", 0.0)
        log.info("resumed from %s at step %d", ckpt_path, step)
    net: torch.nn.Module = DistributedDataParallel(model) if distributed else model
    objective = Objective(cfg, centres_t, weights_t)

    loader = DataLoader(
        RandomCrops(
            train_images,
            cfg.crop_size,
            cfg.min_crop_fraction,
            cfg.seed + step,
            centres if cfg.hints else None,
            cfg.plain_backdrop_share,
            cfg.cutout_share,
            cfg.full_res,
        ),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
    )
    val_l, val_ab = validation_batch(val_images, cfg.crop_size, cfg.full_res) if val_images else (None, None)

    def checkpoint(snapshot: bool = False) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "model_args": args.as_dict(),
            "config": dataclasses.asdict(cfg),
            "bins": {"centres": centres, "prior": prior},
            "train_seconds": elapsed_before + time.time() - start,
            "val_files": val_files,
        }
        if average is not None:
            state["ema"] = average.state_dict()
        save_checkpoint(ckpt_path, state)
        snapshots = {ckpt_path: f"step{step}.pt"}
        if average is not None:  # the average as a model of its own; not resumable (no optimiser), so not last.pt
            ema_path = os.path.join(cfg.out_dir, "ema.pt")
            save_checkpoint(
                ema_path, {k: v for k, v in state.items() if k not in ("optimizer", "ema")} | {"model": state["ema"]}
            )
            snapshots[ema_path] = f"ema_step{step}.pt"
        if snapshot:
            for path, name in snapshots.items():
                shutil.copyfile(path, os.path.join(cfg.out_dir, name))

    start = time.time()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not is_main, dynamic_ncols=True)
    seen, t_window = 0, time.time()
    last_step = min(cfg.max_steps, cfg.stop_step or cfg.max_steps)
    for lightness, ab, *hints in loader:
        minutes = (elapsed_before + time.time() - start) / 60
        if step >= last_step or (cfg.max_minutes and minutes >= cfg.max_minutes):
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, minutes, cfg)
        lightness = lightness.to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            out = net(lightness, *(h.to(device) for h in hints), features_only=True)
            loss = objective(out, ab.to(device), lightness)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if average is not None:
            average.update(model, step)
        seen += lightness.shape[0]
        if is_main:
            rate = seen / max(1e-9, time.time() - t_window)
            bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.1f}")
            bar.update(1)
        if step % cfg.eval_every == 0 and is_main:
            val_loss = evaluate_loss(model, objective, val_l, val_ab, device)
            checkpoint(snapshot=bool(cfg.snapshot_every) and step % cfg.snapshot_every == 0)
            record = {
                "step": step,
                "loss": loss.item(),
                "val_loss": val_loss,
                "img_s": seen / (time.time() - t_window),
                "minutes": (elapsed_before + time.time() - start) / 60,
            }
            with open(os.path.join(cfg.out_dir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
            seen, t_window = 0, time.time()
    bar.close()
    if is_main:
        checkpoint()
    if distributed:
        dist.destroy_process_group()
    return ckpt_path


@torch.no_grad()
def evaluate_loss(
    model: ColorizerNet,
    objective: Objective,
    lightness: torch.Tensor | None,
    ab: torch.Tensor | None,
    device: torch.device,
) -> float | None:
    if lightness is None or ab is None:
        return None
    model.eval()
    losses = []
    for i in range(0, len(lightness), 32):
        batch = lightness[i : i + 32].to(device)
        losses.append(objective(model.heads(batch), ab[i : i + 32].to(device), batch).item())
    model.train()
    return float(np.mean(losses))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_config(argv)
    path = train(cfg)
    log.info("checkpoint: %s", path)


if __name__ == "__main__":
    main(sys.argv[1:])
