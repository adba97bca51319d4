"""Export CLI: checkpoint -> self-describing ONNX file, checked and compared with PyTorch.

python -m train.export runs/default/last.pt models/colorizer.onnx --version 1.0.1
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from train.model import ColorizerNet, ModelArgs

log = logging.getLogger(__name__)
DEFAULT_TRAINED_ON = "Debian/PyPI photo set of shared/data/TRAINING_DATA.md (see models/README.md)"


def load_model(checkpoint: str, annealed_t: float = 0.0) -> tuple[ColorizerNet, dict]:
    """Rebuild the model from a checkpoint alone (model_args, bins and weights travel inside it).

    ``annealed_t`` > 0 overrides the decoding temperature: it is not learnt, so it may be tuned after training.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    args = ModelArgs(**ckpt["model_args"])
    if annealed_t > 0:
        args.annealed_t = annealed_t
    centres = torch.from_numpy(np.asarray(ckpt["bins"]["centres"])) if args.head == "classification" else None
    model = ColorizerNet(args, centres)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


class _Inference(torch.nn.Module):
    """The graph we ship: L in, ab out, with no training-only switches for the tracer to trip on."""

    def __init__(self, model: ColorizerNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model.features(lightness))


def architecture_name(args: ModelArgs) -> str:
    return f"colorizer-cnn/w{args.width}/{args.global_extractor}/{args.head}"


def export_onnx(model: ColorizerNet, out: Path, input_size: int, metadata: dict[str, str], opset: int = 17) -> float:
    """Write the ONNX file, run onnx.checker, and return the max |ab| difference ORT vs PyTorch."""
    model = model.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    example = torch.rand(2, 1, input_size, input_size) * 100  # (N, 1, S, S)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        _Inference(model).eval(),
        (example,),
        str(out),
        input_names=["L"],
        output_names=["ab"],
        dynamic_axes={"L": {0: "N"}, "ab": {0: "N"}},
        opset_version=opset,
        dynamo=False,
    )
    proto = onnx.load(str(out))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out))
    return parity(model, out, input_size)


def parity(model: ColorizerNet, path: Path, input_size: int, batch: int = 3) -> float:
    """Max abs difference in ab units between ONNX Runtime and PyTorch on the same random input."""
    x = (torch.rand(batch, 1, input_size, input_size) * 100).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ort_ab,) = session.run(["ab"], {"L": x})
    with torch.no_grad():
        torch_ab = model(torch.from_numpy(x)).numpy()
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
    p.add_argument("--max_diff", type=float, default=0.05, help="fail when ORT and PyTorch differ by more (ab)")
    a = p.parse_args(argv)
    model, ckpt = load_model(a.checkpoint, a.annealed_t)
    size = a.input_size or int(ckpt["config"]["crop_size"])
    version = a.version or f"{dt.date.today():%Y.%m.%d}-step{ckpt['step']}"
    metadata = {
        "colorizer.input_size": str(size),
        "colorizer.version": version,
        "colorizer.architecture": architecture_name(model.args),
        "colorizer.trained_on": a.trained_on,
        "colorizer.train_steps": str(ckpt["step"]),
        "colorizer.head": model.args.head,
        "colorizer.annealed_t": str(model.args.annealed_t),
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
