"""Shared fixtures: real uvicorn servers on free ports, running the real model, and real test images."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

pytest_plugins = ["tests.browser"]  # the `browser` fixture of the browser tests

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "colorizer.onnx"


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
    """Start ``uvicorn app.main:app`` in a subprocess (serving the ``app/`` under ``cwd``) and wait until /readyz
    answers 200."""
    port = free_port()
    log_path = tmp / f"server-{port}.log"
    full_env = {**os.environ, "COLORIZER_MODEL_PATH": str(MODEL), "COLORIZER_PROVIDERS": "cpu", **(env or {})}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        full_env.get("COLORIZER_DRAIN_TIMEOUT_S", "30"),
    ]
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


def decode_png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "response is not a decodable image"
    return img


def colourfulness(bgr: np.ndarray) -> float:
    """Mean chroma in Lab units: 0 for a gray image."""
    lab = cv2.cvtColor(bgr[:, :, :3].astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    return float(np.hypot(lab[:, :, 1], lab[:, :, 2]).mean())
