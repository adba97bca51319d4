"""Fine-tune only the weights that multiply a hint input, so the automatic mode cannot change (or, with
``--trunk_lr``, the rest of the network too, more slowly: a warm start from a shipped model).

Automatic colour feeds zeros to every hint input, so the first convolution's weights on the three hint channels and
the global hint's first layer weight never touch it; everything else (and the BatchNorm statistics, held in eval
mode) stays as trained. The automatic output is then bit-identical, and the calibration and chroma shrink fitted to
it still hold, while guided colour can still improve: a safe step for the hint targets after a training cycle has
settled the automatic mode (docs/training_history.md: 747 steps gave +0.00 to +0.06 dB with points and +0.17 with the
global hint on the calibration split).

    python -m train.finetune_hints runs/v5/step3050.pt runs/hints/finetuned.pt --minutes 60 --lr 3e-4
    python -m train.from_onnx models/colorizer.onnx runs/shipped.pt   # from the shipped file instead
    python -m train.finetune_hints runs/shipped.pt runs/hints/adapter.pt --adapter --minutes 70

With ``--trunk_lr`` every other weight trains as well, at that smaller rate (BatchNorm still frozen, which is
what lets a model rebuilt by train.from_onnx, its BatchNorms folded, train at all): the automatic mode then moves,
so its read-out and calibration are chosen again on the calibration split, over the snapshots ``--snapshots``
keeps. The aim is a network whose encoder learns from the points (as a cycle from scratch with the adapter did,
docs/training_history.md) while starting from the shipped automatic mode rather than from nothing:

    python -m train.finetune_hints runs/shipped.pt runs/warm/adapter.pt --adapter --trunk_lr 2e-5 \
        --lr 5e-4 --minutes 80 --precision bf16 --snapshots

Tried from 2.4.0 on our 608 photos, every snapshot of that run lost automatic PSNR on the calibration split
(docs/training_history.md, "A warm start from 2.4.0"): the trunk grows more confident, not more right.

``--anchor W`` holds the automatic mode where it started while the trunk trains ("learning without forgetting", Li &
Hoiem 2016): each step also runs half the batch with no hints through the model and through a frozen copy of the
starting one, and adds W × (KL between their bin distributions + regression_weight × L1 between their regression
outputs) to the loss. The encoder can then keep learning from the points (which a main run's guided colour keeps
gaining from after its automatic colour has peaked, docs/training_history.md) without the automatic colour drifting:

    python -m train.finetune_hints runs/v14/ema_step2500.pt runs/v15/anchored.pt --trunk_lr 3e-4 --lr 1e-3 \
        --anchor 1 --minutes 85 --precision bf16 --snapshots

Tried from the eleventh cycle's peak (docs/training_history.md, "An anchored fine-tune"): the automatic colour held on
the calibration split at trunk rates 3e-4 and 1e-3, and at 1e-3 the points cleared +3 dB on validation.

``--anchor_to CHECKPOINT`` pulls the automatic mode towards another model's colour instead of holding it where it
started: the anchor term is then the training loss itself (the objective, bins and regression) with that model's
decoded automatic output (its read-out, calibration and chroma shrink included) standing in for the truth. A trunk
that has learnt from the points can so take on the shipped model's automatic colour, neutral surfaces and all
(``train.from_onnx`` rebuilds the shipped file as a checkpoint):

    python -m train.from_onnx models/colorizer.onnx runs/shipped.pt
    python -m train.finetune_hints runs/v16/anchored.pt runs/v18/distilled.pt --trunk_lr 3e-4 --lr 1e-3 \
        --anchor 1 --anchor_to runs/shipped.pt --minutes 85 --precision bf16 --snapshots

Tried so (docs/training_history.md, "Pulled towards 2.4.0's automatic colour"): the neutral cast came down on the
calibration split, but the automatic PSNR did not reach 2.4.0's, and the points lost what the trunk had learnt from
them.

``--anchor_mirrored`` holds the automatic mode to the start's mean with its mirror image instead (each pass of the
teacher also colours the mirrored L, and its heads are mirrored back and averaged: mirrored_heads). Averaged after
the network that mean scores +0.16 dB on the calibration split for 2.5.1 at twice the work (train.corrections); the
question is whether a network can learn it, at the work of one pass:

    python -m train.finetune_hints runs/v25/ft2.pt runs/v27/mirrored.pt --trunk_lr 3e-4 --lr 1e-3 \
        --anchor 1 --anchor_mirrored --minutes 25 --precision bf16

The output is a checkpoint like any other: train.choose_readout, train.export and train.evaluate take it. Until the
budget is spent it also holds the optimiser's state, so the same command run again resumes where a stopped run left
off (``--stop_step N`` stops it there on purpose), and once the budget is spent the same command does nothing:
train.recipe reruns its stages so.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from train.bins import bin_log_probabilities, rebalance_weights
from train.config import TrainConfig, crop_size_problem
from train.data import RandomCrops, load_cached, split_images
from train.export import load_model
from train.model import ColorizerNet, HeadOutput
from train.train import Objective, save_checkpoint

log = logging.getLogger(__name__)


def hint_weights(model: ColorizerNet, keep_lightness: bool = True) -> list[torch.Tensor]:
    """Freeze the model except the weights that multiply a hint input (with a hint adapter, all of its weights), and
    return those. The first convolution's L channel shares its tensor with the hint channels, so (unless
    ``keep_lightness`` is off) a gradient hook keeps that slice's gradient at zero."""
    if not model.args.hints:
        raise SystemExit("this checkpoint takes no hints; there is nothing to fine-tune")
    for p in model.parameters():
        p.requires_grad_(False)
    first = first_convolution(model)
    only_hints = torch.ones_like(first.weight)
    only_hints[:, :1] = 0  # input channel 0 is L; 1–3 are hint_ab / AB_NORM and hint_mask
    global_in = next(m for m in model.global_hint.modules() if isinstance(m, nn.Linear))  # takes the hint itself
    weights = [first.weight, global_in.weight]
    if hasattr(model, "hint_adapter"):
        weights += list(model.hint_adapter.parameters())
    for w in weights:
        w.requires_grad_(True)
    if keep_lightness:
        first.weight.register_hook(lambda grad: grad * only_hints)
    return weights


def first_convolution(model: ColorizerNet) -> nn.Conv2d:
    """The encoder's first layer, whose input channels are L and the three local-hint channels."""
    return next(m for m in model.encoder.modules() if isinstance(m, nn.Conv2d))


def parameter_groups(model: ColorizerNet, lr: float, trunk_lr: float) -> list[dict]:
    """The optimiser's groups: the hint weights at ``lr``; with ``trunk_lr`` > 0 every other trained weight too, at
    that rate (a frozen pretrained global extractor stays frozen). The first convolution then trains at the trunk's
    rate, hint channels included: its L channel shares their tensor, the most sensitive weights of the network, and
    Adam normalises each element's step, so scaling that slice's gradient could not slow it down. The adapter
    carries the points at the fast rate."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    hints = hint_weights(model, keep_lightness=not trunk_lr)
    if not trunk_lr:
        return [{"params": hints, "lr": lr, "peak_lr": lr}]
    first = first_convolution(model).weight
    fast = [w for w in hints if w is not first]
    chosen = {id(w) for w in fast}
    trunk = [p for p in trainable if id(p) not in chosen]
    for p in trunk:
        p.requires_grad_(True)
    return [{"params": fast, "lr": lr, "peak_lr": lr}, {"params": trunk, "lr": trunk_lr, "peak_lr": trunk_lr}]


def anchor_loss(student: HeadOutput, teacher: HeadOutput, regression_weight: float) -> torch.Tensor:
    """How far the student's head outputs are from the teacher's: KL(teacher ‖ student) over the bins per pixel, plus
    ``regression_weight`` × L1 between the regression outputs (the combined head's own balance of its two terms), so
    whichever read-out is chosen later stays where the teacher had it."""
    terms = []
    if student.logits is not None and teacher.logits is not None:
        s, t = (bin_log_probabilities(x.float()) for x in (student.logits, teacher.logits))  # (N, H, W, Q)
        terms.append(F.kl_div(s, t, log_target=True, reduction="none").sum(-1).mean())
    if student.ab_norm is not None and teacher.ab_norm is not None:
        terms.append(regression_weight * F.l1_loss(student.ab_norm.float(), teacher.ab_norm.float()))
    return torch.stack(terms).sum()


def mirrored_heads(teacher: ColorizerNet, lightness: torch.Tensor) -> HeadOutput:
    """The teacher's heads averaged with those of the mirror image, mirrored back: the bins' probabilities and the
    regression output each the mean of the two (test-time augmentation, which scores +0.16 dB on calibration as a
    step after the network: train.corrections), for the student to learn in one pass."""
    plain = teacher(lightness, features_only=True)
    flipped = teacher(lightness.flip(-1), features_only=True)
    logits = ab_norm = None
    if plain.logits is not None and flipped.logits is not None:
        mean = (plain.logits.float().softmax(1) + flipped.logits.float().flip(-1).softmax(1)) / 2
        logits = mean.clamp_min(1e-12).log()  # log-probabilities: anchor_loss's log_softmax leaves them as they are
    if plain.ab_norm is not None and flipped.ab_norm is not None:
        ab_norm = (plain.ab_norm + flipped.ab_norm.flip(-1)) / 2
    return HeadOutput(logits, ab_norm)


def anchor_term(
    model: ColorizerNet, objective: Objective, anchor_to: ColorizerNet | None, mirrored: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The anchor's loss on a batch of L given no hints (the model fills in zeros): the objective between the model's
    heads and ``anchor_to``'s colour as the user sees it (calibration and shrink applied), that colour standing in for
    the truth; or, without ``anchor_to``, anchor_loss to a frozen copy of the model as it is now (``mirrored``: to
    that copy's mean with its mirror image, mirrored_heads)."""
    teacher = (anchor_to or copy.deepcopy(model)).eval().requires_grad_(False)

    def to_start(lightness: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            start_heads = mirrored_heads(teacher, lightness) if mirrored else teacher(lightness, features_only=True)
        return anchor_loss(model(lightness, features_only=True), start_heads, objective.cfg.regression_weight)

    def to_colour(lightness: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            colour = teacher(lightness).float()
        return objective(model(lightness, features_only=True), colour, lightness)

    return to_start if anchor_to is None else to_colour


@dataclasses.dataclass
class Progress:
    """Where a fine-tune stands: what a save writes, and what a resumed run starts from."""

    step: int
    seconds: float  # of training, over every resume
    optimizer: dict[str, Any]
    model: dict[str, torch.Tensor]


def budget_spent(step: int, steps: int, elapsed: float, seconds: float) -> float:
    """The share of the budget spent: of the steps when there is a step budget, else of the time."""
    return step / steps if steps else elapsed / seconds


def finetune(
    model: ColorizerNet,
    objective: Objective,
    batches: Iterable[list[torch.Tensor]],
    lr: float,
    seconds: float,
    save: Callable[[Progress], None] | None = None,
    save_every: float = 600.0,
    trunk_lr: float = 0.0,
    precision: str = "fp32",
    anchor: float = 0.0,
    anchor_to: ColorizerNet | None = None,
    anchor_mirrored: bool = False,
    steps: int = 0,
    stop_step: int = 0,
    resume: Progress | None = None,
) -> int:
    """Adam (no weight decay, which would move the frozen slice) on the hint weights for ``seconds`` (and on the rest
    at ``trunk_lr``, when > 0), each rate decaying to 0 on a cosine over that time; the number of steps taken.
    ``steps`` > 0 makes the budget that many steps instead (``seconds`` still stops it early): the cosine then follows
    the step count, so a recipe replays step for step on a faster or slower CPU.
    ``save(progress)`` runs every ``save_every`` seconds and at the end, so a run that is stopped early still leaves
    the model it had reached, and ``resume`` (a saved Progress) continues it: its weights, optimiser state, step and
    time, the cosine where it was. ``stop_step`` > 0 stops after that step of the budget. ``precision`` "bf16" runs
    the forward pass and the loss under bfloat16 autocast (train.config).
    ``anchor`` > 0 (with ``trunk_lr``) adds that weight × anchor_loss between the automatic mode and the starting
    model's, on half of each batch; with ``anchor_to``, that weight × the objective between the automatic mode and
    ``anchor_to``'s decoded automatic colour."""
    model.eval()  # BatchNorm uses its running statistics and leaves them alone
    for net in (model, anchor_to):  # as train.train: oneDNN's convolutions are fastest on channels-last tensors
        if net is not None:
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if trunk_lr:  # the automatic mode will move, so corrections fitted to the old one no longer hold
        model.drop_corrections()
    # made after the reset above, so a copy of the start holds the uncalibrated output the read-out is chosen on
    held_to = anchor_term(model, objective, anchor_to, anchor_mirrored) if anchor and trunk_lr else None
    opt = torch.optim.Adam(parameter_groups(model, lr, trunk_lr))
    step, spent = 0, 0.0
    if resume is not None:  # after the anchor's copy above: a resumed run still holds to where the run started
        model.load_state_dict(resume.model)
        opt.load_state_dict(resume.optimizer)
        step, spent = resume.step, resume.seconds
    first_step, start = step, time.time()
    saved_at, saved_step = start, step

    def progress() -> Progress:
        return Progress(step, spent + time.time() - start, opt.state_dict(), model.state_dict())

    for lightness, ab, *hints in batches:
        elapsed = spent + time.time() - start
        if elapsed >= seconds or (steps and step >= steps) or (stop_step and step >= stop_step):
            break
        share = budget_spent(step, steps, elapsed, seconds)
        for group in opt.param_groups:  # cosine decay over the budget, so the run ends on a settled step
            group["lr"] = group["peak_lr"] * 0.5 * (1 + math.cos(math.pi * share))
        lightness = lightness.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = objective(model(lightness, *hints, features_only=True), ab, lightness)
            held = torch.zeros(())
            if held_to is not None:
                held = held_to(lightness[: max(1, len(lightness) // 2)])
                loss = loss + anchor * held
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            took = (time.time() - start) / (step - first_step)
            log.info("step %d, loss %.4f (anchor term %.4f), %.2f s/step", step, loss.item(), held.item(), took)
        if save is not None and time.time() - saved_at >= save_every:
            save(progress())
            saved_at, saved_step = time.time(), step
    if save is not None and step != saved_step:
        save(progress())
    return step


RESUME_KEY = "finetune_resume"


def finished(progress: Progress, steps: int, minutes: float) -> bool:
    """Whether the budget is spent: the steps when there is a step budget, else the time."""
    return progress.step >= steps if steps else progress.seconds >= minutes * 60


def saved_progress(out: str, settings: dict[str, Any]) -> Progress | None:
    """The fine-tune ``out`` holds, when it is this same run (``settings`` equal): finished (its optimiser state then
    dropped) or not; None when there is none, or another run's, which this one then starts afresh and replaces."""
    if not os.path.exists(out):
        return None
    saved = torch.load(out, map_location="cpu", weights_only=False)
    record = saved.get("extra", {}).get("finetune_hints", {})
    if any(record.get(key) != value for key, value in settings.items()):
        log.info("%s holds another fine-tune; starting afresh", out)
        return None
    state = saved.get(RESUME_KEY, {})
    return Progress(record["steps"], state.get("seconds", math.inf), state.get("optimizer", {}), saved["model"])


def with_adapter(model: ColorizerNet) -> ColorizerNet:
    """The same model with a hint adapter added (its projections at zero, so it starts as the model it was)."""
    if model.args.hint_adapter:
        return model
    args = dataclasses.replace(model.args, hint_adapter=True)
    grown = ColorizerNet(args, model.bin_centres)  # type: ignore[arg-type]  # a registered buffer
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected
    assert all(k.startswith("hint_adapter.") for k in missing)
    return grown


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Fine-tune a hint model's hint weights; the automatic mode is kept.")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--minutes", type=float, help="the time budget (default 60; with --steps only a cap, default none)")
    p.add_argument("--steps", type=int, default=0, help="a budget of optimiser steps instead, the cosine over them")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--cache_dir", default="", help="decoded-image cache; default: <out's folder>/cache")
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--adapter", action="store_true", help="add a hint adapter (train.model.HintAdapter), trained too")
    p.add_argument("--trunk_lr", type=float, default=0.0, help="also train every other weight at this peak rate")
    p.add_argument(
        "--anchor", type=float, default=0.0, help="with --trunk_lr: hold the automatic mode to the start's, this much"
    )
    p.add_argument(
        "--anchor_to", default="", help="with --anchor: pull the automatic mode to this checkpoint's colour instead"
    )
    p.add_argument(
        "--anchor_mirrored", action="store_true", help="with --anchor: hold to the start's mean with its mirror image"
    )
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument(
        "--plain_backdrop_share", type=float, default=-1.0, help="cut-outs on plain gray; default: the checkpoint's"
    )
    p.add_argument(
        "--min_crop_fraction",
        type=float,
        default=0.0,
        help="smallest crop side as a share of the photo's shorter side; default: the checkpoint's",
    )
    p.add_argument(
        "--crop_size",
        type=int,
        default=0,
        help="training crop side, and the saved checkpoint's (export's default input size); default: the checkpoint's",
    )
    p.add_argument(
        "--stop_step", type=int, default=0, help="stop after this step of --steps; the same command again resumes"
    )
    p.add_argument("--save_minutes", type=float, default=10.0, help="minutes between saves")
    p.add_argument("--snapshots", action="store_true", help="keep each save as <out>.step<N>.pt as well")
    a = p.parse_args(argv)
    if a.anchor and not a.trunk_lr:
        p.error("--anchor needs --trunk_lr: without it the automatic mode cannot move")
    if a.anchor_mirrored and (a.anchor_to or not a.anchor):
        p.error("--anchor_mirrored needs --anchor and holds to the start, not to --anchor_to")
    if a.anchor_to and not a.anchor:
        p.error("--anchor_to needs --anchor, the weight of its term")
    if a.stop_step and not a.steps:
        p.error("--stop_step needs --steps, the budget it stops inside")
    minutes = a.minutes if a.minutes is not None else math.inf if a.steps else 60.0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model, ckpt = load_model(a.checkpoint)
    if a.adapter:
        model = with_adapter(model)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    if a.plain_backdrop_share >= 0:  # a checkpoint rebuilt by train.from_onnx does not know its run's share
        cfg.plain_backdrop_share = a.plain_backdrop_share
    if a.min_crop_fraction > 0:
        cfg.min_crop_fraction = a.min_crop_fraction
    if a.crop_size:  # e.g. a run trained on smaller crops, fine-tuned last at the size it is served at
        if problem := crop_size_problem(a.crop_size):
            p.error(problem)
        cfg.crop_size = ckpt["config"]["crop_size"] = a.crop_size
    settings = {  # what the run is; a saved run resumes only when the command asks for the same
        "from": a.checkpoint,
        "step_budget": a.steps,
        "minutes": minutes,
        "lr": a.lr,
        "trunk_lr": a.trunk_lr,
        "seed": a.seed,
        "adapter": a.adapter,
        "anchor": a.anchor,
        "anchor_to": a.anchor_to,
        "anchor_mirrored": a.anchor_mirrored,
        "precision": a.precision,
        "min_crop_fraction": cfg.min_crop_fraction,  # the crops it trains on (RandomCrops below)
        "plain_backdrop_share": cfg.plain_backdrop_share,
        "crop_size": cfg.crop_size,
    }
    resume = saved_progress(a.out, settings)
    if resume is not None and finished(resume, a.steps, minutes):
        log.info("%s already holds this fine-tune's %d steps; nothing to do", a.out, resume.step)
        return
    centres, prior = ckpt["bins"]["centres"], ckpt["bins"]["prior"]
    weights = rebalance_weights(centres, prior, cfg.rebalance_lambda, cfg.soft_sigma)
    objective = Objective(cfg, torch.from_numpy(centres), torch.from_numpy(weights))
    train_files, _, _ = split_images(cfg.data_dir, cfg.val_fraction, cfg.calib_fraction)
    cache = a.cache_dir or os.path.join(os.path.dirname(a.out) or ".", "cache")
    images = load_cached(cfg.data_dir, train_files, cache, cfg.cache_max_side)
    start_step = 0
    if resume is not None:
        start_step = resume.step
        log.info("resuming %s at step %d", a.out, start_step)
    crops = RandomCrops(
        images,
        cfg.crop_size,
        cfg.min_crop_fraction,
        a.seed + start_step,  # a resumed run draws on from a new seed, as train.train's does
        centres,
        cfg.plain_backdrop_share,
        full_res=model.args.full_res,
    )
    batches = DataLoader(crops, batch_size=cfg.batch_size, num_workers=1)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)

    def save(progress: Progress) -> None:
        ckpt["model"], ckpt["model_args"] = progress.model, model.args.as_dict()
        extra = {"steps": progress.step, **settings}
        ckpt["extra"] = {**ckpt.get("extra", {}), "finetune_hints": extra}
        ckpt.pop(RESUME_KEY, None)
        if not finished(progress, a.steps, minutes):  # the optimiser's state only while there is more to do
            ckpt[RESUME_KEY] = {"optimizer": progress.optimizer, "seconds": progress.seconds}
        save_checkpoint(a.out, ckpt)
        if a.snapshots:
            shutil.copyfile(a.out, f"{os.path.splitext(a.out)[0]}.step{progress.step}.pt")
        log.info("%d steps; saved %s", progress.step, a.out)

    anchor_to = load_model(a.anchor_to)[0] if a.anchor_to else None
    finetune(
        model,
        objective,
        batches,
        a.lr,
        minutes * 60,
        save,
        a.save_minutes * 60,
        trunk_lr=a.trunk_lr,
        precision=a.precision,
        anchor=a.anchor,
        anchor_to=anchor_to,
        anchor_mirrored=a.anchor_mirrored,
        steps=a.steps,
        stop_step=a.stop_step,
        resume=resume,
    )


if __name__ == "__main__":
    main()
