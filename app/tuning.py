"""The effective tuning: every per-provider and per-core default resolved once, at start-up, into one frozen record.

A setting left at 0 (or, for the batch delay, below 0) means "the default for this provider and core count"; the
defaults and the measurements behind them live here and nowhere else. ``GET /model`` reports the record, so what
the service runs with is never a guess. The numbers come from docs/PERFORMANCE.md: 2 CPU cores for the CPU values,
an H200 with 16 host cores for the CUDA ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from app.config import Settings
from app.video.process import MAX_CHUNK_FRAMES

Kind = Literal["cpu", "cuda"]


def intra_op_threads(settings: Settings, cores: int) -> int:
    """ONNX Runtime threads per model run; needed before the session exists, so before the provider is known.

    Half the cores, the rest decode and encode. On 2 cores two 1-thread runs did 48 img/s where one 2-thread run
    did 35: an operator of this small model is too short to split well across threads."""
    return settings.intra_op_threads or max(1, cores // 2)


@dataclass(frozen=True)
class Tuning:
    provider: Kind
    cores: int  # the cores this process may use (app/cores.py)
    intra_op_threads: int  # ONNX Runtime threads per model run
    model_concurrency: int  # model runs at once
    max_batch_size: int  # largest batch the batcher forms
    max_batch_delay_ms: float  # how long the batcher waits to fill a batch
    max_in_flight: int  # images decoded, coloured and encoded at once; the rest wait in the admission queue
    max_queue: int  # images waiting in the admission queue before 503
    max_queue_wait_ms: float  # the longest estimated wait a request is admitted with
    max_active_pixels: int  # full-resolution pixels in flight at once; images past it wait for room
    pipeline_threads: int  # threads for decode, Lab, resize and encode
    video_in_flight: int  # frames a video job keeps at the model
    png_compression: int
    request_timeout_s: float

    @classmethod
    def resolve(cls, settings: Settings, provider: Kind, cores: int) -> Tuning:
        s = settings
        threads = intra_op_threads(s, cores)
        if provider == "cuda":
            # Measured on an H200 with 16 cores (bench/gpu.py --sweep, docs/PERFORMANCE.md "GPU"): this model runs
            # a 128² image in about a millisecond, so the host's decode and encode set the pace, not the GPU. One
            # image per run, no wait, four in flight served 1.18x the images/s of batch 32 / 5 ms / 128 in flight
            # at 32 clients (219 against 185) and 0.71x its latency for a lone client (13.7 against 19.2 ms p50):
            # each batch of a new size cost ~60 ms there, where a batch of one keeps one shape. A bigger model
            # would want batches back: the settings set them. Four in flight so one runs while the next decode.
            batch, delay, runs = 1, 0.0, 1
            in_flight_default = 4 * (s.max_batch_size or batch)
            video = MAX_CHUNK_FRAMES  # a whole chunk waiting: a frame's run takes about a millisecond
        else:
            # A CPU does no more work per image in a batch, so a CPU batch takes what is queued and never waits
            # (a 2 ms wait cost up to 17% of the throughput, bench/load.py --sweep). One run per group of ORT
            # threads, so every core has a run to work on. One image in flight per core (the rest wait in the
            # admission line): on 2 busy cores 2, 4, 8 and 16 in flight served the same closed-loop throughput
            # within noise, and under 4x open-loop overload 2 in flight accepted 21.5 images/s with /healthz p99
            # 26 ms where 4 accepted 14.7/s with 771 ms: every extra worker thread queues the event loop for the
            # GIL (docs/PERFORMANCE.md, docs/RELIABILITY.md). Video: one frame at the model, so an image never
            # waits behind a run of four frames (about half a second).
            batch, delay, runs = 4, 0.0, max(1, cores // threads)
            in_flight_default = max(2, cores)
            video = 1
        return cls(
            provider=provider,
            cores=cores,
            intra_op_threads=threads,
            model_concurrency=s.model_concurrency or runs,
            max_batch_size=s.max_batch_size or batch,
            max_batch_delay_ms=s.max_batch_delay_ms if s.max_batch_delay_ms >= 0 else delay,
            max_in_flight=s.max_in_flight or in_flight_default,
            max_queue=s.max_queue,
            max_queue_wait_ms=s.max_queue_wait_ms,
            # A lone image within COLORIZER_MAX_PIXELS must always be able to run.
            max_active_pixels=max(s.max_active_pixels, s.max_pixels),
            pipeline_threads=s.workers_threads or cores + 1,
            video_in_flight=s.video_in_flight or video,
            png_compression=s.png_compression,
            request_timeout_s=s.request_timeout_s,
        )

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
