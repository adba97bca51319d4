"""Export CLI: checkpoint -> self-describing ONNX file, checked and compared with PyTorch.

python -m train.export runs/default/last.pt models/colorizer.onnx --version 2.0.0 --calibrate
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from train.calibrate import CALIBRATION_FORMS, calibrate
from train.model import ColorizerNet, ModelArgs

HINT_INPUTS = ("hint_ab", "hint_mask", "global_hint")

log = logging.getLogger(__name__)
DEFAULT_TRAINED_ON = (
    "real photos from Debian 12 packages (mate-backgrounds, plasma-workspace-wallpapers, gcompris-qt-data, "
    "tuxpaint-stamps-default, jigzo-data, palapeli-data, opencv-doc, blender-data) and PyPI wheels (matplotlib, "
    "mahotas), fetched by python -m train.fetch_data; sources, files and licences in models/README.md"
)


def load_model(
    checkpoint: str,
    annealed_t: float = 0.0,
    readout: str = "",
    chroma_shrink: float = 0.0,
    neutral_gate: tuple[float, float] = (0.0, 1.0),
) -> tuple[ColorizerNet, dict]:
    """Rebuild the model from a checkpoint alone (model_args, bins and weights travel inside it).

    ``annealed_t`` > 0 overrides the decoding temperature, ``readout`` a combined model's output head and
    ``chroma_shrink`` and ``neutral_gate`` (power, gain) the automatic mode's: none is learnt, so all may be chosen
    after training.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    args = ModelArgs(**ckpt["model_args"])
    if annealed_t > 0:
        args.annealed_t = annealed_t
    if readout:
        args.readout = readout
    if chroma_shrink > 0:
        args.chroma_shrink = chroma_shrink
    if neutral_gate[0]:
        args.neutral_gate, args.neutral_gain = neutral_gate
    centres = torch.from_numpy(np.asarray(ckpt["bins"]["centres"])) if args.num_bins else None
    model = ColorizerNet(args, centres)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


class _Inference(torch.nn.Module):
    """The graph we ship: L (and hints) in, ab out, with no training-only switches for the tracer to trip on."""

    def __init__(self, model: ColorizerNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        lightness: torch.Tensor,
        hint_ab: torch.Tensor | None = None,
        hint_mask: torch.Tensor | None = None,
        global_hint: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ab = self.model(lightness, hint_ab, hint_mask, global_hint)
        assert isinstance(ab, torch.Tensor)  # not features_only: decoded ab
        return ab


def input_names(args: ModelArgs) -> list[str]:
    return ["L", *HINT_INPUTS] if args.hints else ["L"]


def example_inputs(args: ModelArgs, batch: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the exported signature; hints, when the model takes them, are sparse and realistic, and
    with batch > 1 the last sample has none, so a parity check covers the automatic branch too."""
    rng = np.random.default_rng(seed)
    feeds = {"L": (rng.random((batch, 1, size, size)) * 100).astype(np.float32)}  # (N, 1, S, S)
    if args.hints:
        mask = (rng.random((batch, 1, size, size)) < 0.01).astype(np.float32)  # (N, 1, S, S)
        feeds["hint_ab"] = (rng.uniform(-60, 60, (batch, 2, size, size)) * mask).astype(np.float32)  # (N, 2, S, S)
        feeds["hint_mask"] = mask
        dist = rng.random((batch, args.num_bins)).astype(np.float32)
        dist /= dist.sum(1, keepdims=True)
        feeds["global_hint"] = np.concatenate([dist, np.ones((batch, 1), np.float32)], 1)  # (N, Q + 1)
        feeds["global_hint"][0] = 0  # one sample with no global hint
        if batch > 1:
            for name in ("hint_ab", "hint_mask", "global_hint"):
                feeds[name][-1] = 0  # one automatic sample
    return feeds


def architecture_name(args: ModelArgs) -> str:
    parts = [f"colorizer-cnn/w{args.width}/{args.global_extractor}/{args.head}"]
    parts += ["unet"] if args.skips else []
    parts += ["hints"] if args.hints else []
    parts += ["adapter"] if args.hint_adapter else []
    parts += ["fullres"] if args.full_res else []
    parts += ["global" + "-".join(map(str, args.global_views))] if args.global_views else []
    return "/".join(parts)


def hint_metadata(model: ColorizerNet) -> dict[str, str]:
    """colorizer.hints and colorizer.ab_bins, per the model contract, for a model that takes hints."""
    if not model.args.hints:
        return {}
    centres = model.bin_centres.tolist()  # type: ignore[operator]  # a registered buffer: (Q, 2)
    return {
        "colorizer.hints": "local,global",
        "colorizer.ab_bins": json.dumps([[float(a), float(b)] for a, b in centres]),
    }


def export_onnx(model: ColorizerNet, out: Path, input_size: int, metadata: dict[str, str], opset: int = 18) -> float:
    """Write the ONNX file with the torch.export-based exporter, run onnx.checker, and return the max |ab|
    difference ORT vs PyTorch (the TorchScript exporter is deprecated from torch 2.9; this one also gave a
    graph ONNX Runtime ran faster here)."""
    model = model.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    names = input_names(model.args)
    example = tuple(torch.from_numpy(x) for x in example_inputs(model.args, 2, input_size).values())
    batch = torch.export.Dim("N", min=1, max=4096)
    arg_names = ("lightness", "hint_ab", "hint_mask", "global_hint")[: len(names)]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        _Inference(model).eval(),
        example,
        str(out),
        input_names=names,
        output_names=["ab"],
        dynamic_shapes={name: {0: batch} for name in arg_names},
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    proto = onnx.load(str(out))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out))
    return parity(model, out, input_size)


def parity(model: ColorizerNet, path: Path, input_size: int, batch: int = 3) -> float:
    """Max abs difference in ab units between ONNX Runtime and PyTorch on the same random input (with hints
    present, for a hint model)."""
    feeds = example_inputs(model.args, batch, input_size, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ort_ab,) = session.run(["ab"], feeds)
    with torch.no_grad():
        torch_ab = model(*(torch.from_numpy(x) for x in feeds.values())).numpy()  # type: ignore[union-attr]
    return float(np.abs(ort_ab - torch_ab).max())


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description="Export a Colorizer checkpoint to ONNX.")
    p.add_argument("checkpoint")
    p.add_argument("output", type=Path)
    p.add_argument("--version", default="")
    p.add_argument("--input_size", type=int, default=0, help="default: the training crop size")
    p.add_argument("--trained_on", default=DEFAULT_TRAINED_ON)
    p.add_argument("--annealed_t", type=float, default=0.0, help="decoding temperature; default: the checkpoint's")
    p.add_argument(
        "--readout",
        choices=["regression", "annealed_mean"],
        default="",
        help="a combined model's output: its regression head or its bins' annealed mean; default: the checkpoint's",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit the ab calibration (2×2, through the origin) on the run's calibration split and bake it in",
    )
    p.add_argument(
        "--chroma_shrink",
        type=float,
        default=0.0,
        help="soft threshold (ab units) on the automatic ab's chroma after the calibration: weak casts become gray",
    )
    p.add_argument(
        "--neutral_gate",
        type=float,
        default=0.0,
        help="power of the neutral gate on the automatic ab (train.choose_gate chooses it and the gain); 0 = off",
    )
    p.add_argument("--neutral_gain", type=float, default=1.0, help="gain of the neutral gate")
    p.add_argument("--calibration_offset", action="store_true", help="--calibrate also fits an ab offset t")
    p.add_argument(
        "--calibration_form",
        choices=CALIBRATION_FORMS,
        default="2x2",
        help="--calibrate fits a full 2×2 map, or one chroma gain for both channels",
    )
    p.add_argument("--data_dir", default="", help="photos for --calibrate; default: the checkpoint's data_dir")
    p.add_argument("--cache_dir", default="", help="decoded-photo cache for --calibrate; default: the run's")
    p.add_argument("--max_diff", type=float, default=0.05, help="fail when ORT and PyTorch differ by more (ab)")
    a = p.parse_args(argv)
    model, ckpt = load_model(a.checkpoint, a.annealed_t, a.readout, a.chroma_shrink, (a.neutral_gate, a.neutral_gain))
    if a.calibrate:
        cal = calibrate(
            model,
            a.data_dir or ckpt["config"]["data_dir"],
            ckpt["config"],
            a.cache_dir,
            a.calibration_offset,
            a.calibration_form,
        )
        log.info(
            "calibration on %d photos: ab RMSE %.2f -> %.2f (gray %.2f); M·ab + t = %s",
            cal.photos,
            cal.rmse_before,
            cal.rmse_after,
            cal.rmse_gray,
            [round(v, 4) for v in cal.values],
        )
    size = a.input_size or int(ckpt["config"]["crop_size"])
    version = a.version or f"{dt.date.today():%Y.%m.%d}-step{ckpt['step']}"
    metadata = {
        "colorizer.input_size": str(size),
        "colorizer.version": version,
        "colorizer.architecture": architecture_name(model.args),
        "colorizer.trained_on": a.trained_on,
        "colorizer.train_steps": str(ckpt["step"]),
        "colorizer.head": model.args.head,
        "colorizer.readout": model.args.readout,
        "colorizer.annealed_t": str(model.args.annealed_t),
        "colorizer.calibration": json.dumps([round(v, 6) for v in model.args.calibration]),
        "colorizer.chroma_shrink": str(model.args.chroma_shrink),
        "colorizer.neutral_gate": json.dumps([model.args.neutral_gate, model.args.neutral_gain]),
        **hint_metadata(model),
    }
    diff = export_onnx(model, a.output, size, metadata)
    digest = hashlib.sha256(a.output.read_bytes()).hexdigest()[:16]
    log.info(
        "wrote %s (%.2f MB, sha256 %s…); ORT vs PyTorch max |Δab| = %.2e",
        a.output,
        a.output.stat().st_size / 1e6,
        digest,
        diff,
    )
    if diff > a.max_diff:
        raise SystemExit(f"ONNX Runtime and PyTorch differ by {diff:.3g} ab units (limit {a.max_diff})")


if __name__ == "__main__":
    main()
