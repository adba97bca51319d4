"""Service settings: one pydantic-settings class, read from ``COLORIZER_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.video.temporal import DEFAULT_SCENE_CUT, DEFAULT_SMOOTHING

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "colorizer.onnx"
KNOWN_PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


class Settings(BaseSettings):
    """Every knob of the service; README's settings table lists them with these defaults."""

    model_config = SettingsConfigDict(env_prefix="COLORIZER_", frozen=True)

    model_path: Path = Field(DEFAULT_MODEL, description="the ONNX model file")
    providers: str = Field("cuda,cpu", description="execution providers in order of preference")
    require_gpu: bool = Field(False, description="refuse to start without the CUDA provider")
    # 0 (or <0 for the delay) = the default for the provider and cores, resolved in app/tuning.py; GET /model
    # reports the effective values.
    max_batch_size: int = Field(0, ge=0, le=256, description="largest batch; 0 = per provider")
    max_batch_delay_ms: float = Field(-1, le=1000, description="wait to fill a batch; <0 = per provider")
    max_queue: int = Field(64, ge=1, description="admitted images waiting for their turn before 503")
    # 2 s: on 2 CPU cores shared with another job, 32 closed-loop clients of 512² photos wait about 1.3 s at ~24
    # img/s, and 1 s shed some of them; at 4x open-loop overload accepted requests still wait at most this
    # (docs/PERFORMANCE.md, "Admission by estimated wait"). Lower it where latency matters more than refusals.
    max_queue_wait_ms: float = Field(
        2000.0, gt=0, description="longest estimated wait a request is admitted with (503 past it)"
    )
    model_concurrency: int = Field(0, ge=0, le=64, description="model runs at once; 0 = per provider")
    max_in_flight: int = Field(
        0, ge=0, description="images decoded, coloured and encoded at once (the rest wait); 0 = per provider"
    )
    max_active_pixels: int = Field(
        96_000_000, ge=1, description="full-resolution pixels in flight at once (memory bound; images past it wait)"
    )
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="largest request body")
    max_pixels: int = Field(50_000_000, ge=1, description="largest width × height accepted")
    request_timeout_s: float = Field(60.0, gt=0, description="deadline per request (504 past it)")
    body_read_timeout_s: float = Field(60.0, gt=0, description="time a request body may take to arrive (408 past it)")
    api_keys: str = Field("", description="comma-separated API keys; empty = open")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; empty = none")
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime CPU threads per model run; 0 = per cores")
    # auto: the int8 file beside the model (colorizer.int8.onnx) where the CPU has VNNI or AMX and the model runs
    # on the CPU; fp32 elsewhere (app/precision.py). GET /model says which file serves, and why.
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="auto, fp32 or int8: which model file serves on the CPU"
    )
    png_compression: int = Field(2, ge=0, le=9, description="PNG zlib level: 2 is fast; 9 is ~12% smaller, ~60x slower")
    drain_timeout_s: float = Field(30.0, ge=0, description="grace for in-flight work on SIGTERM")
    drain_delay_s: float = Field(
        0.0, ge=0, description="after SIGTERM, seconds of serving on with /readyz 503 before draining (0 = none)"
    )
    workers_threads: int = Field(0, ge=0, description="threads for decode/encode; 0 = per cores")
    video_dir: Path = Field(Path(os.environ.get("TMPDIR", "/tmp")) / "colorizer-videos", description="video jobs")
    max_video_jobs: int = Field(2, ge=1, description="video jobs running or queued at once")
    max_video_frames: int = Field(18_000, ge=1, description="longest video accepted, in frames")
    video_ttl_s: float = Field(3600.0, gt=0, description="finished video results are deleted after this")
    video_quota_bytes: int = Field(5 * 1024**3, ge=1, description="disk quota for video uploads and results")
    video_smoothing: float = Field(
        DEFAULT_SMOOTHING, ge=0, lt=1, description="weight of the past in video colour; 0 = off"
    )
    video_scene_cut: float = Field(
        DEFAULT_SCENE_CUT, gt=0, description="mean L change between frames that starts a new shot"
    )
    video_workers: int = Field(1, ge=1, description="video jobs decoding/encoding at once per replica")
    video_in_flight: int = Field(0, ge=0, description="frames a job keeps at the model; 0 = per provider")
    video_max_lost_frames: float = Field(
        0.1, ge=0, le=1, description="share of a video's frames that may fail to decode (filled) before the job fails"
    )
    host: str = Field("127.0.0.1", description="address for `colorizer serve`")
    port: int = Field(8000, ge=1, le=65535, description="port for `colorizer serve`")

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: str) -> str:
        names = [p.strip().lower() for p in value.split(",") if p.strip()]
        unknown = [n for n in names if n not in KNOWN_PROVIDERS]
        if not names or unknown:
            raise ValueError(f"COLORIZER_PROVIDERS must list cuda and/or cpu (got {value!r})")
        return ",".join(names)

    @property
    def provider_names(self) -> list[str]:
        """ONNX Runtime provider names, in preference order."""
        return [KNOWN_PROVIDERS[p] for p in self.providers.split(",")]

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
