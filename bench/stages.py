"""Where the time of one image goes, stage by stage, for 0.25, 1, 12 and 24 MP photo-like JPEGs; and PNG
encoders compared by time and size on the service's real output.

    .venv/bin/python -m bench.stages              # full run (~3 min)
    .venv/bin/python -m bench.stages --quick      # seconds: a smoke test

The stages call the service's own functions (app.decode, app.color, app.runtime, app.encode). Three cheaper
alternatives that app/ could adopt are timed beside them, with their largest difference from the current output.
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.color import join, lightness, model_input
from app.decode import decode_image
from app.encode import encode_image, isal_zlib, png_sub_filtered
from app.runtime import ModelRuntime
from bench.common import MODEL, SIZES_MP, photo_jpeg, repeat, save, stats

MAX_PIXELS = 10**9

# ---------------------------------------------------------------- stages


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def pipeline_stages(data: bytes, runtime: ModelRuntime, min_time: float) -> dict[str, Any]:
    """Each stage of the service's pipeline, repeated until ``min_time`` has passed (at least twice)."""
    size = runtime.info.input_size
    times: dict[str, list[float]] = {k: [] for k in ("decode", "lab", "resize", "model", "join", "encode")}
    started = time.perf_counter()
    while len(times["decode"]) < 2 or time.perf_counter() - started < min_time:
        decoded, t = timed(lambda: decode_image(data, MAX_PIXELS))
        times["decode"].append(t)
        full_l, t = timed(lambda d=decoded: lightness(d.color))
        times["lab"].append(t)
        small, t = timed(lambda f=full_l: model_input(f, size))
        times["resize"].append(t)
        ab, t = timed(lambda s=small: runtime.run(s[None])[0])
        times["model"].append(t)
        out, t = timed(lambda f=full_l, ab=ab: join(f, ab, None))
        times["join"].append(t)
        png, t = timed(lambda o=out: encode_image(o, "png", 1))
        times["encode"].append(t)
    result = {stage: stats(ts) for stage, ts in times.items()}
    result["total_p50_ms"] = sum(result[s]["p50_ms"] for s in times)
    result["png_bytes"] = len(png)
    result["jpeg_bytes"] = len(data)
    return result


# ---------------------------------------------------------------- cheaper alternatives (patch proposals)

# The two functions below are those of bench/proposals/u8_pipeline.patch, timed here against the current ones.
_GRAY = np.repeat((np.arange(256, dtype=np.float32) * (1.0 / 255.0)).reshape(1, 256, 1), 3, axis=2)
L_OF_GRAY = lightness(_GRAY)  # (1, 256) float32: L of each gray level, as app/decode.py scales it


def decode_u8(data: bytes) -> np.ndarray:
    """Decode only: no float conversion."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def lightness_u8(img: np.ndarray) -> np.ndarray:
    """L straight from uint8 pixels: a table lookup when the photo is gray (the usual input, and exact), the
    float conversion otherwise."""
    if img.ndim == 2:
        return cv2.LUT(img, L_OF_GRAY)
    b, g, r = cv2.split(img)
    if cv2.countNonZero(cv2.absdiff(b, g)) == 0 and cv2.countNonZero(cv2.absdiff(g, r)) == 0:
        return cv2.LUT(g, L_OF_GRAY)
    return lightness(img.astype(np.float32) * (1.0 / 255.0))


def join_lab8(full_l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """join() through OpenCV's 8-bit Lab (L·255/100, a+128, b+128), whose Lab→BGR is fixed-point."""
    height, width = full_l.shape
    ab8 = np.clip(np.rint(ab.transpose(1, 2, 0) + 128.0), 0, 255).astype(np.uint8)  # (h, w, 2), small
    ab_full = cv2.resize(ab8, (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W, 2)
    l8 = cv2.convertScaleAbs(full_l, alpha=255.0 / 100.0)
    return cv2.cvtColor(cv2.merge([l8, ab_full]), cv2.COLOR_Lab2BGR)


def alternatives(data: bytes, runtime: ModelRuntime, min_time: float) -> dict[str, Any]:
    """The proposed stages against the current ones, on the same photo, with the largest output difference."""
    size = runtime.info.input_size
    decoded = decode_image(data, MAX_PIXELS)
    full_l = lightness(decoded.color)
    ab = runtime.run(model_input(full_l, size)[None])[0]
    current = join(full_l, ab, None)
    raw = decode_u8(data)
    l_u8 = lightness_u8(raw)
    out = {
        "decode_to_float (current)": stats(repeat(lambda: decode_image(data, MAX_PIXELS), min_time, 2)),
        "decode_u8": stats(repeat(lambda: decode_u8(data), min_time, 2)),
        "lab_float (current)": stats(repeat(lambda: lightness(decoded.color), min_time, 2)),
        "lab_u8_table": stats(repeat(lambda: lightness_u8(raw), min_time, 2)),
        "join_float (current)": stats(repeat(lambda: join(full_l, ab, None), min_time, 2)),
        "join_lab8": stats(repeat(lambda: join_lab8(full_l, ab), min_time, 2)),
    }
    out["lab_u8_table"]["max_abs_diff_L"] = float(np.abs(l_u8 - full_l).max())
    diff = np.abs(join_lab8(full_l, ab).astype(np.int16) - current.astype(np.int16))
    out["join_lab8"]["max_abs_diff_levels"] = int(diff.max())
    out["join_lab8"]["mean_abs_diff_levels"] = float(diff.mean())
    return out


# ---------------------------------------------------------------- PNG encoders


def png_encoders(full: bool) -> dict[str, Callable[[np.ndarray], bytes]]:
    """Every PNG encoder that installs here, by name; ``full`` adds the slow levels and every strategy/filter."""

    def cv(*params: int) -> Callable[[np.ndarray], bytes]:
        return lambda img: cv2.imencode(".png", img, list(params))[1].tobytes()

    enc: dict[str, Callable[[np.ndarray], bytes]] = {"cv2 default params": cv()}
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
    enc["sub + zlib level 1"] = lambda img: png_sub_filtered(img, lambda d: zlib.compress(d, 1))
    if isal_zlib is not None:
        for level in (0, 1, 2, 3):
            enc[f"sub + isal level {level}" + (" (app, level 1)" if level == 1 else "")] = lambda img, level=level: (
                png_sub_filtered(img, lambda d: isal_zlib.compress(d, level))
            )
    try:
        from zlib_ng import zlib_ng

        for level in (1, 2):
            enc[f"sub + zlib-ng level {level}"] = lambda img, level=level: png_sub_filtered(
                img, lambda d: zlib_ng.compress(d, level)
            )
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
        times = repeat(lambda e=encode: e(img), min_time, min_runs=2)
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
    "sub + isal level 1 (app, level 1)",
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
    runtime = ModelRuntime(a.model, ["CPUExecutionProvider"])
    stages: dict[str, Any] = {}
    proposals: dict[str, Any] = {}
    for mp in a.sizes.split(","):
        width, height = SIZES_MP[mp]
        data = photo_jpeg(width, height, seed=1)
        stages[mp] = {"width": width, "height": height, **pipeline_stages(data, runtime, a.min_time)}
        proposals[mp] = alternatives(data, runtime, a.min_time / 6)
        line = ", ".join(f"{s} {stages[mp][s]['p50_ms']:.1f}" for s in ("decode", "lab", "resize", "model", "join"))
        print(f"{mp:>5} MP ({width}×{height}): {line}, encode {stages[mp]['encode']['p50_ms']:.1f} ms")
    png: dict[str, Any] = {}
    for mp, full in (("1", True), ("12", False)):
        if mp not in stages:
            continue
        width, height = SIZES_MP[mp]
        decoded = decode_image(photo_jpeg(width, height, seed=1), MAX_PIXELS)
        full_l = lightness(decoded.color)
        out = join(full_l, runtime.run(model_input(full_l, runtime.info.input_size)[None])[0], None)
        encoders = png_encoders(full)
        if not full:
            encoders = {k: v for k, v in encoders.items() if k in FAST_SUBSET}
        print(f"PNG encoders on the {mp} MP output ({width}×{height}):")
        png[mp] = compare_png(out, encoders, a.min_time / 4)
    save(
        "stages",
        {"model": a.model.name, "isal": isal_zlib is not None, "stages": stages, "proposals": proposals, "png": png},
    )


if __name__ == "__main__":
    main()
