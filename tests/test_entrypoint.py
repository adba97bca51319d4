"""`colorizer serve`, the Dockerfile's command, started as the image starts it: the console script, settings from
COLORIZER_* variables. (Every other end-to-end server is started through the same CLI by tests/conftest.py, with
--host and --port flags.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL, ROOT, decode_png, free_port, gray_png, hold_uploads, wait_until

COLORIZER = Path(sys.executable).parent / "colorizer"  # the console script pip installed (app.cli:main)


def serve(tmp_path: Path, host: str, **settings: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`colorizer serve` as the image runs it, on ``host`` and a free port, with these COLORIZER_* settings:
    (the process, its URL, its log file)."""
    if not COLORIZER.exists():
        pytest.fail(f"{COLORIZER} is missing: install the project (`make setup-dev`) so the console script exists")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # this checkout's app/, whichever one the venv was installed from
        "COLORIZER_MODEL_PATH": str(MODEL),
        "COLORIZER_PROVIDERS": "cpu",
        "COLORIZER_HOST": host,
        "COLORIZER_PORT": str(port),
        **{f"COLORIZER_{k.upper()}": v for k, v in settings.items()},
    }
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(COLORIZER), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://{host}:{port}", log_path


def test_colorizer_serve_takes_host_port_and_drain_timeout_from_the_environment(tmp_path: Path) -> None:
    """Host and port: it listens on COLORIZER_HOST:COLORIZER_PORT (127.0.0.2, so a server that ignored the host and
    bound 127.0.0.1 or 0.0.0.0 is caught). Drain timeout: a request that never finishes arriving is held in flight
    when SIGTERM lands; with COLORIZER_DRAIN_TIMEOUT_S=0.5 the process gives up on it and exits. Without the setting
    reaching uvicorn (or rounded down to 0, which uvicorn reads as 'wait for ever') it would never exit."""
    process, url, log_path = serve(tmp_path, "127.0.0.2", drain_timeout_s="0.5")
    port = url.rsplit(":", 1)[1]

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 90, "colorizer serve ready on 127.0.0.2")
        assert httpx.post(url + "/colorize", files={"file": ("a.png", gray_png(32, 48))}, timeout=60).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # bound to the host asked for, not all

        (held,) = hold_uploads(url, [gray_png(64, 64)])  # never released: in flight until the drain gives up
        wait_until(held.received, 60, "the held request read by the server")  # else uvicorn closes it as idle
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        held.sock.close()
        log = log_path.read_text()
        assert "SIGTERM: draining" in log
        assert "timeout graceful shutdown exceeded" in log, log[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_drain_delay_answers_readyz_503_while_serving_on_then_drains_what_it_accepted(tmp_path: Path) -> None:
    """COLORIZER_DRAIN_DELAY_S: after SIGTERM /readyz says 503 (so a load balancer stops routing here) while requests
    are still served, those in flight included; a second SIGTERM drains at once: the listener closes, new
    connections are refused, and what was accepted still gets its 200. The delay is long (600 s) and ended by the
    second signal, so nothing here depends on how fast the machine is."""
    process, url, log_path = serve(tmp_path, "127.0.0.1", drain_delay_s="600", drain_timeout_s="120")

    def readyz() -> int:
        assert process.poll() is None, log_path.read_text()
        try:
            return httpx.get(url + "/readyz", timeout=10).status_code
        except httpx.TransportError:
            return 0

    def refused() -> bool:
        try:
            httpx.get(url + "/healthz", timeout=10)
        except httpx.ConnectError:
            return True
        except httpx.RemoteProtocolError:  # accepted just as the listener closed, then dropped unanswered: poll on
            return False
        return False

    try:
        wait_until(lambda: readyz() == 200, 90, "colorizer serve ready")
        early, late = hold_uploads(url, [gray_png(64, 64), gray_png(48, 64)])  # in flight across the signals
        wait_until(lambda: early.received() and late.received(), 60, "both held requests read by the server")
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: readyz() == 503, 60, "/readyz 503 after SIGTERM")
        assert httpx.get(url + "/readyz", timeout=10).json()["code"] == "draining"
        # Still serving during the delay: a request routed here before the balancer noticed gets its answer.
        assert httpx.post(url + "/colorize", files={"file": ("a.png", gray_png(32, 48))}, timeout=60).status_code == 200
        early.release()
        assert early.answer()[0] == 200
        process.send_signal(signal.SIGTERM)  # the second: drain now
        wait_until(refused, 60, "the listener closed on the second SIGTERM")
        assert process.poll() is None  # still draining: one request is in flight
        late.release()
        status, _, body = late.answer()
        assert status == 200
        assert decode_png(body).shape[:2] == (48, 64)
        assert process.wait(120) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        log = log_path.read_text()
        assert "serving on for 600 s (COLORIZER_DRAIN_DELAY_S)" in log
        assert "timeout graceful shutdown exceeded" not in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_dockerfile_runs_colorizer_serve() -> None:
    """What the test above starts is what the image runs."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["colorizer", "serve"]' in dockerfile
    assert "COLORIZER_HOST=0.0.0.0" in dockerfile
