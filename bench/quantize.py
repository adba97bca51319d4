"""int8 model CLI: static QDQ quantisation calibrated on the validation photos, then scored against fp32.

    .venv/bin/python -m bench.quantize                      # models/colorizer.onnx -> models/colorizer.int8.onnx

Calibration feeds L at the model's size made exactly as the service makes it (app.pipeline.prepare). The
quality check is train/evaluate.py's ``evaluate()`` on the validation split, fp32 and int8 side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from app.pipeline import prepare
from bench.common import INT8_MODEL, MODEL, model_feeds, save, validation_photos

# The last conv gives bin logits that are divided by the annealed-mean temperature (0.7) before the softmax,
# so its rounding error is amplified 1.4×; it is ~6% of the MACs. Kept fp32 unless --quantize_head.
HEAD_NODE = "/head/Conv"
# The global branch ends in one vector per image that is added to every pixel: its rounding error shifts the colour
# of the whole photo. Quantised, it cost 1.1 dB PSNR on the validation split; kept fp32, 0.1 dB (docs/PERFORMANCE.md).
KEEP_FP32 = "/global_features"
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


def model_size(path: Path) -> int:
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return int(meta["colorizer.input_size"])


def service_lightness(path: Path, size: int) -> np.ndarray:
    """(1, 1, S, S) float32 L of a photo, as the service computes it from the uploaded bytes."""
    return prepare(path.read_bytes(), size, max_pixels=10**9).small_l[None]


class PhotoReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds the calibrator one photo's L at a time."""

    def __init__(self, photos: list[Path], size: int, model: Path) -> None:
        self._items: Iterator[np.ndarray] = (service_lightness(p, size) for p in photos)
        self._session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # for its input specs

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        return None if item is None else model_feeds(self._session, item)  # a guided model: zero hints


def quantize(
    fp32: Path,
    out: Path,
    photos: list[Path],
    method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool = False,
    quantize_head: bool = False,
    keep_fp32: tuple[str, ...] = (),
) -> dict[str, object]:
    """Write the int8 model with the fp32 model's metadata (plus how it was quantised); return the settings."""
    size = model_size(fp32)
    graph = onnx.load(str(fp32), load_external_data=False).graph
    excluded = [n.name for n in graph.node if n.op_type in ("Conv", "Gemm") and n.name.startswith(keep_fp32)]
    if not quantize_head:
        excluded.append(HEAD_NODE)
    settings: dict[str, object] = {
        "format": "QDQ",
        "activations": "uint8",
        "weights": "int8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "calibration": method,
        "calibration_photos": len(photos),
        "ops": ["Conv", "Gemm"],
        "excluded": excluded,
    }
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            PhotoReader(photos, size, fp32),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "Gemm"],
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=METHODS[method],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    meta["colorizer.version"] = meta.get("colorizer.version", "unknown") + "-int8"
    meta["colorizer.quantization"] = ", ".join(f"{k}={v}" for k, v in settings.items())
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return settings


def quality(fp32: Path, int8: Path, photos: list[Path]) -> dict[str, dict[str, float]]:
    """train/evaluate.py's scores of both models on the same photos, plus the gray baseline."""
    from train.evaluate import evaluate  # train/ is a bench-time dependency only

    files = [str(p) for p in photos]
    report32, report8 = evaluate(str(fp32), files).modes, evaluate(str(int8), files).modes
    model32, gray, truth, model8 = (
        report32["automatic"],
        report32["gray baseline"],
        report32["ground truth"],
        report8["automatic"],
    )
    return {
        "fp32": {"psnr": model32.psnr, "colourfulness": model32.colourfulness},
        "int8": {"psnr": model8.psnr, "colourfulness": model8.colourfulness},
        "gray": {"psnr": gray.psnr, "colourfulness": gray.colourfulness},
        "truth": {"colourfulness": truth.colourfulness},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Quantise the Colorizer model to int8 (static QDQ) and score it.")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--out", type=Path, default=INT8_MODEL)
    p.add_argument("--method", choices=sorted(METHODS), default="minmax")
    p.add_argument("--per_tensor", action="store_true", help="one scale per weight tensor (default: per channel)")
    p.add_argument("--reduce_range", action="store_true", help="7-bit weights (avoids AVX2 u8s8 saturation)")
    p.add_argument("--quantize_head", action="store_true", help="also quantise the bin-logit conv")
    p.add_argument("--keep_fp32", default=KEEP_FP32, help="comma-separated node-name prefixes left in fp32")
    p.add_argument("--limit", type=int, default=0, help="at most this many validation photos")
    p.add_argument("--no_eval", action="store_true")
    a = p.parse_args(argv)
    photos = validation_photos(a.limit)
    if not photos:
        raise SystemExit("no validation photos: fetch the training photos first (python -m train.fetch_data)")
    started = time.perf_counter()
    keep_fp32 = tuple(x for x in a.keep_fp32.split(",") if x)
    settings = quantize(
        a.model,
        a.out,
        photos,
        a.method,
        not a.per_tensor,
        a.reduce_range,
        a.quantize_head,
        keep_fp32,
    )
    seconds = time.perf_counter() - started
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB) in {seconds:.1f} s; {settings}")
    if a.no_eval:
        return
    scores = quality(a.model, a.out, photos)
    loss = scores["fp32"]["psnr"] - scores["int8"]["psnr"]
    for name, s in scores.items():
        print(f"{name:>5}: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
    print(f"int8 PSNR loss: {loss:+.3f} dB (target ≤ 0.2 dB)")
    fp32_meta = {p.key: p.value for p in onnx.load(str(a.model), load_external_data=False).metadata_props}
    save(
        "quantize",
        {
            "model": str(a.model.name),
            "model_version": fp32_meta.get("colorizer.version", "unknown"),
            "int8_model": str(a.out.name),
            "int8_bytes": a.out.stat().st_size,
            "fp32_bytes": a.model.stat().st_size,
            "settings": settings,
            "photos": len(photos),
            "scores": scores,
            "psnr_loss_db": loss,
        },
    )


if __name__ == "__main__":
    main()
