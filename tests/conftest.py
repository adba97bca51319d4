"""Shared fixtures: real servers on free ports, started as production starts them (`colorizer serve`, the Dockerfile's
command), running the real model; helpers to hold uploads at their last byte and to wait on conditions; real test
images."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest

from bench import rawhttp

pytest_plugins = ["tests.browser"]  # the `browser` fixture of the browser tests

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "colorizer.onnx"
# Every test serves the fp32 file unless it says otherwise: with "auto" a CPU with VNNI would serve the int8 file
# beside it and the same test would check a different model on another machine. tests/test_precision.py covers int8.
os.environ.setdefault("COLORIZER_PRECISION", "fp32")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def launch(tmp: Path, env: dict[str, str] | None = None, ready_timeout: float = 60, cwd: Path = ROOT) -> Server:
    """Start ``colorizer serve`` (``app/cli.py``, the Dockerfile's command; the ``app/`` under ``cwd``) in a subprocess
    and wait until /readyz answers 200. Host, port and the drain timeout come from the CLI, as in production."""
    port = free_port()
    log_path = tmp / f"server-{port}.log"
    full_env = {**os.environ, "COLORIZER_MODEL_PATH": str(MODEL), "COLORIZER_PROVIDERS": "cpu", **(env or {})}
    # `python -m app.cli` is the `colorizer` console script (app.cli:main), but imports the app under `cwd`.
    cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"server not ready in {ready_timeout} s:\n{server.log()}")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for the whole session, default settings, the shipped model."""
    server = launch(tmp_path_factory.mktemp("live"))
    yield server
    server.terminate()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """A factory for servers with their own settings; each is stopped after the test."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        server = launch(tmp_path, env)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` s (a bound for a hung test, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def metric(text: str, name: str) -> float:
    """A sample from /metrics text; 0 when absent (a labelled counter appears at its first increment)."""
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def gauge(url: str, name: str) -> float:
    return metric(httpx.get(url + "/metrics", timeout=30).text, name)


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A one-file multipart body and its Content-Type."""
    boundary = "colorizer-test-boundary-7c1e"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class HeldUpload:
    """A request on its own raw socket, sent but for its last byte: the server has it (headers and almost all of the
    body) and can do nothing with it until ``release()``. That holds a request in flight on purpose, for as long as a
    test needs, without mocking anything; and many released together arrive together."""

    def __init__(self, url: str, request: bytes) -> None:
        where = urlsplit(url)
        self.sock = socket.create_connection((where.hostname, where.port), timeout=120)
        self.sock.sendall(request[:-1])
        self.last = request[-1:]

    def received(self) -> bool:
        """The server has read all that was sent: its end of the connection has nothing left in the kernel's receive
        queue, so uvicorn has parsed the headers and the request is in its hands (in flight, as a drain sees it).
        Read from /proc/net/tcp: a sent request may still sit unread while the server is busy, or not yet accepted."""
        server_port = self.sock.getpeername()[1]
        client_port = self.sock.getsockname()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            _, local, remote, _, queues, *_ = line.split()
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                return int(queues.split(":")[1], 16) == 0
        return False

    def release(self) -> None:
        self.sock.sendall(self.last)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of the answer; the server closes the connection after it."""
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        if headers.get("transfer-encoding") == "chunked":
            body = dechunk(body)
        return int(status_line.split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2 :]
    return out


def hold_uploads(url: str, images: list[bytes], path: str = "/colorize") -> list[HeldUpload]:
    """One held multipart upload per image."""
    requests = (rawhttp.multipart_post(url, path, "file", f"held-{i}.png", data) for i, data in enumerate(images))
    return [HeldUpload(url, request) for request in requests]


def photo_like(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A colour test scene (sky, sun, grass, a red house) as uint8 BGR: real structure, made by code."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    horizon = height * 3 // 5
    rows = np.linspace(0, 1, horizon)[:, None]
    img[:horizon] = np.stack([230 - 60 * rows, 180 - 40 * rows, 120 - 40 * rows], -1).astype(np.uint8)  # sky
    img[horizon:] = (40, 140, 60)  # grass
    noise = rng.integers(-20, 20, (height - horizon, width, 1))
    img[horizon:] = np.clip(img[horizon:].astype(int) + noise, 0, 255).astype(np.uint8)
    cv2.rectangle(img, (width // 5, horizon - height // 4), (width // 2, horizon + 10), (40, 40, 190), -1)
    cv2.circle(img, (width * 4 // 5, height // 5), height // 10, (80, 220, 250), -1)
    return img


def gray_png(height: int = 240, width: int = 320) -> bytes:
    gray = cv2.cvtColor(photo_like(height, width), cv2.COLOR_BGR2GRAY)
    return cv2.imencode(".png", gray)[1].tobytes()


def noise_png(height: int, width: int) -> bytes:
    """Incompressible: a few megabytes, so multipart spools it to a temp file (past 1 MB) and responses are big."""
    noise = np.random.default_rng(height).integers(0, 256, (height, width), dtype=np.uint8)
    return cv2.imencode(".png", noise, [cv2.IMWRITE_PNG_COMPRESSION, 0])[1].tobytes()


def open_files_under(pid: int, folder: Path) -> list[str]:
    """The process's open files under ``folder`` (spooled uploads are unlinked at once: only /proc shows them)."""
    fds = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(str(folder)):
                fds.append(str(fd))
        except FileNotFoundError:
            continue
    return fds


def decode_png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "response is not a decodable image"
    return img


def colourfulness(bgr: np.ndarray) -> float:
    """Mean chroma in Lab units: 0 for a gray image."""
    lab = cv2.cvtColor(bgr[:, :, :3].astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    return float(np.hypot(lab[:, :, 1], lab[:, :, 2]).mean())
