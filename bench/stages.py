"""Where the time of one image goes, stage by stage, for 0.25, 1, 12 and 24 MP photo-like JPEGs; the float
pipeline of model 1.0.0's service timed beside the current one; and PNG encoders compared by time and size on the
service's real output.

    .venv/bin/python -m bench.stages              # full run (~3 min)
    .venv/bin/python -m bench.stages --quick      # seconds: a smoke test

The stages are app.pipeline's prepare and finish, taken apart into the functions they call (decode_lightness,
model_input, the runtime, join, encode_image), with the service's settings (app.config.Settings: PNG level,
ONNX Runtime threads, pixel limit).
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from isal import isal_zlib

from app.color import join, lightness, model_input
from app.config import Settings
from app.cores import available_cores
from app.decode import decode_image, decode_lightness
from app.edges import guided_ab
from app.encode import encode_image, png_sub_filtered
from app.image_header import checked_header
from app.pipeline import finish, prepare
from app.runtime import ModelRuntime
from bench.common import MODEL, SIZES_MP, photo_jpeg, repeat, save, stats

STAGES = ("decode", "resize", "model", "edges", "join", "encode")

# ---------------------------------------------------------------- stages


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def pipeline_stages(data: bytes, runtime: ModelRuntime, settings: Settings, min_time: float) -> dict[str, Any]:
    """Each stage of the service's pipeline, repeated until ``min_time`` has passed (at least twice)."""
    size, max_pixels, level = runtime.info.input_size, settings.max_pixels, settings.png_compression
    times: dict[str, list[float]] = {k: [] for k in STAGES}
    started = time.perf_counter()
    while len(times["decode"]) < 2 or time.perf_counter() - started < min_time:
        decoded, t = timed(lambda: decode_lightness(data, checked_header(data, max_pixels)))
        times["decode"].append(t)
        small, t = timed(partial(model_input, decoded.lightness, size))
        times["resize"].append(t)
        batch_ab, t = timed(partial(runtime.run, small[None]))
        ab = batch_ab[0]
        times["model"].append(t)
        along, t = timed(partial(guided_ab, ab, small[0]))
        times["edges"].append(t)
        out, t = timed(partial(join, decoded.lightness, along, decoded.alpha))
        times["join"].append(t)
        png, t = timed(partial(encode_image, out, "png", level))
        times["encode"].append(t)
    # The stages taken apart must be the pipeline the service runs: the same bytes out for the same model output.
    if finish(prepare(data, size, max_pixels), ab, "png", level) != png:
        raise RuntimeError("bench/stages.py's stages no longer match app.pipeline's prepare and finish")
    result: dict[str, Any] = {stage: stats(ts) for stage, ts in times.items()}
    result["total_p50_ms"] = sum(result[s]["p50_ms"] for s in times)
    result["png_bytes"] = len(png)
    result["jpeg_bytes"] = len(data)
    return result


# ---------------------------------------------------------------- before and after the uint8 pipeline


def join_float(full_l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """join() as the 1.0.0 service did it, through float Lab at full size; app/ no longer has it."""
    height, width = full_l.shape
    ab_full = cv2.resize(ab.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W, 2)
    bgr = cv2.cvtColor(np.dstack([full_l, ab_full]), cv2.COLOR_Lab2BGR)  # (H, W, 3) float32
    return cv2.convertScaleAbs(bgr, alpha=255.0)  # saturating float -> uint8


def float_vs_current(data: bytes, runtime: ModelRuntime, settings: Settings, min_time: float) -> dict[str, Any]:
    """The float pipeline that shipped with model 1.0.0 (decode_image → lightness → float join) against the current
    one (decode_lightness → 8-bit Lab join) on the same photo, with the largest differences of their outputs."""
    max_pixels = settings.max_pixels
    full_l = decode_lightness(data, checked_header(data, max_pixels)).lightness
    float_l = lightness(decode_image(data, max_pixels).color)
    ab = runtime.run(model_input(full_l, runtime.info.input_size)[None])[0]
    diff = np.abs(join(full_l, ab).astype(np.int16) - join_float(float_l, ab).astype(np.int16))
    return {
        "decode_l": {
            "float": stats(repeat(lambda: lightness(decode_image(data, max_pixels).color), min_time, 2)),
            "current": stats(repeat(lambda: decode_lightness(data, checked_header(data, max_pixels)), min_time, 2)),
            "max_abs_diff_L": float(np.abs(full_l - float_l).max()),
        },
        "join": {
            "float": stats(repeat(lambda: join_float(float_l, ab), min_time, 2)),
            "current": stats(repeat(lambda: join(full_l, ab), min_time, 2)),
            "max_abs_diff_levels": int(diff.max()),
            "mean_abs_diff_levels": float(diff.mean()),
        },
    }


# ---------------------------------------------------------------- PNG encoders


def app_encoder(level: int) -> str:
    """The name the app's own encoder has in the tables."""
    return f"app: encode_image, level {level}"


def sub_png(compress: Callable[..., Any], level: int) -> Callable[[np.ndarray], bytes]:
    """The service's Sub-filtered PNG (app.encode) with ``compress`` at ``level`` as its deflate."""
    return lambda img: png_sub_filtered(img, lambda data: bytes(compress(data, level)))


def png_encoders(full: bool, app_level: int) -> dict[str, Callable[[np.ndarray], bytes]]:
    """Every PNG encoder that installs here, by name, first the app's own (encode_image at ``app_level``); ``full``
    adds the slow levels and every strategy/filter."""

    def cv(*params: int) -> Callable[[np.ndarray], bytes]:
        return lambda img: cv2.imencode(".png", img, list(params))[1].tobytes()

    enc: dict[str, Callable[[np.ndarray], bytes]] = {
        app_encoder(app_level): lambda img: encode_image(img, "png", app_level),
        "cv2 default params": cv(),
    }
    for level in range(10) if full else (1, 3):
        enc[f"cv2 level {level}"] = cv(cv2.IMWRITE_PNG_COMPRESSION, level)
    strategies = ("DEFAULT", "FILTERED", "HUFFMAN_ONLY", "RLE", "FIXED") if full else ("RLE",)
    for name in strategies:
        strategy = getattr(cv2, f"IMWRITE_PNG_STRATEGY_{name}")
        enc[f"cv2 level 1 strategy {name}"] = cv(cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, strategy)
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV ≥ 4.11
        for name in ("NONE", "SUB", "UP", "PAETH", "FAST_FILTERS") if full else ("SUB",):
            png_filter = getattr(
                cv2, f"IMWRITE_PNG_{name}" if name.endswith("FILTERS") else f"IMWRITE_PNG_FILTER_{name}"
            )
            enc[f"cv2 level 1 filter {name}"] = cv(cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, png_filter)
    enc["sub + zlib level 1"] = sub_png(zlib.compress, 1)
    for level in (0, 1, 2, 3):
        enc[f"sub + isal level {level}"] = sub_png(isal_zlib.compress, level)
    try:
        from zlib_ng import zlib_ng

        for level in (1, 2):
            enc[f"sub + zlib-ng level {level}"] = sub_png(zlib_ng.compress, level)
    except ImportError:
        pass
    try:
        import fpng

        enc["fpng"] = lambda img: fpng.fpng_ext.encode_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    except ImportError:
        pass
    try:
        import imagecodecs

        enc["imagecodecs png level 1 (RLE, SUB)"] = lambda img: imagecodecs.png_encode(
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB), level=1, strategy=3, filter=16
        )
        enc["imagecodecs spng level 1"] = lambda img: imagecodecs.spng_encode(
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB), level=1
        )
    except ImportError:
        pass
    try:
        import io

        from PIL import Image

        def pillow(img: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).save(buf, "PNG", compress_level=1)
            return buf.getvalue()

        enc["Pillow compress_level 1"] = pillow
    except ImportError:
        pass
    return enc


def compare_png(img: np.ndarray, encoders: dict[str, Callable[[np.ndarray], bytes]], min_time: float) -> list[dict]:
    """Time and size of each encoder on ``img``; each output is decoded and checked to be lossless."""
    rows = []
    raw = img.nbytes
    for name, encode in encoders.items():
        data = encode(img)
        back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        times = repeat(partial(encode, img), min_time, min_runs=2)
        row = {
            "encoder": name,
            "bytes": len(data),
            "ratio": raw / len(data),
            "lossless": bool(back is not None and np.array_equal(back, img)),
            **stats(times),
            "mb_per_s": raw / 1e6 / (np.median(times)),
        }
        rows.append(row)
        print(f"  {name:<42} {row['p50_ms']:9.1f} ms {len(data) / 1e6:7.2f} MB  lossless={row['lossless']}")
    return rows


FAST_SUBSET = (
    "cv2 default params",
    "cv2 level 1",
    "cv2 level 1 strategy RLE",
    "cv2 level 1 filter SUB",
    "sub + zlib level 1",
    "sub + isal level 1",
    "sub + isal level 2",
    "sub + zlib-ng level 1",
    "fpng",
    "imagecodecs png level 1 (RLE, SUB)",
)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Pipeline stages by image size; PNG encoders by time and size.")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--sizes", default=",".join(SIZES_MP), help="megapixels, from " + ",".join(SIZES_MP))
    p.add_argument("--min_time", type=float, default=1.5, help="seconds per size (stages) or per encoder / 4")
    p.add_argument("--quick", action="store_true", help="a smoke test: small sizes, short timings")
    a = p.parse_args(argv)
    if a.quick:
        a.sizes, a.min_time = "0.25,1", 0.3
    settings = Settings(model_path=a.model, providers="cpu")
    runtime = ModelRuntime.from_settings(settings, available_cores())
    threads = runtime.intra_op_threads
    stages: dict[str, Any] = {}
    before_after: dict[str, Any] = {}
    for mp in a.sizes.split(","):
        width, height = SIZES_MP[mp]
        data = photo_jpeg(width, height, seed=1)
        stages[mp] = {"width": width, "height": height, **pipeline_stages(data, runtime, settings, a.min_time)}
        before_after[mp] = float_vs_current(data, runtime, settings, a.min_time / 6)
        line = ", ".join(f"{s} {stages[mp][s]['p50_ms']:.1f}" for s in STAGES)
        print(f"{mp:>5} MP ({width}×{height}): {line} ms")
    png: dict[str, Any] = {}
    for mp, full in (("1", True), ("12", False)):
        if mp not in stages:
            continue
        width, height = SIZES_MP[mp]
        prepared = prepare(photo_jpeg(width, height, seed=1), runtime.info.input_size, settings.max_pixels)
        ab = guided_ab(runtime.run(prepared.small_l[None])[0], prepared.small_l[0])
        out = join(prepared.full_l, ab, prepared.alpha)
        encoders = png_encoders(full, settings.png_compression)
        if not full:
            encoders = {
                k: v for k, v in encoders.items() if k in FAST_SUBSET or k == app_encoder(settings.png_compression)
            }
        print(f"PNG encoders on the {mp} MP output ({width}×{height}):")
        png[mp] = compare_png(out, encoders, a.min_time / 4)
    save(
        "stages",
        {
            "model": a.model.name,
            "model_version": runtime.info.version,
            "png_compression": settings.png_compression,
            "threads": threads,
            "stages": stages,
            "float_vs_current": before_after,
            "png": png,
        },
    )


if __name__ == "__main__":
    main()
