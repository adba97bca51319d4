"""The image pipeline, as plain functions shared by the HTTP routes, the CLI and video jobs:
decode → L → (model) → ab along L's edges (app/edges.py) → join with full-resolution L → encode."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app.color import join, model_input
from app.decode import decode_lightness
from app.edges import guided_ab
from app.encode import encode_image
from app.image_header import Header, checked_header
from app.metrics import Metrics


@dataclass
class Prepared:
    full_l: np.ndarray  # (H, W) float32 L of the original, orientation applied
    small_l: np.ndarray  # (1, S, S) float32 model input
    alpha: np.ndarray | None


def _observe(metrics: Metrics | None, stage: str, started: float) -> float:
    now = time.perf_counter()
    if metrics is not None:
        metrics.stage_duration.labels(stage).observe(now - started)
    return now


def prepare(
    data: bytes, size: int, max_pixels: int, metrics: Metrics | None = None, header: Header | None = None
) -> Prepared:
    """Upload bytes -> L at full size and at the model's size. Raises ColorizerError for bad input. ``header``:
    the one already read (and checked) by the caller, so the bytes are parsed once."""
    header = header or checked_header(data, max_pixels)
    t = time.perf_counter()
    decoded = decode_lightness(data, header)  # decode and L in one step: no full-size float BGR
    t = _observe(metrics, "decode", t)
    small = model_input(decoded.lightness, size, decoded.alpha)
    _observe(metrics, "preprocess", t)
    return Prepared(decoded.lightness, small, decoded.alpha)


def finish(prepared: Prepared, ab: np.ndarray, fmt: str, png_compression: int, metrics: Metrics | None = None) -> bytes:
    """Model ab + original L -> encoded image bytes of the original's exact size."""
    t = time.perf_counter()
    out = join(prepared.full_l, guided_ab(ab, prepared.small_l[0]), prepared.alpha)
    t = _observe(metrics, "postprocess", t)
    encoded = encode_image(out, fmt, png_compression)
    _observe(metrics, "encode", t)
    return encoded
