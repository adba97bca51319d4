"""Claims of README.md and docs/RELIABILITY.md that no other test pinned down: readiness before warm-up and while
draining, the batch route's limits and sentences, the zip's member names, and the pixel budget."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.conftest import MODEL, Server, gray_png, hold_uploads, metric


async def test_readyz_is_503_before_warm_up_and_while_draining() -> None:
    """The route's side, in process: the app is built but its lifespan (model load, warm-up) has not run. On a real
    server uvicorn runs the lifespan before it opens the port, so until warm-up a probe is refused outright; once
    SIGTERM lands, test_sigterm_drains_without_losing_accepted_requests (tests/test_api_behaviour.py) applies."""
    app = create_app(Settings(model_path=MODEL, providers="cpu"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://in-process") as client:
        r = await client.get("/readyz")
        assert (r.status_code, r.json()["code"]) == (503, "not_ready")
        assert r.headers["retry-after"].isdigit()
        r = await client.post("/colorize", files={"file": ("a.png", gray_png(16, 16))})
        assert (r.status_code, r.json()["code"]) == (503, "not_ready")  # work is refused too, not failed
        app.state.service.draining = True  # what the SIGTERM handler sets (app/service.py)
        r = await client.get("/readyz")
        assert (r.status_code, r.json()["code"]) == (503, "draining")
        assert r.headers["retry-after"].isdigit()
        assert (await client.get("/healthz")).status_code == 200  # alive throughout


def test_a_batch_of_more_files_than_the_queue_is_413_too_many_files(live_server: Server) -> None:
    limit = httpx.get(live_server.url + "/model", timeout=10).json()["batching"]["max_queue"]
    tiny = gray_png(8, 8)
    files = [("files", (f"p{i}.png", tiny)) for i in range(limit + 1)]
    r = httpx.post(live_server.url + "/colorize/batch", files=files, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json() == {
        "detail": f"{limit + 1} files in one batch; the limit is {limit} (COLORIZER_MAX_QUEUE)",
        "code": "too_many_files",
    }


def test_a_bad_file_in_a_batch_is_named_in_the_sentence(live_server: Server) -> None:
    files = [
        ("files", ("first.png", gray_png(20, 30))),
        ("files", ("notes.png", b"just some words, not a picture\n")),
        ("files", ("last.png", gray_png(20, 30))),
    ]
    r = httpx.post(live_server.url + "/colorize/batch", files=files, timeout=60)
    assert r.status_code == 415, r.text
    body = r.json()
    assert body["code"] == "unsupported_media_type"
    assert body["detail"].startswith("notes.png: "), body
    assert "looks like text" in body["detail"]


def test_batch_member_names_are_exactly_as_documented(live_server: Server) -> None:
    """docs/RELIABILITY.md: `../../etc/passwd`, `C:\\Windows\\win.ini`, `..`, `/abs/path.png` come back as
    `passwd.png`, `win.png`, `...png`, `path.png`."""
    names = ["../../etc/passwd", "C:\\Windows\\win.ini", "..", "/abs/path.png"]
    files = [("files", (name, gray_png(20, 30))) for name in names]
    r = httpx.post(live_server.url + "/colorize/batch", files=files, timeout=60)
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert archive.namelist() == ["passwd.png", "win.png", "...png", "path.png"]


@pytest.mark.slow
def test_an_image_past_the_pixel_budget_waits_its_turn(start_server: Callable[..., Server]) -> None:
    """COLORIZER_MAX_ACTIVE_PIXELS (README): an image past it waits, it is not refused. Four places in flight but
    room for one 2.5-Mpx photo at a time: three uploads arriving together (held at their last byte, released at
    once) are all served, and only the first starts at once; the other two wait for the pixels, not for a place."""
    server = start_server(
        COLORIZER_MAX_IN_FLIGHT="4", COLORIZER_MAX_PIXELS="4000000", COLORIZER_MAX_ACTIVE_PIXELS="4000000"
    )
    held = hold_uploads(server.url, [gray_png(1250, 2000)] * 3)
    for h in held:
        h.release()
    answers = [h.answer() for h in held]
    assert [status for status, _, _ in answers] == [200] * 3, [body[:200] for _, _, body in answers]
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert metric(text, "colorizer_admission_wait_seconds_count") == 3
    started_at_once = metric(text, 'colorizer_admission_wait_seconds_bucket{le="0.01"}')
    assert started_at_once == 1, f"{started_at_once:.0f} of 3 started within 10 ms: the pixel budget did not hold"
    assert metric(text, "colorizer_active_pixels") == 0
