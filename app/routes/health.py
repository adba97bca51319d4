"""Liveness, readiness, model description and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.service import Service

router = APIRouter()


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


@router.get("/healthz", summary="200 while the process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="200 once the model is loaded and warm; 503 before that and while draining")
async def readyz(request: Request) -> JSONResponse:
    service = _service(request)
    if service.draining:
        return JSONResponse({"detail": "the server is shutting down", "code": "draining"}, 503, {"Retry-After": "5"})
    if not service.ready:
        return JSONResponse({"detail": "the model is still loading", "code": "not_ready"}, 503, {"Retry-After": "2"})
    return JSONResponse({"status": "ready"})


@router.get("/model", summary="The loaded model, batching settings and the effective tuning")
async def model(request: Request) -> dict[str, Any]:
    service = _service(request)
    colorizer = service.colorizer  # 503 not_ready until the model is warm
    info, tuning = colorizer.runtime.info, colorizer.tuning
    return {
        "version": info.version,
        "architecture": info.architecture,
        "input_size": info.input_size,
        "trained_on": info.trained_on,
        "sha256": info.sha256,
        "providers": info.providers,
        "hints": info.hints,  # the colour hints the model takes: ["local", "global"], or [] (automatic only)
        "precision": info.precision,  # "fp32", or "int8": the quantised file beside the model (app/precision.py)
        "precision_reason": info.precision_reason,
        "batching": {
            "max_batch_size": tuning.max_batch_size,
            "max_batch_delay_ms": tuning.max_batch_delay_ms,
            "max_queue": tuning.max_queue,
            "max_in_flight": tuning.max_in_flight,
            "max_queue_wait_ms": tuning.max_queue_wait_ms,
        },
        "tuning": tuning.as_dict(),  # every effective value, per-provider defaults resolved (app/tuning.py)
    }


@router.get("/metrics", summary="Prometheus text exposition")
async def metrics(request: Request) -> Response:
    # Off the event loop: the scrape-time gauges (app/main.py) walk the video store's files.
    text = await asyncio.to_thread(generate_latest, _service(request).metrics.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
