"""Batching, back-pressure, deadlines, upload limits, auth and graceful shutdown, on real servers."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import (
    HeldUpload,
    Server,
    gauge,
    gray_png,
    hold_uploads,
    launch,
    metric,
    noise_png,
    open_files_under,
    wait_until,
)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


async def post_many(url: str, bodies: list[bytes], headers: dict[str, str] | None = None) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(
            *(client.post(url + "/colorize", files={"file": ("a.png", b)}, headers=headers) for b in bodies)
        )


@pytest.mark.slow
def test_concurrent_requests_share_model_runs(start_server: Callable[..., Server]) -> None:
    server = start_server(
        COLORIZER_MAX_BATCH_SIZE="8", COLORIZER_MAX_BATCH_DELAY_MS="200", COLORIZER_MAX_IN_FLIGHT="12"
    )
    responses = asyncio.run(post_many(server.url, [gray_png(96, 128)] * 12))
    assert [r.status_code for r in responses] == [200] * 12
    text = httpx.get(server.url + "/metrics").text
    assert metric(text, "colorizer_batch_size_sum") == 12  # every image went through the batcher once
    runs = metric(text, "colorizer_batch_size_count")
    assert runs < 12, f"{runs} model runs for 12 concurrent images: no batching happened"


def release_and_answer(held: list[HeldUpload]) -> list[tuple[int, dict[str, str], bytes]]:
    """Send every held request's last byte at once (they arrive together), then read each answer."""
    for h in held:
        h.release()
    return [h.answer() for h in held]


@pytest.mark.slow
def test_full_queue_sheds_with_503_and_retry_after(start_server: Callable[..., Server]) -> None:
    server = start_server(
        COLORIZER_MAX_QUEUE="1",
        COLORIZER_MAX_BATCH_SIZE="1",
        COLORIZER_MAX_BATCH_DELAY_MS="0",
        # Issue 16: the queue is the admission line in front of the images in flight. One in flight and a wait
        # budget no estimate reaches, so the queue bound is the one that sheds.
        COLORIZER_MAX_IN_FLIGHT="1",
        COLORIZER_MAX_QUEUE_WAIT_MS="600000",
    )
    # Held uploads, released in steps: a 24-Mpx photo (seconds of work) takes the one place, a small one the one
    # place in line, and fourteen more arrive while both are still there: the line is full for every one of them.
    running, waiting, *late = hold_uploads(server.url, [gray_png(4000, 6000)] + [gray_png(64, 64)] * 15)
    running.release()
    wait_until(lambda: gauge(server.url, "colorizer_images_in_flight") == 1, 60, "the big photo in flight")
    waiting.release()
    wait_until(lambda: gauge(server.url, "colorizer_images_waiting") == 1, 60, "the small one in line")
    shed = release_and_answer(late)
    assert [status for status, _, _ in shed] == [503] * 14, [body[:200] for _, _, body in shed]
    for _, headers, body in shed:
        assert headers["retry-after"].isdigit()
        assert json.loads(body)["code"] == "overloaded"
        assert "COLORIZER_MAX_QUEUE" in json.loads(body)["detail"]
    assert [running.answer()[0], waiting.answer()[0]] == [200, 200]  # admitted ones are served
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert httpx.post(server.url + "/colorize", files={"file": ("a.png", gray_png())}).status_code == 200


def test_deadline_answers_504(start_server: Callable[..., Server]) -> None:
    server = start_server(COLORIZER_REQUEST_TIMEOUT_S="0.001")
    r = httpx.post(server.url + "/colorize", files={"file": ("a.png", gray_png(1200, 1600))}, timeout=30)
    assert r.status_code == 504
    assert r.json()["code"] == "deadline_exceeded"


@pytest.mark.slow
def test_after_a_504_the_place_and_the_pixels_come_back(start_server: Callable[..., Server]) -> None:
    """One image at a time and a pixel budget of one big photo: if a 504 kept its place or its pixels, the next
    image would wait behind it for ever (and get its own 504). A 36-Mpx photo takes seconds (decode, Lab, encode)
    against a 0.5 s deadline; a 32 x 32 one a few milliseconds."""
    server = start_server(
        COLORIZER_REQUEST_TIMEOUT_S="0.5",
        COLORIZER_MAX_IN_FLIGHT="1",
        COLORIZER_MAX_PIXELS="36000000",
        COLORIZER_MAX_ACTIVE_PIXELS="36000000",
    )
    big = httpx.post(server.url + "/colorize", files={"file": ("big.png", gray_png(6000, 6000))}, timeout=120)
    assert (big.status_code, big.json()["code"]) == (504, "deadline_exceeded"), big.text
    # Given back at the 504, even though the decode or encode already running finishes in its thread.
    wait_until(lambda: gauge(server.url, "colorizer_images_in_flight") == 0, 30, "the place given back")
    wait_until(lambda: gauge(server.url, "colorizer_active_pixels") == 0, 30, "the pixels given back")
    small = httpx.post(server.url + "/colorize", files={"file": ("small.png", gray_png(32, 32))}, timeout=60)
    assert small.status_code == 200, small.text


def test_upload_limit_is_enforced_while_receiving(start_server: Callable[..., Server]) -> None:
    server = start_server(COLORIZER_MAX_UPLOAD_BYTES="1000000")
    peak_before = peak_rss_mb(server.process.pid)

    def eighty_megabytes() -> Iterator[bytes]:
        chunk = b"\0" * 65536
        for _ in range(80 * 16):
            yield chunk

    # Chunked (no Content-Length): refused once the count passes the limit, not after 80 MB.
    try:
        r = httpx.post(
            server.url + "/colorize", content=eighty_megabytes(), headers={"Content-Type": "image/png"}, timeout=30
        )
        assert r.status_code == 413
        assert r.json()["code"] == "upload_too_large"
    except httpx.TransportError:
        pass  # the server may close the connection while the client is still sending: also a refusal
    growth = peak_rss_mb(server.process.pid) - peak_before
    assert growth < 40, f"the server's peak memory grew by {growth:.0f} MB for an 80 MB body it refused"
    # Declared Content-Length over the limit: refused before reading the body.
    r = httpx.post(server.url + "/colorize", content=b"\0" * 2_000_000, headers={"Content-Type": "image/png"})
    assert r.status_code == 413
    assert "COLORIZER_MAX_UPLOAD_BYTES" in r.json()["detail"]
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_api_keys(start_server: Callable[..., Server]) -> None:
    server = start_server(COLORIZER_API_KEYS="k1,secret-2")
    files = {"file": ("a.png", gray_png())}
    r = httpx.post(server.url + "/colorize", files=files)
    assert (r.status_code, r.json()["code"]) == (401, "missing_api_key")
    r = httpx.post(server.url + "/colorize", files=files, headers={"Authorization": "Bearer wrong"})
    assert (r.status_code, r.json()["code"]) == (403, "invalid_api_key")
    r = httpx.post(server.url + "/colorize", files=files, headers={"Authorization": "Bearer secret-2"})
    assert r.status_code == 200
    for open_route in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(server.url + open_route).status_code == 200


@pytest.mark.slow
def test_wait_budget_sheds_single_requests_but_a_batch_waits_its_turn(
    start_server: Callable[..., Server],
) -> None:
    # Issue 16 changed what sheds: not a count of images in flight but the estimated wait. With one image at once
    # and a 1 ms budget, a request arriving behind another is refused while the one in flight is within its
    # estimated service time (about 1 s for 24 Mpx before any is measured; app/admission.py). So: a 24-Mpx photo held
    # at its last byte is released, and once it is in flight seven small uploads arrive together.
    server = start_server(COLORIZER_MAX_IN_FLIGHT="1", COLORIZER_MAX_BATCH_SIZE="1", COLORIZER_MAX_QUEUE_WAIT_MS="1")
    first, *behind = hold_uploads(server.url, [gray_png(4000, 6000)] + [gray_png(64, 64)] * 7)
    first.release()
    wait_until(lambda: gauge(server.url, "colorizer_images_in_flight") == 1, 60, "the big photo in flight")
    shed = release_and_answer(behind)
    assert [status for status, _, _ in shed] == [503] * 7, [body[:200] for _, _, body in shed]
    for _, headers, body in shed:
        assert json.loads(body)["code"] == "overloaded"
        assert "COLORIZER_MAX_QUEUE_WAIT_MS" in json.loads(body)["detail"]
        assert headers["retry-after"].isdigit()
    assert first.answer()[0] == 200
    # Five images in one batch request with one slot: accepted as a whole, colourised one after another.
    files = [("files", (f"p{i}.png", gray_png(60 + i, 80))) for i in range(5)]
    batch = httpx.post(server.url + "/colorize/batch", files=files, timeout=120)
    assert batch.status_code == 200, batch.text
    with zipfile.ZipFile(io.BytesIO(batch.content)) as archive:
        assert archive.namelist() == [f"p{i}.png" for i in range(5)]
    text = httpx.get(server.url + "/metrics").text
    assert metric(text, 'colorizer_images_total{outcome="ok"}') == 1 + 5


@pytest.mark.slow
def test_sigterm_drains_without_losing_accepted_requests(start_server: Callable[..., Server], tmp_path: Path) -> None:
    """Six uploads provably in flight when SIGTERM lands: each is held at its last byte, and the server has each
    one's spooled temp file open. While they are held the process must stay up and refuse new connections; once
    released, every one gets its 200, then the process exits."""
    spool = tmp_path / "spool"
    spool.mkdir()
    server = start_server(COLORIZER_MAX_QUEUE="64", COLORIZER_MAX_IN_FLIGHT="64", TMPDIR=str(spool))
    pid = server.process.pid
    baseline = len(open_files_under(pid, spool))  # ONNX Runtime's own .ses file, if it keeps it open
    held = hold_uploads(server.url, [noise_png(800, 1400 + i) for i in range(6)])  # > 1 MB each: spooled to disk
    wait_until(lambda: len(open_files_under(pid, spool)) - baseline == 6, 60, "six uploads being received")

    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM: draining" in server.log(), 30, "the server draining")
    readiness: list[int] = []

    def refused() -> bool:
        """A new connection is refused once uvicorn has closed its listener (at its next 0.1 s tick); until then
        /readyz must already say 503."""
        try:
            readiness.append(httpx.get(server.url + "/readyz", timeout=10).status_code)
        except httpx.ConnectError:
            return True
        except httpx.TransportError:  # accepted just before the listener closed, then closed unanswered: try again
            return False
        return False

    wait_until(refused, 30, "new connections refused while draining")
    assert set(readiness) <= {503}, readiness  # never 'ready' again once SIGTERM has landed
    with pytest.raises(httpx.ConnectError):
        httpx.post(server.url + "/colorize", files={"file": ("new.png", gray_png(32, 32))}, timeout=10)
    assert server.process.poll() is None, "the server exited with six requests in flight"

    answers = release_and_answer(held)
    assert [status for status, _, _ in answers] == [200] * 6, [a[2][:200] for a in answers]
    for i, (_, headers, body) in enumerate(answers):
        assert headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (800, 1400 + i)
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM so the exit status tells why it stopped.
    assert server.process.wait(60) in (0, -15)


def test_require_gpu_refuses_to_start_on_cpu(tmp_path: Path) -> None:
    """No silent CPU fallback: with COLORIZER_REQUIRE_GPU the process exits and says why."""
    with pytest.raises(RuntimeError, match="COLORIZER_REQUIRE_GPU is true"):
        launch(tmp_path, {"COLORIZER_REQUIRE_GPU": "true", "COLORIZER_PROVIDERS": "cuda,cpu"})


def test_bad_settings_fail_fast_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="COLORIZER_PROVIDERS must list cuda and/or cpu"):
        launch(tmp_path, {"COLORIZER_PROVIDERS": "tpu"})
