"""int8 model CLI: static QDQ quantisation calibrated on the calibration split, then scored against fp32 on validation.

    .venv/bin/python -m bench.quantize                      # models/colorizer.onnx -> models/colorizer.int8.onnx

Calibration feeds L at the model's size made exactly as the service makes it (app.pipeline.prepare), each photo
once without hints and, for a guided model, once with 10 point hints and once with its own global hint, so the hint
paths' ranges are calibrated too. The photos are the training run's calibration split, never the validation photos
the quality check scores (train/evaluate.py's ``evaluate()``, fp32 and int8 side by side).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from app.pipeline import prepare
from app.precision import SOURCE_KEY, file_sha256
from bench.common import INT8_MODEL, MODEL, model_feeds, save, split_photos

# Nodes are chosen by the name of their weight: the torch.export-based exporter names nodes node_Conv_268 and so on,
# but keeps each module's parameter name ("model.head.weight").
# The last conv gives bin logits that are divided by the annealed-mean temperature before the softmax, so its
# rounding error is amplified; it is ~6% of the MACs. Kept fp32 unless --quantize_head.
HEAD_WEIGHT = "model.head."
# The global branch and the global hint each end in one vector per image that is added to every pixel: rounding
# error there shifts the colour of the whole photo (quantised, the global branch cost 1.1 dB on 1.0.1); so does the
# fusion's product of those vectors, added to every pixel (train.model.Fusion: since 2.5.3 a Gemm of its own). The
# calibration map is a 1x1 conv on two channels: nothing to gain. The first two encoder convs are 3.7% of the MACs
# but, quantised alone, each moved the output ab by more than all the other layers together (RMSE 2.6 and 1.8 ab
# units on 2.4.0): the first one's input puts L (0..100), raw hint ab (±110) and the 0/1 hint mask on one uint8
# scale, and the second feeds the decoder's full-detail shortcut.
KEEP_FP32 = (
    "model.global_features.,model.global_hint.,model.fusion.vectors.,model.calib_,"
    "model.encoder.layers.0.,model.encoder.layers.1."
)
HINT_POINTS = 10  # the hint count of the target
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


def calibration_feeds(photos: list[Path], model: Path) -> Iterator[dict[str, np.ndarray]]:
    """Each photo's model inputs without hints, then (a guided model) with point hints and with its global hint."""
    from train.data import read_bgra  # train/ is a bench-time dependency only
    from train.evaluate import SEED, OnnxColorizer
    from train.hints import ab_distribution, global_hint, place_hints

    colorizer = OnnxColorizer(str(model))
    for i, path in enumerate(photos):
        lightness = service_lightness(path, colorizer.size)
        automatic = model_feeds(colorizer.session, lightness)
        yield automatic
        bgra = read_bgra(str(path))
        if not colorizer.takes_hints or bgra is None or colorizer.bins is None:
            continue
        ab = colorizer.truth_ab(np.ascontiguousarray(bgra[:, :, :3]))
        hint_ab, mask = place_hints(ab, HINT_POINTS, np.random.default_rng([SEED, i]))
        yield automatic | {"hint_ab": hint_ab[None], "hint_mask": mask[None]}
        yield automatic | {"global_hint": global_hint(ab_distribution(ab, colorizer.bins))[None]}


class PhotoReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds the calibrator one set of model inputs at a time."""

    def __init__(self, photos: list[Path], model: Path) -> None:
        self._items = calibration_feeds(photos, model)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def excluded_nodes(model: onnx.ModelProto, weight_prefixes: tuple[str, ...]) -> list[str]:
    """Conv and Gemm nodes whose weight's name starts with one of the prefixes."""
    return [
        n.name
        for n in model.graph.node
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1].startswith(weight_prefixes)
    ]


def quantize(
    fp32: Path,
    out: Path,
    photos: list[Path],
    method: str = "percentile",
    per_channel: bool = True,
    reduce_range: bool = False,
    quantize_head: bool = False,
    keep_fp32: tuple[str, ...] = tuple(KEEP_FP32.split(",")),
) -> dict[str, object]:
    """Write the int8 model with the fp32 model's metadata (plus how it was quantised); return the settings."""
    prefixes = keep_fp32 if quantize_head else (*keep_fp32, HEAD_WEIGHT)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        excluded = excluded_nodes(onnx.load(str(pre)), prefixes)
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
            "kept_fp32": list(prefixes),
        }
        quantize_static(
            str(pre),
            str(out),
            PhotoReader(photos, fp32),
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
    meta[SOURCE_KEY] = file_sha256(fp32)  # the service serves this file only beside that fp32 file (app/precision.py)
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return settings


def quality(fp32: Path, int8: Path, photos: list[Path]) -> dict[str, dict[str, float]]:
    """train/evaluate.py's scores of both models on the same photos (automatic and, for a guided model, 10 point
    hints and the truth's global hint), plus the gray baseline."""
    from train.evaluate import evaluate, hint_mode  # train/ is a bench-time dependency only

    files = [str(p) for p in photos]
    report32, report8 = evaluate(str(fp32), files).modes, evaluate(str(int8), files).modes
    modes = {"automatic": "", hint_mode(HINT_POINTS): "_10_hints", "global hint (truth's)": "_global_hint"}
    scores: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
    for name, report in (("fp32", report32), ("int8", report8)):
        for mode, suffix in modes.items():
            if mode in report:
                scores[name] |= {f"psnr{suffix}": report[mode].psnr}
        scores[name]["colourfulness"] = report["automatic"].colourfulness
    scores["gray"] = {"psnr": report32["gray baseline"].psnr, "colourfulness": report32["gray baseline"].colourfulness}
    scores["truth"] = {"colourfulness": report32["ground truth"].colourfulness}
    return scores


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Quantise the Colorizer model to int8 (static QDQ) and score it.")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--out", type=Path, default=INT8_MODEL)
    # percentile: on 2.4.0 it lost nothing measurable (-0.02 dB automatic); minmax and entropy lost 0.21 dB, their
    # ranges stretched by rare outliers (models/README.md, "int8").
    p.add_argument("--method", choices=sorted(METHODS), default="percentile")
    p.add_argument("--per_tensor", action="store_true", help="one scale per weight tensor (default: per channel)")
    p.add_argument("--reduce_range", action="store_true", help="7-bit weights (avoids AVX2 u8s8 saturation)")
    p.add_argument("--quantize_head", action="store_true", help="also quantise the bin-logit conv")
    p.add_argument("--keep_fp32", default=KEEP_FP32, help="weight-name prefixes (comma-separated) kept fp32")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos of each split")
    p.add_argument("--no_eval", action="store_true")
    a = p.parse_args(argv)
    photos, calibration = split_photos("val", a.limit), split_photos("calib", a.limit)
    if not photos or not calibration:
        raise SystemExit("no photos: fetch the training photos first (python -m train.fetch_data)")
    started = time.perf_counter()
    keep_fp32 = tuple(x for x in a.keep_fp32.split(",") if x)
    settings = quantize(
        a.model,
        a.out,
        calibration,
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
    losses = {k: scores["fp32"][k] - scores["int8"][k] for k in scores["fp32"] if k.startswith("psnr")}
    for name, s in scores.items():
        print(f"{name:>5}: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
    print("int8 PSNR loss (target ≤ 0.2 dB): " + ", ".join(f"{k} {v:+.3f} dB" for k, v in losses.items()))
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
            "psnr_loss_db": losses["psnr"],
            "psnr_losses_db": losses,
        },
    )


if __name__ == "__main__":
    main()
