"""Rebuild a training checkpoint from an exported ONNX file, so a shipped model can be fine-tuned without the
training run's checkpoints (they stay on the machine that trained it; the ONNX file is what ships).

    python -m train.from_onnx models/colorizer.onnx runs/shipped.pt

The exporter folds each BatchNorm into the convolution before it (the file holds the product as the convolution's
``weight`` and ``weight_bias``) and leaves out the head its read-out does not use. The rebuilt model holds the folded
weights, and each BatchNorm becomes the identity plus the folded bias: exact in eval mode, which is how
train.finetune_hints runs it (BatchNorm statistics frozen), but not a model to train from scratch in train mode.
A combined model read out from its bins comes back as a classification model, as its regression head is not in
the file; one read out from its regression head comes back whole when its neutral gate kept the bin head in the file
(2.5.0), and cannot be rebuilt otherwise. The rebuilt
model is checked against the file on random inputs (with hints) before the checkpoint is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from train.config import TrainConfig
from train.export import parity
from train.model import ColorizerNet, ModelArgs, split_fusion_weights

log = logging.getLogger(__name__)


def global_views(flags: list[str]) -> list[int]:
    """ModelArgs.global_views from the architecture name's flags: ``global96`` or ``global64-96`` (train.export)."""
    named = [f.removeprefix("global") for f in flags if f.startswith("global")]
    return [int(v) for v in named[0].split("-")] if named else []


def model_args(meta: dict[str, str], fused_channels: int) -> ModelArgs:
    """ModelArgs from the file's metadata (``colorizer.architecture`` is train.export.architecture_name's) and the
    fusion layer's width, which the name does not carry."""
    name, width, extractor, head, *flags = meta["colorizer.architecture"].split("/")
    if name != "colorizer-cnn" or not width.startswith("w"):
        raise SystemExit(f"not a Colorizer model: architecture {meta['colorizer.architecture']!r}")
    readout = meta.get("colorizer.readout", "regression")
    gate = json.loads(meta.get("colorizer.neutral_gate", "[0, 1]"))
    # A combined file holds the head its read-out uses, and the bin head too when the neutral gate reads it.
    both_heads = head == "combined" and readout == "regression" and bool(gate[0])
    if head == "combined" and readout != "annealed_mean" and not both_heads:
        raise SystemExit("a combined model read out from its regression head cannot be rebuilt: its bins are not in it")
    bins = json.loads(meta.get("colorizer.ab_bins", "[]"))
    return ModelArgs(
        head="combined" if both_heads else "classification" if head == "combined" else head,
        width=int(width[1:]),
        global_extractor=extractor,
        num_bins=len(bins),
        fused_channels=fused_channels,
        annealed_t=float(meta.get("colorizer.annealed_t", 0.38)),
        skips="unet" in flags,
        hints="hints" in flags,
        hint_adapter="adapter" in flags,
        full_res="fullres" in flags,
        global_views=global_views(flags),
        calibration=json.loads(meta.get("colorizer.calibration", "[1, 0, 0, 1, 0, 0]")),
        readout="regression" if both_heads or head == "regression" else "annealed_mean",
        chroma_shrink=float(meta.get("colorizer.chroma_shrink", 0.0)),
        neutral_gate=gate[0],
        neutral_gain=gate[1],
    )


def folded_state(model: ColorizerNet, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model's state dict filled from the file's initializers (named ``model.<key>``), BatchNorms unfolded as
    identity plus the folded bias. Raises when a key has no value in the file."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    filled: set[str] = set()

    def put(key: str, value: np.ndarray | torch.Tensor) -> None:
        dtype = state[key].dtype
        tensor = value.to(dtype) if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=dtype)
        if tensor.shape != state[key].shape:
            raise SystemExit(f"{key}: the file has {tuple(tensor.shape)}, the model {tuple(state[key].shape)}")
        state[key] = tensor
        filled.add(key)

    names = dict(model.named_modules())
    for name, module in names.items():
        if not isinstance(module, nn.Sequential):
            continue
        for i, (conv, norm) in enumerate(zip(module, list(module)[1:], strict=False)):
            c, n = f"{name}.{i}", f"{name}.{i + 1}"
            # The exporter folds a BatchNorm into its conv unless the pair runs more than once (global views):
            # an unfolded one's values are in the file under its own names, taken below.
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and f"model.{c}.weight_bias" in weights:
                put(f"{c}.weight", weights[f"model.{c}.weight"])
                put(f"{n}.bias", weights[f"model.{c}.weight_bias"])
                put(f"{n}.weight", torch.ones(norm.num_features))
                put(f"{n}.running_mean", torch.zeros(norm.num_features))
                put(f"{n}.running_var", torch.full((norm.num_features,), 1.0 - norm.eps))  # var + eps = 1
    for key in state:
        if key not in filled and f"model.{key}" in weights:
            put(key, weights[f"model.{key}"])
        elif key.endswith(".num_batches_tracked"):  # a training counter, never in a file
            put(key, torch.zeros(()))
    if "bin_centres" not in filled:  # a regression read-out's graph does not use them; the metadata's ab_bins hold them
        put("bin_centres", state["bin_centres"])  # as the model was built, from the metadata
    calibration = torch.tensor(model.args.calibration)
    put("calib_weight", calibration[:4].view(2, 2, 1, 1))  # the bias may be folded into a constant: take both
    put("calib_bias", calibration[4:])
    missing = sorted(set(state) - filled)
    if missing:
        raise SystemExit(f"the file has no values for {missing}")
    return state


def rebuild(path: Path) -> tuple[ColorizerNet, dict]:
    """The model in ``path`` as a ColorizerNet, and a checkpoint that train.finetune_hints and train.export take."""
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    split_fusion_weights(weights, "model.fusion.")  # a file exported before the fusion was split (2.5.2 and earlier)
    args = model_args(meta, int(weights["model.fusion.local.weight"].shape[0]))
    centres = np.array(json.loads(meta.get("colorizer.ab_bins", "[]")), np.float32).reshape(-1, 2)
    model = ColorizerNet(args, torch.from_numpy(centres) if args.num_bins else None)
    model.load_state_dict(folded_state(model, weights))
    size = int(meta["colorizer.input_size"])
    config = TrainConfig(
        head=args.head,
        width=args.width,
        skips=args.skips,
        hints=args.hints,
        hint_adapter=args.hint_adapter,
        full_res=args.full_res,
        crop_size=size,
        annealed_t=args.annealed_t,
        global_extractor=args.global_extractor,
    )
    ckpt = {
        "model": model.state_dict(),
        "step": int(meta.get("colorizer.train_steps", 0)),
        "model_args": args.as_dict(),
        "config": dataclasses.asdict(config),
        # The prior only weights a rebalanced loss; the shipped models train without rebalancing, so uniform.
        "bins": {"centres": centres, "prior": np.full(len(centres), 1.0 / max(1, len(centres)), np.float32)},
        "extra": {"from_onnx": {"file": str(path), "version": meta.get("colorizer.version", "")}},
    }
    return model.eval(), ckpt


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description="Rebuild a fine-tunable checkpoint from an exported Colorizer ONNX file.")
    p.add_argument("onnx", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--max_diff", type=float, default=1e-3, help="fail when the rebuilt model and the file differ (ab)")
    p.add_argument(
        "--global_views",
        default="",
        help="comma-separated sizes the written checkpoint's global branch sees the photo at (ModelArgs.global_views)",
    )
    a = p.parse_args(argv)
    model, ckpt = rebuild(a.onnx)
    diff = parity(model, a.onnx, int(ckpt["config"]["crop_size"]))
    if diff > a.max_diff:
        raise SystemExit(f"the rebuilt model differs from {a.onnx} by {diff:.3g} ab units (limit {a.max_diff})")
    if a.global_views:
        ckpt["model_args"]["global_views"] = [int(v) for v in a.global_views.split(",")]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, a.out)
    log.info("rebuilt %s (step %d) -> %s; max |Δab| against the file %.2e", a.onnx, ckpt["step"], a.out, diff)


if __name__ == "__main__":
    main()
