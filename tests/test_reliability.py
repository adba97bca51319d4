"""Reliability and security on real servers: model faults, overload, clients that vanish or trickle, temp files,
CORS and API keys, and a small soak. docs/RELIABILITY.md has the reasoning and the long-run figures."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from app.batcher import DynamicBatcher
from app.config import Settings
from app.guidance import ModelHints
from app.http_errors import ApiError
from app.main import create_app
from app.metrics import Metrics
from app.upload import BodyLimitMiddleware
from bench.soak import proc, queue_depth, soak
from tests.conftest import (
    Server,
    free_port,
    gauge,
    gray_png,
    hold_uploads,
    launch,
    metric,
    multipart,
    noise_png,
    open_files_under,
    wait_until,
)

ALLOWED = "https://photos.example"  # the origin CORS is configured for, wherever a test needs one


@contextmanager
def served(app: ASGIApp, timeout: float, **config: Any) -> Iterator[str]:
    """``app`` served by a real uvicorn in a thread on a free loopback port, for as long as the block runs."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout, "uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def open_request(
    url: str, path: str, content_type: str, length: int, headers: dict[str, str] | None = None
) -> socket.socket:
    """A raw HTTP/1.1 request with its headers sent and its body not yet: the caller sends (or does not)."""
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: {content_type}\r\nContent-Length: {length}"
    head += "".join(f"\r\n{k}: {v}" for k, v in (headers or {}).items())
    sock.sendall((head + "\r\n\r\n").encode())
    return sock


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


# ---- a model run that raises ----------------------------------------------------------------------------------


def white_fails_model(path: Path, size: int = 8) -> None:
    """A tiny model with the real contract (L in, ab out, metadata) whose run fails when a batch is all white.

    ab is zero; the output is reshaped to (-1, 2, S, S + k) where k = 1 for an all-white batch, which no batch of
    fewer than nine images fills: ONNX Runtime raises, exactly as a real kernel fault would reach the batcher.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value, name)

    nodes = [
        helper.make_node("Concat", ["L", "L"], ["LL"], axis=1),  # (N, 2, S, S)
        helper.make_node("Mul", ["LL", "zero"], ["zeros"]),
        helper.make_node("ReduceMin", ["L"], ["darkest"], keepdims=0),  # () over the whole batch
        helper.make_node("Greater", ["darkest", "almost_white"], ["all_white"]),
        helper.make_node("Cast", ["all_white"], ["k"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["k", "one"], ["k1"]),  # (1,)
        helper.make_node("Add", ["last", "k1"], ["last_k"]),
        helper.make_node("Concat", ["head", "last_k"], ["shape"], axis=0),  # (-1, 2, S, S + k)
        helper.make_node("Reshape", ["zeros", "shape"], ["ab"]),
    ]
    initializers = [
        const("zero", np.array(0, np.float32)),
        const("almost_white", np.array(99.5, np.float32)),
        const("one", np.array([1], np.int64)),
        const("last", np.array([size], np.int64)),
        const("head", np.array([-1, 2, size], np.int64)),
    ]
    graph = helper.make_graph(
        nodes,
        "white-fails",
        [helper.make_tensor_value_info("L", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["N", 2, size, size])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(
        model,
        {
            "colorizer.input_size": str(size),
            "colorizer.version": "white-fails",
            "colorizer.architecture": "test-fault",
            "colorizer.trained_on": "nothing",
        },
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real service on white_fails_model, one image a batch: a white upload makes its own model run fail."""
    root = tmp_path_factory.mktemp("fault")
    white_fails_model(root / "white-fails.onnx")
    server = launch(
        root,
        {
            "COLORIZER_MODEL_PATH": str(root / "white-fails.onnx"),
            "COLORIZER_MAX_BATCH_SIZE": "1",
            "COLORIZER_MAX_IN_FLIGHT": "16",  # all five requests admitted, so each answer is about its own run
            "COLORIZER_CORS_ORIGINS": ALLOWED,
        },
    )
    yield server
    server.terminate()


WHITE = cv2.imencode(".png", np.full((16, 16), 255, np.uint8))[1].tobytes()


def model_failures(server: Server) -> list[str]:
    return [line for line in server.log().splitlines() if "model run failed" in line]


def test_a_model_run_that_raises_fails_only_its_batch_and_the_service_recovers(fault_server: Server) -> None:
    url = fault_server.url
    # The server is shared by this module's tests, which may run in any order: count from here.
    errors_before = gauge(url, 'colorizer_images_total{outcome="error"}')
    failures_before = len(model_failures(fault_server))
    uploads = [(WHITE, "the-white-one")] + [(gray_png(32, 48), f"gray-{i}") for i in range(4)]

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        url + "/colorize",
                        files={"file": ("a.png", body)},
                        headers={"X-Request-ID": rid, "Origin": ALLOWED},
                    )
                    for body, rid in uploads
                )
            )

    white, *grays = asyncio.run(scenario())
    assert (white.status_code, white.json()["code"]) == (500, "model_failed")
    assert set(white.json()) == {"detail", "code"}
    assert white.headers.get("access-control-allow-origin") == ALLOWED  # the page that asked can read the sentence
    assert [r.status_code for r in grays] == [200] * 4
    # Recovered: the next request is served, the service is still ready, nothing is stuck in the queue.
    assert httpx.post(url + "/colorize", files={"file": ("a.png", gray_png(32, 48))}).status_code == 200
    assert httpx.get(url + "/readyz").status_code == 200
    text = httpx.get(url + "/metrics").text
    assert metric(text, "colorizer_queue_depth") == 0
    assert metric(text, "colorizer_images_in_flight") == 0  # every admission slot given back
    assert metric(text, 'colorizer_images_total{outcome="error"}') - errors_before == 1
    # The batcher logs the failed run once, with its request ids (before the 500 is answered).
    failures = model_failures(fault_server)[failures_before:]
    assert len(failures) == 1, failures
    assert "the-white-one" in failures[0]


def test_a_failed_run_answers_with_its_request_id_and_logs_one_traceback(tmp_path: Path) -> None:
    """What a user quotes to support (X-Request-ID) must be on the 500 too; and one fault, one traceback. Its own
    server, stopped before the log is read, so a second traceback logged late would be counted, without a sleep."""
    white_fails_model(tmp_path / "white-fails.onnx")
    server = launch(tmp_path, {"COLORIZER_MODEL_PATH": str(tmp_path / "white-fails.onnx")})
    try:
        r = httpx.post(server.url + "/colorize", files={"file": ("w.png", WHITE)}, headers={"X-Request-ID": "w-2"})
        assert (r.status_code, r.json()["code"]) == (500, "model_failed")
        assert r.headers.get("x-request-id") == "w-2"
    finally:
        server.terminate()
    assert server.log().count("Traceback") == 1, server.log()[-3000:]


def test_an_unexpected_error_answers_json_with_its_request_id_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug no handler knows must still leave as our JSON 500, through our middleware (request id, CORS) and with
    one traceback in the log, and the server must go on serving. The real app, with one extra route that fails."""
    origin = "https://photos.example"
    app = create_app(Settings(cors_origins=origin))

    @app.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError("a bug nobody has written a handler for")

    with caplog.at_level(logging.ERROR):
        with served(app, 60, log_config=None) as url:  # no logging config: uvicorn's records reach caplog too
            r = httpx.get(url + "/test-only/boom", headers={"X-Request-ID": "bug-1", "Origin": origin}, timeout=30)
            assert r.status_code == 500
            assert r.json() == {
                "detail": "the server failed on this request; it has been logged",
                "code": "internal_error",
            }
            assert r.headers.get("x-request-id") == "bug-1"
            assert r.headers.get("access-control-allow-origin") == origin
            assert httpx.post(url + "/colorize", files={"file": ("a.png", gray_png())}, timeout=60).status_code == 200
            metrics = httpx.get(url + "/metrics").text
            assert 'colorizer_errors_total{code="internal_error",status="500"} 1.0' in metrics
        # The server has stopped (served() joined its thread): anything it was going to log about the bug, it has.
        assert len([rec for rec in caplog.records if rec.exc_info]) == 1


async def test_a_failed_run_is_logged_once_with_every_request_id(caplog: pytest.LogCaptureFixture) -> None:
    """The batcher's side of the contract above, with several requests in the failing batch (a fake runner:
    tests/test_batcher.py covers the fan-out; this covers the log line and a runner that loses an output)."""
    runs = 0

    def runner(batch: np.ndarray, hints: list[ModelHints | None]) -> np.ndarray:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if runs == 2:
            return np.zeros((len(batch) - 1, 2, 4, 4), np.float32)  # one output short: must not be handed out
        return np.zeros((len(batch), 2, 4, 4), np.float32)

    metrics = Metrics()
    batcher = DynamicBatcher(runner, metrics, max_batch_size=3, max_delay_s=0.05, max_queue=16)
    batcher.start()
    caplog.set_level(logging.ERROR, logger="app.batcher")
    for round_ in ("a", "b"):
        futures = [batcher.submit(np.zeros((1, 4, 4), np.float32), f"{round_}{i}") for i in range(3)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results), results
    ok = await asyncio.gather(*(batcher.submit(np.zeros((1, 4, 4), np.float32), f"c{i}") for i in range(3)))
    assert [r.shape for r in ok] == [(2, 4, 4)] * 3
    failures = [r.getMessage() for r in caplog.records if "model run failed" in r.getMessage()]
    assert len(failures) == 2  # one line per failed run, not one per request
    assert all(rid in failures[0] for rid in ("a0", "a1", "a2"))
    assert all(rid in failures[1] for rid in ("b0", "b1", "b2"))
    assert batcher.depth == 0
    await batcher.stop()


# ---- overload --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_four_times_capacity_sheds_with_503_and_every_request_gets_one_answer(
    start_server: Callable[..., Server],
) -> None:
    queue, in_flight = 4, 2
    server = start_server(
        COLORIZER_MAX_QUEUE=str(queue),
        COLORIZER_MAX_IN_FLIGHT=str(in_flight),
        COLORIZER_MAX_BATCH_SIZE="2",
        COLORIZER_MAX_BATCH_DELAY_MS="0",
    )
    peak_before = proc(server.process.pid)["peak_rss_mb"]
    offered = 4 * (queue + in_flight)  # four times what the server can hold: the line plus the images in flight
    # Held at their last byte and released together, the uploads arrive in the same few milliseconds: far faster
    # than a 2-Mpx image is colourised, so the line is full long before the 24th, on any machine.
    held = hold_uploads(server.url, [gray_png(1200, 1600)] * offered)
    health: list[int] = []
    with ThreadPoolExecutor(offered) as pool:
        for h in held:
            h.release()
        futures = [pool.submit(h.answer) for h in held]
        while not all(f.done() for f in futures):  # liveness probed while the answers come
            health.append(httpx.get(server.url + "/healthz", timeout=60).status_code)
            time.sleep(0.05)
        answers = [f.result() for f in futures]
    health.append(httpx.get(server.url + "/healthz", timeout=60).status_code)
    statuses = sorted(status for status, _, _ in answers)  # every request got an answer...
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= queue + in_flight  # the places and the line filled, and each of those was served
    for status, headers, body in answers:
        if status == 503:
            assert json.loads(body)["code"] == "overloaded"
            assert headers["retry-after"].isdigit()
    text = httpx.get(server.url + "/metrics").text
    counted = sum(metric(text, f'colorizer_images_total{{outcome="{o}"}}') for o in ("ok", "rejected", "error"))
    assert counted == offered  # ...and exactly one: the server counted one outcome per request
    assert metric(text, 'colorizer_images_total{outcome="ok"}') == statuses.count(200)
    assert metric(text, "colorizer_queue_depth") == 0
    assert metric(text, "colorizer_images_in_flight") == 0  # every admission slot given back
    assert set(health) == {200}  # liveness answered under the load
    growth = proc(server.process.pid)["peak_rss_mb"] - peak_before
    assert growth < 400, f"peak memory grew {growth:.0f} MB under overload"


# ---- clients that vanish, temp files ---------------------------------------------------------------------------


@dataclass
class Private:
    """A server with its own TMPDIR, so every temp file it makes can be seen (and must be gone afterwards)."""

    server: Server
    tmpdir: Path
    at_start: list[Path]  # ONNX Runtime writes $TMPDIR/.ses (its telemetry SDK's session id) when it loads

    def new_files(self) -> list[Path]:
        return [p for p in self.tmpdir.rglob("*") if not p.is_dir() and p not in self.at_start]


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    root = tmp_path_factory.mktemp("private")
    tmpdir = root / "tmp"
    tmpdir.mkdir(mode=0o700)
    server = launch(root, {"TMPDIR": str(tmpdir), "COLORIZER_MAX_IN_FLIGHT": "16"})  # the warm-up's 13 at once
    yield Private(server, tmpdir, [p for p in tmpdir.rglob("*") if not p.is_dir()])
    server.terminate()


def temp_fds(pid: int, tmpdir: Path) -> list[str]:
    return open_files_under(pid, tmpdir)


def test_spooled_uploads_are_private_and_removed(private_server: Private) -> None:
    server, tmpdir = private_server.server, private_server.tmpdir
    pid = server.process.pid
    body, ctype = multipart("file", "big.png", noise_png(1600, 1800))  # ~2.9 MB: spooled to disk past 1 MB
    with open_request(server.url, "/colorize", ctype, len(body)) as sock:
        sock.sendall(body[: len(body) * 2 // 3])
        wait_until(lambda: bool(temp_fds(pid, tmpdir)), 30, "a spooled temp file")
        modes = {stat.S_IMODE(os.stat(fd).st_mode) for fd in temp_fds(pid, tmpdir)}
        assert modes == {0o600}, [oct(m) for m in modes]
        assert private_server.new_files() == []  # unlinked from the start: no name another process could open
        sock.sendall(body[len(body) * 2 // 3 :])
        assert read_all(sock).startswith(b"HTTP/1.1 200")
    wait_until(lambda: not temp_fds(pid, tmpdir), 10, "the temp file closed")
    assert private_server.new_files() == []


def start_then_vanish(url: str, body: bytes, ctype: str, send: int, read: int = 0) -> None:
    """Send the headers and ``send`` bytes of the body, read ``read`` bytes of the answer, then drop the socket."""
    with open_request(url, "/colorize", ctype, len(body)) as sock:
        sock.sendall(body[:send])
        if read:
            sock.recv(read)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST: a dead client


@pytest.mark.slow
def test_clients_that_vanish_mid_upload_or_mid_response_leak_nothing(private_server: Private) -> None:
    server, tmpdir = private_server.server, private_server.tmpdir
    pid = server.process.pid
    small = gray_png(240, 320)

    big = noise_png(1600, 1800)

    async def warm_up() -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            posts = [client.post(server.url + "/colorize", files={"file": ("a.png", small)}) for _ in range(12)]
            posts.append(client.post(server.url + "/colorize", files={"file": ("big.png", big)}))
            assert {r.status_code for r in await asyncio.gather(*posts)} == {200}

    spooled, spooled_type = multipart("file", "big.png", big)

    def vanish(rounds: int) -> None:
        for _ in range(rounds):
            start_then_vanish(server.url, spooled, spooled_type, send=len(spooled) // 2)  # mid-upload, spooled
            start_then_vanish(server.url, big, "image/png", send=len(big) // 2)  # mid-upload, raw body
            start_then_vanish(server.url, big, "image/png", send=len(big))  # whole upload, gone before the answer
            start_then_vanish(server.url, *multipart("file", "a.png", small), send=10**9)  # small, gone too
        for _ in range(rounds // 2):
            start_then_vanish(server.url, big, "image/png", send=len(big), read=100)  # mid-response

    def settled() -> None:
        wait_until(lambda: queue_depth(server.url) == 0, 60, "the queue drained")
        wait_until(lambda: gauge(server.url, "colorizer_images_in_flight") == 0, 60, "every admission slot given back")
        wait_until(lambda: not temp_fds(pid, tmpdir), 30, "spooled uploads closed")

    # The baseline is the steady state after the same kind of traffic: every pool started (ours, anyio's worker
    # threads, OpenCV's, which starts on the first image big enough to split), arenas allocated. anyio keeps idle
    # workers for 10 s and retires them only when next given work, so counting after a wait would be a bet on its
    # timer; instead the second pass sends twice as many vanishing clients, which a per-client leak would show.
    asyncio.run(warm_up())
    vanish(3)
    settled()
    baseline = proc(pid)
    disconnects = gauge(server.url, 'colorizer_errors_total{code="client_disconnected",status="499"}')

    vanish(6)
    settled()
    wait_until(lambda: proc(pid)["fds"] <= baseline["fds"], 30, f"open files back to {baseline['fds']:.0f}")
    # Two threads of slack for anyio's pool, which may meet an overlap it did not meet before; a thread per vanished
    # client would be 27 more.
    wait_until(lambda: proc(pid)["threads"] <= baseline["threads"] + 2, 30, f"threads at {baseline['threads']:.0f}")
    assert private_server.new_files() == []
    log = server.log()
    assert "Traceback" not in log, log[-3000:]  # a vanished client is not a server error
    text = httpx.get(server.url + "/metrics").text
    assert metric(text, 'colorizer_errors_total{code="internal_error",status="500"}') == 0
    # Counted as such: at least the twelve that hung up mid-upload in the second pass.
    assert metric(text, 'colorizer_errors_total{code="client_disconnected",status="499"}') - disconnects >= 12


@pytest.mark.slow
def test_small_soak_answers_every_request_as_documented_and_returns_to_baseline(
    private_server: Private,
) -> None:
    """300 of bench/soak.py's mixed requests (the 10,000-request run is in docs/RELIABILITY.md)."""
    server = private_server.server
    result = asyncio.run(soak(server.url, server.process.pid, 300, 4, sizes=((64, 64), (240, 320)), pause=1.0))
    assert result["unexpected_examples"] == []
    assert result["transport_errors"] == 0
    assert result["server_errors"] == 0
    assert result["queue_depth_at_end"] == 0
    assert result["at_end"]["fds"] <= result["after_warmup"]["fds"]
    assert private_server.new_files() == []


# ---- slow uploaders --------------------------------------------------------------------------------------------


@pytest.fixture
def guarded_echo() -> Iterator[str]:
    """BodyLimitMiddleware (1 s body deadline, 10 kB limit) around a tiny app, served by a real uvicorn."""

    async def echo(request: Request) -> Response:
        return JSONResponse({"bytes": len(await request.body())})

    async def slow_answer(request: Request) -> Response:
        await request.body()

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                await asyncio.sleep(0.5)
                yield b"x" * 10

        return StreamingResponse(chunks())

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), exc.status, exc.headers)

    inner = Starlette(
        routes=[Route("/echo", echo, methods=["POST"]), Route("/slow-answer", slow_answer, methods=["POST"])],
        exception_handlers={ApiError: api_error},
    )
    app = BodyLimitMiddleware(inner, max_bytes=10_000, read_timeout_s=1.0)
    with served(app, 10, log_level="warning") as url:
        yield url


def test_a_trickling_upload_gets_408_at_the_body_deadline(guarded_echo: str) -> None:
    """One byte every 0.1 s of a declared 1000: the body can never finish in time, so only the deadline ends it."""
    answer = b""
    with open_request(guarded_echo, "/echo", "image/png", 1000) as sock:
        sock.settimeout(0.1)
        for _ in range(200):
            try:
                sock.sendall(b"x")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        sock.settimeout(10)
        answer += read_all(sock)  # the rest, until the server closes the connection
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"upload_timeout"' in answer
    assert b"connection: close" in answer.lower()


def test_the_body_deadline_spares_prompt_uploads_and_slow_answers(guarded_echo: str) -> None:
    r = httpx.post(guarded_echo + "/echo", content=b"x" * 5000)
    assert r.json() == {"bytes": 5000}
    r = httpx.post(guarded_echo + "/slow-answer", content=b"x" * 10, timeout=10)  # streams for 2 s > 1 s deadline
    assert r.content == b"x" * 40
    r = httpx.post(guarded_echo + "/echo", content=iter([b"x" * 6000, b"x" * 6000]))  # chunked, over the limit
    assert (r.status_code, r.json()["code"]) == (413, "upload_too_large")


def test_the_service_answers_a_slowloris_with_408(start_server: Callable[..., Server]) -> None:
    """The whole service; with CORS on, the 408 carries the header, so the page that asked can show the sentence."""
    server = start_server(COLORIZER_BODY_READ_TIMEOUT_S="1", COLORIZER_CORS_ORIGINS=ALLOWED)
    with open_request(server.url, "/colorize", "image/png", 1000, {"Origin": ALLOWED}) as sock:
        sock.settimeout(15)
        sock.sendall(b"\x89PNG")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"COLORIZER_BODY_READ_TIMEOUT_S" in answer
    assert f"access-control-allow-origin: {ALLOWED}".encode() in answer.lower()


# ---- CORS and API keys -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = launch(
        tmp_path_factory.mktemp("guarded"),
        {
            "COLORIZER_CORS_ORIGINS": ALLOWED,
            "COLORIZER_API_KEYS": "key-one,key-two",
            "COLORIZER_MAX_UPLOAD_BYTES": "100000",
        },
    )
    yield server
    server.terminate()


KEY = {"Authorization": "Bearer key-two"}


def test_cors_allows_the_listed_origin_and_no_other(guarded_server: Server) -> None:
    url = guarded_server.url
    r = httpx.post(url + "/colorize", files={"file": ("a.png", gray_png(32, 48))}, headers={"Origin": ALLOWED, **KEY})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    r = httpx.post(
        url + "/colorize",
        files={"file": ("a.png", gray_png(32, 48))},
        headers={"Origin": "https://evil.example", **KEY},
    )
    assert "access-control-allow-origin" not in r.headers  # the browser will not hand the answer to that page
    # A preflight needs no key (browsers never send one) and is answered for the listed origin only.
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    r = httpx.options(url + "/colorize", headers={"Origin": ALLOWED, **preflight})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    r = httpx.options(url + "/colorize", headers={"Origin": "https://evil.example", **preflight})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_a_refused_upload_still_carries_cors_headers(guarded_server: Server) -> None:
    """Otherwise the page sees an opaque network error instead of the 413's sentence."""
    r = httpx.post(
        guarded_server.url + "/colorize",
        content=b"\0" * 200_000,
        headers={"Origin": ALLOWED, "Content-Type": "image/png", **KEY},
    )
    assert r.status_code == 413
    assert r.headers.get("access-control-allow-origin") == ALLOWED


def test_every_route_that_does_work_needs_the_key(guarded_server: Server) -> None:
    """Read from the live OpenAPI schema, so a route added later without the dependency fails here."""
    schema = httpx.get(guarded_server.url + "/openapi.json").json()
    open_by_design = {"/healthz", "/readyz", "/metrics", "/model", "/"}
    checked = []
    for path, operations in schema["paths"].items():
        if path in open_by_design:
            continue
        for method in operations:
            concrete = path.replace("{job_id}", "0" * 32)
            r = httpx.request(method.upper(), guarded_server.url + concrete)
            assert (r.status_code, r.json()["code"]) == (401, "missing_api_key"), (method, path)
            assert r.headers["www-authenticate"] == "Bearer"
            checked.append(f"{method.upper()} {path}")
    assert len(checked) >= 6, checked
    for header in ("Bearer", "Basic a2V5LXR3bw==", "key-two"):
        r = httpx.post(guarded_server.url + "/colorize", headers={"Authorization": header})
        assert r.status_code == 401, header
    for wrong in ("key-twox", "key-tw", "KEY-TWO", "key-one,key-two"):
        r = httpx.post(guarded_server.url + "/colorize", headers={"Authorization": f"Bearer {wrong}"})
        assert r.status_code == 403, wrong
