"""Load on real servers over loopback: the service with batching on and off, the naive server, and the model
in-process, side by side in one run, on the same photo-like 512×512 JPEGs; and the service again with the int8
model and with one ONNX Runtime thread per core, at the loads the targets name.

    .venv/bin/python -m bench.load                 # service vs naive vs in-process vs variants (~4 min)
    .venv/bin/python -m bench.load --sweep         # the batching defaults: max batch × delay, threads (~2 min)
    .venv/bin/python -m bench.load --quick         # a smoke test

Every load is closed-loop (each client sends its next request when the last one answers), bounded by a request
count and a time limit, and goes to 127.0.0.1 only. A separate prober thread times /healthz throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.config import Settings
from app.cores import available_cores
from app.pipeline import finish, prepare
from app.runtime import ModelRuntime
from bench import rawhttp
from bench.common import CACHE, INT8_MODEL, MODEL, ROOT, SIZES_MP, photo_jpeg, save, stats
from tests.conftest import free_port

PHOTO_SIDE = 512
CONCURRENCY = (1, 2, 4, 8, 16, 32)
CORES = available_cores()
# (max batch, delay ms, ONNX Runtime intra-op threads; None = the service's default): the batching settings at the
# default thread count, and the default batching with one thread per core.
Config = tuple[int, int, int | None]
SWEEP: tuple[Config, ...] = (
    (1, 0, None),
    (2, 2, None),
    (4, 0, None),
    (4, 2, None),
    (8, 2, None),
    (8, 5, None),
    (16, 5, None),
    (4, 2, CORES),
)

# ---------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def status(self, field: str) -> int:
        """A /proc/<pid>/status field in kB (VmHWM: peak resident memory; VmRSS: resident now)."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        return int(match.group(1)) if match else -1

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    name: str, target: str, env: dict[str, str], ready: str, timeout: float = 120, cwd: Path = ROOT
) -> Server:
    """``uvicorn <target>`` on a free loopback port, one worker, waiting until ``ready`` answers 200. ``cwd``: the
    source tree it imports (another checkout serves another version of the code)."""
    port = free_port()
    CACHE.mkdir(parents=True, exist_ok=True)
    log_path = CACHE / f"server-{name}-{port}.log"
    full_env = {**os.environ, "COLORIZER_PROVIDERS": "cpu", **env}
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(server.url + ready, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} was not ready in {timeout} s; see {log_path}")


def service(env: dict[str, str] | None = None, name: str = "service") -> Server:
    """The service as ``uvicorn app.main:app`` serves it, with the shipped model unless ``env`` names another."""
    # fp32 unless a variant says otherwise: "auto" would serve the int8 file on a CPU with VNNI, and the "service"
    # row would mean a different model on different machines.
    base = {"COLORIZER_MODEL_PATH": str(MODEL), "COLORIZER_PRECISION": "fp32"}
    return start_server(name, "app.main:app", base | (env or {}), "/readyz")


def variants() -> dict[str, dict[str, str]]:
    """The service's other configurations, by name and environment: the int8 model (where bench.quantize has
    written it), one ONNX Runtime thread per core (to set the default thread count beside), two images in flight
    per core instead of one (throughput against tail latency), and a queueing admission (64 in flight: batches
    form, latency grows with the queue)."""
    out: dict[str, dict[str, str]] = {
        f"inflight{2 * CORES}": {"COLORIZER_MAX_IN_FLIGHT": str(2 * CORES)},
        "queueing": {"COLORIZER_MAX_IN_FLIGHT": "64"},
    }
    if INT8_MODEL.exists():
        out["int8"] = {"COLORIZER_PRECISION": "int8"}  # the file beside the model, as the service picks it
    if CORES > 1:
        out[f"threads{CORES}"] = {"COLORIZER_INTRA_OP_THREADS": str(CORES)}
    return out


def naive() -> Server:
    return start_server("naive", "bench.naive_server:app", {"COLORIZER_MODEL_PATH": str(MODEL)}, "/healthz")


def batch_histogram(url: str) -> tuple[float, float]:
    """(sum, count) of colorizer_batch_size from /metrics; (0, 0) where the server has no such metric."""
    try:
        text = httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0, 0.0
    total = re.search(r"^colorizer_batch_size_sum\s+(\S+)", text, re.M)
    count = re.search(r"^colorizer_batch_size_count\s+(\S+)", text, re.M)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


# ---------------------------------------------------------------- load


class HealthProber(threading.Thread):
    """GET /healthz every ``interval`` seconds on its own connection, in its own thread, until stopped."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.host, self.port = url.removeprefix("http://").split(":")
        self.interval = interval
        self.latencies: list[float] = []
        self.failures = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
        while not self._stop_event.is_set():
            t = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.latencies.append(time.perf_counter() - t)
                else:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
            self._stop_event.wait(self.interval)
        conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


async def closed_loop(
    url: str, payloads: list[bytes], concurrency: int, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    """``concurrency`` clients, each sending its next photo when the previous answer arrived. Requests are built
    once and sent over raw sockets (bench/rawhttp.py), so the client takes little of the CPU it shares with the
    server under test: httpx spent a few ms of Python per request, a tenth of a core at 30 requests/s."""
    requests = [rawhttp.multipart_post(url, "/colorize", "file", "photo.jpg", p) for p in payloads]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    counter = itertools.count()

    async def one(request: bytes) -> None:
        """One photo, as a well-behaved client sends it: a 503 is retried after its Retry-After, and the latency
        counts from the first attempt."""
        t = time.perf_counter()
        while True:
            status, _, headers = await rawhttp.timed(url, request)
            statuses[str(status)] += 1  # "0": the connection failed, broke off or timed out
            if not status:
                return
            if status != 503 or time.perf_counter() > deadline:
                break
            await asyncio.sleep(float(headers.get("retry-after", "1")))
        if status == 200:
            latencies.append(time.perf_counter() - t)

    deadline = time.perf_counter() + 60
    await asyncio.gather(*(one(requests[i % len(requests)]) for i in range(min(concurrency, 4))))  # warm-up
    started = time.perf_counter()
    deadline = started + max_seconds

    async def client_loop() -> None:
        while (n := next(counter)) < max_requests and time.perf_counter() < deadline:
            await one(requests[n % len(requests)])

    statuses.clear()
    latencies.clear()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ok, shed = statuses.get("200", 0), statuses.get("503", 0)
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": ok,
        "shed": shed,  # 503 + Retry-After, retried: the admission bound at work, not a failure
        "errors": sum(statuses.values()) - ok - shed,
        "statuses": dict(statuses),
        "seconds": elapsed,
        "images_per_s": ok / elapsed,
        **stats(latencies),
    }


def measure(server: Server, payloads: list[bytes], concurrency: int, max_requests: int, max_seconds: float) -> dict:
    """One closed-loop load with the /healthz prober running, and the mean batch size the server formed."""
    before = batch_histogram(server.url)
    prober = HealthProber(server.url)
    prober.start()
    try:
        row = asyncio.run(closed_loop(server.url, payloads, concurrency, max_requests, max_seconds))
    finally:
        prober.stop()
    after = batch_histogram(server.url)
    runs = after[1] - before[1]
    row["mean_batch"] = (after[0] - before[0]) / runs if runs else None
    row["healthz"] = {**stats(prober.latencies), "failures": prober.failures}
    row["server"] = server.name
    print(
        f"{server.name:>16} c={concurrency:>2}: {row['images_per_s']:6.1f} img/s  p50 {row['p50_ms']:7.1f}  "
        f"p95 {row['p95_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  shed {row['shed']}  errors {row['errors']}  "
        f"batch {row['mean_batch'] or 0:4.2f}  healthz p99 {row['healthz']['p99_ms']:6.1f} ms"
    )
    return row


def large_photo(server: Server, data: bytes, max_requests: int, max_seconds: float) -> dict[str, Any]:
    """One client, one 12 MP JPEG after another: end-to-end latency, and the server's peak memory for it
    (VmHWM after the first large request minus VmHWM before it, on a server that had served only small photos)."""
    hwm_before, rss_before = server.status("VmHWM"), server.status("VmRSS")
    latencies: list[float] = []
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=300) as client:
        while len(latencies) < max_requests and (not latencies or time.perf_counter() - started < max_seconds):
            t = time.perf_counter()
            r = client.post("/colorize", files={"file": ("large.jpg", data, "image/jpeg")})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t)
            if len(latencies) == 1:
                hwm_first = server.status("VmHWM")
                png_bytes = len(r.content)
    row = {
        "server": server.name,
        **stats(latencies),
        "png_bytes": png_bytes,
        "jpeg_bytes": len(data),
        "vmhwm_before_mb": hwm_before / 1024,
        "vmrss_before_mb": rss_before / 1024,
        "vmhwm_after_first_mb": hwm_first / 1024,
        "peak_extra_mb": (hwm_first - hwm_before) / 1024,
    }
    print(
        f"{server.name:>16} 12 MP: p50 {row['p50_ms']:.0f} ms over {row['n']} requests; "
        f"peak RSS +{row['peak_extra_mb']:.0f} MB ({row['vmhwm_before_mb']:.0f} -> {row['vmhwm_after_first_mb']:.0f})"
    )
    return row


def in_process(model: Path, payloads: list[bytes], batch: int, seconds: float, variant: str = "fp32") -> dict[str, Any]:
    """The bare model's ceiling for this service: in one process, no HTTP, no queue: prepare each photo, run the
    model on batches, finish each (join + PNG), one step after another, with the service's settings (threads, PNG
    level)."""
    settings = Settings(model_path=model, providers="cpu")
    runtime = ModelRuntime.from_settings(settings, available_cores())
    size = runtime.info.input_size
    runtime.run(np.full((batch, 1, size, size), 50, np.float32))
    images = 0
    started = time.perf_counter()
    for i in itertools.count():
        chunk = [payloads[(i * batch + k) % len(payloads)] for k in range(batch)]
        prepared = [prepare(data, size, settings.max_pixels) for data in chunk]
        ab = runtime.run(np.stack([p.small_l for p in prepared]))  # (N, 2, h, w)
        for p, one in zip(prepared, ab, strict=True):
            finish(p, one, "png", settings.png_compression)
        images += batch
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    row = {
        "model": model.name,
        "variant": variant,
        "batch": batch,
        "threads": runtime.intra_op_threads,
        "png_compression": settings.png_compression,
        "images": images,
        "seconds": elapsed,
        "images_per_s": images / elapsed,
    }
    print(f"in-process {model.name} batch={batch} threads={row['threads']}: {row['images_per_s']:.1f} img/s")
    return row


# ---------------------------------------------------------------- the run


def compare(
    levels: list[int], payloads: list[bytes], large: bytes, max_requests: int, seconds: float, n_large: int
) -> dict[str, Any]:
    """The service (batching on and off), its variants, the naive server and the model in-process, side by side."""
    result: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    others = variants()
    result["in_process"] = [in_process(MODEL, payloads, b, seconds / 2) for b in (1, 4)]
    if "int8" in others:
        result["in_process"].append(in_process(INT8_MODEL, payloads, 4, seconds / 2, "int8"))
    for name, env in (("service", {}), ("service-nobatch", {"COLORIZER_MAX_BATCH_SIZE": "1"})):
        server = service(env, name)
        try:
            runs += [measure(server, payloads, c, max_requests, seconds) for c in levels]
            if name == "service":
                result["large_service"] = large_photo(server, large, n_large, 60)
        finally:
            server.stop()
    for variant, env in others.items():  # only at the load levels the targets name
        server = service(env, f"service-{variant}")
        try:
            runs += [measure(server, payloads, c, max_requests, seconds) for c in (4, 8) if c in levels]
            result[f"large_service-{variant}"] = large_photo(server, large, max(1, n_large // 2), 30)
        finally:
            server.stop()
    server = naive()
    try:
        runs += [measure(server, payloads, c, max_requests, seconds) for c in levels]
        result["large_naive"] = large_photo(server, large, n_large, 90)
    finally:
        server.stop()
    return {**result, "runs": runs}


def sweep_batching(
    configs: tuple[Config, ...], levels: list[int], payloads: list[bytes], max_requests: int, seconds: float
) -> dict[str, Any]:
    """The service with each (COLORIZER_MAX_BATCH_SIZE, COLORIZER_MAX_BATCH_DELAY_MS, COLORIZER_INTRA_OP_THREADS);
    threads None leaves the last unset, so the service picks its default."""
    runs = []
    for size, delay, threads in configs:
        env = {"COLORIZER_MAX_BATCH_SIZE": str(size), "COLORIZER_MAX_BATCH_DELAY_MS": str(delay)}
        if threads is not None:
            env["COLORIZER_INTRA_OP_THREADS"] = str(threads)
        server = service(env, f"sweep b{size} d{delay} t{threads or 'default'}")
        try:
            for c in levels:
                row = measure(server, payloads, c, max_requests, seconds)
                row.update(max_batch=size, delay_ms=delay, threads=threads)
                runs.append(row)
        finally:
            server.stop()
    return {"runs": runs}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Load the service, the naive server and the bare model side by side.")
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    p.add_argument("--max_requests", type=int, default=600, help="per load level")
    p.add_argument("--seconds", type=float, default=6.0, help="per load level")
    p.add_argument("--large", type=int, default=4, help="12 MP requests per server")
    p.add_argument("--sweep", action="store_true", help="the batching sweep (max batch × delay, threads) instead")
    p.add_argument("--quick", action="store_true", help="a smoke test: tiny settings")
    a = p.parse_args(argv)
    levels = [int(c) for c in a.concurrency.split(",")]
    configs, sweep_levels = SWEEP, [8, 16]
    if a.quick:
        levels, a.max_requests, a.seconds, a.large = [1, 4], 12, 2.0, 1
        configs, sweep_levels = ((1, 0, None), (4, 2, CORES)), [4]
    payloads = [photo_jpeg(PHOTO_SIDE, PHOTO_SIDE, seed=s) for s in range(8)]
    header = {"photo": f"{PHOTO_SIDE}×{PHOTO_SIDE} JPEG q90", "payload_kb": np.mean([len(x) for x in payloads]) / 1024}
    if a.sweep:
        save("load-sweep", {**header, **sweep_batching(configs, sweep_levels, payloads, a.max_requests, a.seconds)})
        return
    large = photo_jpeg(*SIZES_MP["12"], seed=1)
    result = compare(levels, payloads, large, a.max_requests, a.seconds, a.large)
    save("load", {**header, **result})


if __name__ == "__main__":
    main()
