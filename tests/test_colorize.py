"""The one colourisation path (app/colorize.py) in-process, with the real model: what every entry point gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import cv2
import numpy as np
import pytest

from app.colorize import Colorizer
from app.config import Settings
from app.errors import ColorizerError
from app.metrics import Metrics
from app.runtime import ModelRuntime
from app.tuning import Tuning
from tests.conftest import MODEL, decode_png, gray_png

Build = Callable[..., Any]


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    return ModelRuntime(MODEL, ["CPUExecutionProvider"])


@pytest.fixture
def build(runtime: ModelRuntime) -> Build:
    @asynccontextmanager
    async def started(**settings: Any) -> AsyncIterator[Colorizer]:
        s = Settings(model_path=MODEL, providers="cpu", **settings)
        colorizer = Colorizer(runtime, Tuning.resolve(s, runtime.kind, 2), Metrics(), s.max_pixels)
        await colorizer.start()
        try:
            yield colorizer
        finally:
            await colorizer.stop()

    return started


def outcomes(colorizer: Colorizer) -> dict[str, float]:
    return {o: colorizer.metrics.images.labels(o)._value.get() for o in ("ok", "rejected", "error")}


async def test_an_upload_comes_back_the_same_size_and_is_counted_once(build: Build) -> None:
    async with build() as colorizer:
        png = await colorizer.colorize(gray_png(90, 120))
        assert decode_png(png).shape[:2] == (90, 120)
        jpeg = await colorizer.colorize(gray_png(90, 120), "jpeg")
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (90, 120)
        assert outcomes(colorizer) == {"ok": 2, "rejected": 0, "error": 0}
        assert colorizer.admission.running == 0


async def test_a_bad_upload_is_a_core_error_and_does_not_disturb_its_batch(build: Build) -> None:
    async with build() as colorizer:
        with pytest.raises(ColorizerError) as bad:
            await colorizer.colorize(b"not an image")
        assert bad.value.code == "unsupported_media_type"
        results = await colorizer.colorize_all([gray_png(40, 50), b"", gray_png(60, 70)])
        assert isinstance(results[1], ColorizerError)
        assert results[1].code == "empty_file"
        assert [decode_png(r).shape[:2] for r in (results[0], results[2]) if isinstance(r, bytes)] == [
            (40, 50),
            (60, 70),
        ]
        assert outcomes(colorizer) == {"ok": 2, "rejected": 2, "error": 0}


async def test_png_compression_is_honoured(build: Build) -> None:
    sizes = {}
    for level in (0, 9):
        async with build(png_compression=level) as colorizer:
            sizes[level] = len(await colorizer.colorize(gray_png(120, 160)))
    assert sizes[0] > 120 * 160 * 3  # level 0 stores the pixels
    assert sizes[9] < sizes[0] / 2


async def test_the_deadline_is_a_deadline_exceeded_error(build: Build) -> None:
    async with build(request_timeout_s=0.000001) as colorizer:
        with pytest.raises(ColorizerError) as late:
            await colorizer.colorize(gray_png(600, 800))
        assert late.value.code == "deadline_exceeded"
        assert outcomes(colorizer)["error"] == 1
        assert colorizer.admission.running == 0  # its place was given back


async def test_offline_work_waits_instead_of_being_refused(build: Build) -> None:
    async with build(max_in_flight=1, max_queue=1, max_queue_wait_ms=0.001) as colorizer:
        answers = await asyncio.gather(*(colorizer.colorize(gray_png(60, 80), shed=False) for _ in range(6)))
        assert len(answers) == 6
        assert outcomes(colorizer)["ok"] == 6


async def test_image_requests_overtake_video_frames_at_the_gate(build: Build) -> None:
    # One place: a video chunk holds it; another chunk is in line before an image arrives. When the place frees,
    # the image goes first, though it came last; the chunk waits for it (the budget is long, so the chunk never
    # waits long enough to go ahead of images).
    async with build(max_in_flight=1, max_queue_wait_ms=600_000) as colorizer:
        size = colorizer.input_size
        frames = np.full((32, 1, size, size), 50.0, np.float32)
        finished: list[str] = []

        async def run(name: str, work: Any) -> None:
            await work
            finished.append(name)

        first = asyncio.create_task(run("chunk 1", colorizer.infer_frames(frames, 4)))
        second = asyncio.create_task(run("chunk 2", colorizer.infer_frames(frames, 4)))
        image = asyncio.create_task(run("image", colorizer.colorize(gray_png(256, 256))))
        await asyncio.sleep(0)  # each task has taken its place in line (admission happens before any await)
        assert (colorizer.admission.running, colorizer.admission.waiting, colorizer.admission.bulk_waiting) == (1, 1, 1)
        await asyncio.gather(first, second, image)
        assert finished == ["chunk 1", "image", "chunk 2"]
