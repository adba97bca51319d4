"""Issue 16's targets, in one run on one machine: admission by estimated wait (the defaults) against the same
service with admission switched off (a plain queue: no wait budget, no queue cap), closed-loop 512² JPEG clients
at 8, 16 and 32; then a 12 MP client among 512² clients, each class's latency.

    .venv/bin/python -m bench.admission                  # ~3 min; writes docs/perf/admission.json
    .venv/bin/python -m bench.admission --quick          # a smoke test

Clients retry a 503 after its Retry-After, as bench/load.py's do; "shed" counts those 503s. The open-loop 4×
overload is bench/soak.py's ``overload`` mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import rawhttp
from bench.common import MODEL, ROOT, SIZES_MP, photo_jpeg, stats
from bench.load import PHOTO_SIDE, Server, measure, service

OUT = ROOT / "docs" / "perf" / "admission.json"
PLAIN_QUEUE = {"COLORIZER_MAX_QUEUE_WAIT_MS": "3600000", "COLORIZER_MAX_QUEUE": "100000"}


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


async def mixed(url: str, small: list[bytes], large: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` closed-loop 512² clients and one closed-loop 12 MP client at once, for ``seconds``."""
    small_requests = [rawhttp.multipart_post(url, "/colorize", "file", "photo.jpg", p) for p in small]
    large_request = rawhttp.multipart_post(url, "/colorize", "file", "large.jpg", large)
    latencies: dict[str, list[float]] = {"512": [], "12mp": []}
    shed = {"512": 0, "12mp": 0}
    deadline = time.perf_counter() + seconds

    async def client(kind: str, requests: list[bytes]) -> None:
        n = 0
        while time.perf_counter() < deadline:
            request = requests[n % len(requests)]
            n += 1
            started = time.perf_counter()
            while True:
                status, _, headers = await rawhttp.timed(url, request)
                if status != 503:
                    break
                shed[kind] += 1
                await asyncio.sleep(float(headers.get("retry-after", "1")))
            if status == 200:
                latencies[kind].append(time.perf_counter() - started)

    await asyncio.gather(client("12mp", [large_request]), *(client("512", small_requests) for _ in range(clients)))
    return {kind: {**stats(values), "n": len(values), "shed": shed[kind]} for kind, values in latencies.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", default="8,16,32")
    p.add_argument("--max_requests", type=int, default=600, help="per load level")
    p.add_argument("--seconds", type=float, default=8.0, help="per load level")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    levels = [int(c) for c in a.concurrency.split(",")]
    if a.quick:
        levels, a.max_requests, a.seconds = [8], 40, 2.0
    payloads = [photo_jpeg(PHOTO_SIDE, PHOTO_SIDE, seed=s) for s in range(8)]
    large = photo_jpeg(*SIZES_MP["12"], seed=1)
    result: dict[str, Any] = {"cpu": cpu_model(), "model": MODEL.name, "closed_loop": [], "mixed": {}}
    for name, env in (("admission", {}), ("plain-queue", PLAIN_QUEUE)):
        server: Server = service(env, name=name)
        try:
            for level in levels:
                row = measure(server, payloads, level, a.max_requests, a.seconds)
                row["shed_fraction"] = row["shed"] / max(1, row["requests"])
                result["closed_loop"].append(row)
            result["mixed"][name] = asyncio.run(mixed(server.url, payloads, large, 8, a.seconds * 2))
            print(name, "mixed:", json.dumps(result["mixed"][name]))
        finally:
            server.stop()
    by = {(r["server"], r["concurrency"]): r for r in result["closed_loop"]}
    result["throughput_ratio"] = {
        str(c): by[("admission", c)]["images_per_s"] / by[("plain-queue", c)]["images_per_s"] for c in levels
    }
    print("cpu:", result["cpu"])
    print("throughput admission / plain queue:", result["throughput_ratio"])
    if not a.quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=1, default=float) + "\n")
        print("wrote", Path(OUT).relative_to(ROOT))


if __name__ == "__main__":
    main()
