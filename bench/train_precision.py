"""Training step time and agreement, fp32 against bf16 autocast (train.train --precision), side by side in one run.

    .venv/bin/python -m bench.train_precision          # -> docs/perf/train_precision.json

The model is the shipped training configuration (train/config.py defaults: combined head, skips, hints, width 16,
batch 32 of 128² crops) on the training photos' validation split, freshly initialised with a fixed seed. Speed:
full optimiser steps, the two precisions alternating, so a drift of the machine hits both. Agreement: from the same
weights and batch, the bf16 loss against the fp32 one and the cosine between their gradients; then the same short
run of optimiser steps from the same start in each precision, and the loss each reaches.
bf16 is fast only where the CPU has AVX-512 bf16 or AMX (`lscpu`); elsewhere it emulates and is slower.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import torch

from bench.common import CACHE, PHOTOS, save, split_photos


def photos() -> list[np.ndarray]:
    """The validation photos, decoded (BGRA) through the training run's cache."""
    from train.data import load_cached

    files = [str(p.relative_to(PHOTOS)) for p in split_photos()]
    if not files:
        raise SystemExit("no validation photos: fetch the training photos first (python -m train.fetch_data)")
    return load_cached(str(PHOTOS), files, str(CACHE / "train-cache"), 512)


def batch(images: list[np.ndarray], size: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 1, S, S) L and (count, 2, S/2, S/2) ab: whole photos squeezed to S, repeated up to ``count``."""
    from train.data import validation_batch

    lightness, ab = validation_batch(images, size)
    picks = torch.arange(count) % len(lightness)
    return lightness[picks], ab[picks]


def build(images: list[np.ndarray], seed: int) -> tuple[Any, Any, int]:
    """The model and its objective as train.train builds them for the default configuration, with the bins
    train.train computes from these photos; and the number of bins."""
    from train.bins import rebalance_weights
    from train.config import TrainConfig
    from train.model import ColorizerNet
    from train.train import Objective, compute_bins, model_args

    cfg = TrainConfig()
    torch.manual_seed(seed)
    centres, prior = compute_bins(images)
    weights = rebalance_weights(centres, prior, cfg.rebalance_lambda, cfg.soft_sigma)
    args = model_args(cfg, len(centres))
    model = ColorizerNet(args, torch.from_numpy(centres)).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    objective = Objective(cfg, torch.from_numpy(centres), torch.from_numpy(weights))
    return model, objective, len(centres)


def loss_of(model: Any, objective: Any, lightness: torch.Tensor, ab: torch.Tensor, q: int, bf16: bool) -> Any:
    n, _, s, _ = lightness.shape
    hints = (torch.zeros(n, 2, s, s), torch.zeros(n, 1, s, s), torch.zeros(n, q + 1))  # the no-hint share
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return objective(model(lightness.contiguous(memory_format=torch.channels_last), *hints, features_only=True), ab)


def gradients(model: Any, objective: Any, data: tuple[torch.Tensor, torch.Tensor], q: int, bf16: bool) -> Any:
    model.zero_grad(set_to_none=True)
    loss = loss_of(model, objective, *data, q, bf16)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return loss.item(), grads


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="fp32 against bf16 autocast for a training step.")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=6, help="timed steps per precision (alternating)")
    p.add_argument("--steps", type=int, default=30, help="optimiser steps of the short paired run")
    p.add_argument("--seed", type=int, default=1337)
    a = p.parse_args(argv)
    images = photos()
    lightness, ab = batch(images, a.size, a.batch)
    model, objective, q = build(images, a.seed)
    start = copy.deepcopy(model.state_dict())

    loss32, grad32 = gradients(model, objective, (lightness, ab), q, bf16=False)
    loss16, grad16 = gradients(model, objective, (lightness, ab), q, bf16=True)
    cosine = float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0))
    print(f"same weights and batch: loss fp32 {loss32:.4f}, bf16 {loss16:.4f}; gradient cosine {cosine:.4f}")

    curves: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for name in ("fp32", "bf16"):  # the short paired run: same start, same batches, each precision
        model.load_state_dict(start)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        curve = []
        for step in range(a.steps + 1):
            picks = torch.randperm(len(lightness), generator=torch.Generator().manual_seed(step))[: a.batch // 2]
            opt.zero_grad(set_to_none=True)
            loss = loss_of(model, objective, lightness[picks], ab[picks], q, name == "bf16")
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves[name] = curve
    for _ in range(a.rounds):  # speed: whole optimiser steps, alternating
        for name in ("fp32", "bf16"):
            opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_of(model, objective, lightness, ab, q, name == "bf16").backward()
            opt.step()
            seconds[name].append(time.perf_counter() - t)
    median = {k: float(np.median(v[1:])) for k, v in seconds.items()}  # the first step of each warms up
    speedup = median["fp32"] / median["bf16"]
    tail = {k: float(np.mean(v[-10:])) for k, v in curves.items()}
    print(
        f"step of {a.batch} at {a.size}²: fp32 {median['fp32']:.2f} s, bf16 {median['bf16']:.2f} s "
        f"({speedup:.2f}x); mean loss of the last 10 of {a.steps} steps: fp32 {tail['fp32']:.4f}, "
        f"bf16 {tail['bf16']:.4f}"
    )
    save(
        "train_precision",
        {
            "batch": a.batch,
            "size": a.size,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "step_seconds": median,
            "bf16_speedup": speedup,
            "same_batch": {"loss_fp32": loss32, "loss_bf16": loss16, "gradient_cosine": cosine},
            "paired_run": {"steps": a.steps, "loss_fp32": curves["fp32"], "loss_bf16": curves["bf16"], "tail": tail},
        },
    )


if __name__ == "__main__":
    main()
