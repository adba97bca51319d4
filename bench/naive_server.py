"""The same model served the way most colourisation APIs are written: the baseline that bench/load.py compares
the service with. Not for production.

One request at a time (a global lock around a sync endpoint), PyTorch eager, cv2.imdecode with its defaults,
the whole pipeline in float at full resolution (Lab in, torch bilinear upsampling, Lab out), PNG at OpenCV's
default settings.

    .venv/bin/python -m uvicorn bench.naive_server:app --port 8001

The weights are runs/default/last.pt (NAIVE_CHECKPOINT) through train.export.load_model; without a checkpoint the
network is rebuilt from the ONNX file's metadata with random weights, which costs the same time.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse, Response

from train.export import load_model
from train.from_onnx import rebuild
from train.model import ColorizerNet

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = Path(os.environ.get("NAIVE_CHECKPOINT", ROOT / "runs" / "default" / "last.pt"))
ONNX_MODEL = Path(os.environ.get("COLORIZER_MODEL_PATH", ROOT / "models" / "colorizer.onnx"))


def build_model() -> tuple[ColorizerNet, int, str]:
    """The network, its input size, and where its weights came from."""
    proto = onnx.load(str(ONNX_MODEL))
    meta = {p.key: p.value for p in proto.metadata_props}
    size = int(meta["colorizer.input_size"])
    if CHECKPOINT.is_file():
        model, _ = load_model(str(CHECKPOINT))
        return model, size, str(CHECKPOINT)
    # The shipped weights, rebuilt from the ONNX file (BatchNorm folded, exact in eval mode): the naive server runs
    # the same network as the service, only naively. (Parsing colorizer.architecture by hand broke on 2.x's
    # longer string.)
    model, _ = rebuild(ONNX_MODEL)
    return model, size, "weights rebuilt from " + ONNX_MODEL.name


MODEL, SIZE, SOURCE = build_model()
LOCK = threading.Lock()  # one image at a time: the model and the CPU are "not thread-safe"
app = FastAPI(title="naive colorizer")
log.info("naive server: %s", SOURCE)


def colorize_bytes(data: bytes) -> bytes:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not an image")
    lab = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    lightness = torch.from_numpy(np.ascontiguousarray(lab[:, :, 0]))[None, None]  # (1, 1, H, W)
    small = F.interpolate(lightness, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ab = MODEL(small)  # (1, 2, h, w)
        ab = F.interpolate(ab, size=lightness.shape[2:], mode="bilinear", align_corners=False)  # (1, 2, H, W)
    lab_out = torch.cat([lightness, ab], dim=1)[0].permute(1, 2, 0).numpy()  # (H, W, 3)
    out = cv2.cvtColor(lab_out, cv2.COLOR_Lab2BGR)
    ok, png = cv2.imencode(".png", (np.clip(out, 0, 1) * 255).astype(np.uint8))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/colorize")
def colorize(file: Annotated[UploadFile, File()]) -> Response:
    data = file.file.read()
    with LOCK:
        try:
            png = colorize_bytes(data)
        except (cv2.error, ValueError):  # undecodable
            return JSONResponse({"detail": "not an image"}, 400)
    return Response(png, media_type="image/png")
