"""Issue 16's targets, in one run on one machine: admission by estimated wait (the defaults) against the same
service with admission switched off (a plain queue: no wait budget, no queue cap), closed-loop 512² JPEG clients
at 8, 16 and 32; then a 12 MP client among 512² clients, each class's latency.

    .venv/bin/python -m bench.admission                  # ~5 min; writes docs/perf/admission.json
    .venv/bin/python -m bench.admission --in-flight 2,4,8,16   # the in-flight default: admission_in_flight.json
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
from bench.load import PHOTO_SIDE, measure, service

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


def summary(rows: list[dict[str, Any]]) -> list[tuple[str, int, dict[str, float]]]:
    """Per server and level, over the repetitions: images/s (all images over all seconds) and the 503 fraction."""
    out = []
    for name in dict.fromkeys(r["server"] for r in rows):
        for level in dict.fromkeys(r["concurrency"] for r in rows):
            mine = [r for r in rows if r["server"] == name and r["concurrency"] == level]
            ok, seconds = sum(r["ok"] for r in mine), sum(r["seconds"] for r in mine)
            shed, requests = sum(r["shed"] for r in mine), sum(r["requests"] for r in mine)
            worst_p99 = max(r["p99_ms"] for r in mine)
            out.append(
                (
                    name,
                    level,
                    {"images_per_s": ok / seconds, "shed_fraction": shed / max(1, requests), "p99_ms": worst_p99},
                )
            )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", default="8,16,32")
    p.add_argument("--max_requests", type=int, default=600, help="per load level")
    p.add_argument("--seconds", type=float, default=8.0, help="per load level")
    p.add_argument("--reps", type=int, default=2, help="interleaved repetitions per level and server")
    p.add_argument("--in-flight", dest="in_flight", default="", help="e.g. 2,4,8: compare COLORIZER_MAX_IN_FLIGHT")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    levels = [int(c) for c in a.concurrency.split(",")]
    if a.quick:
        levels, a.max_requests, a.seconds, a.reps = [8], 40, 2.0, 1
    payloads = [photo_jpeg(PHOTO_SIDE, PHOTO_SIDE, seed=s) for s in range(8)]
    large = photo_jpeg(*SIZES_MP["12"], seed=1)
    result: dict[str, Any] = {"cpu": cpu_model(), "model": MODEL.name, "closed_loop": [], "mixed": {}}
    configs = {"admission": {}, "plain-queue": PLAIN_QUEUE}
    if a.in_flight:
        configs = {f"inflight{n}": {"COLORIZER_MAX_IN_FLIGHT": str(n)} for n in a.in_flight.split(",")}
    # Every server up at once, and the loads interleaved (A B A B per level), so a neighbour's load on the machine
    # falls on each configuration alike and the ratios hold.
    servers = [service(env, name=name) for name, env in configs.items()]
    try:
        for level in levels:
            for rep in range(a.reps):
                for server in servers:
                    row = measure(server, payloads, level, a.max_requests, a.seconds)
                    row["shed_fraction"] = row["shed"] / max(1, row["requests"])
                    row["rep"] = rep
                    result["closed_loop"].append(row)
        for server in servers if not a.in_flight else []:
            result["mixed"][server.name] = asyncio.run(mixed(server.url, payloads, large, 8, a.seconds * 2))
            print(server.name, "mixed:", json.dumps(result["mixed"][server.name]))
    finally:
        for server in servers:
            server.stop()
    result["summary"] = summary(result["closed_loop"])
    for name, level, row in result["summary"]:
        print(f"{name:>12} c={level:>2}: {row['images_per_s']:6.1f} img/s  shed {row['shed_fraction']:.1%}")
    if not a.in_flight:
        by = {(name, level): row for name, level, row in result["summary"]}
        result["throughput_ratio"] = {
            str(c): by[("admission", c)]["images_per_s"] / by[("plain-queue", c)]["images_per_s"] for c in levels
        }
        print("throughput admission / plain queue:", result["throughput_ratio"])
    print("cpu:", result["cpu"])
    if not a.quick:
        out = OUT.with_name("admission_in_flight.json") if a.in_flight else OUT
        out.write_text(json.dumps(result, indent=1, default=float) + "\n")
        print("wrote", Path(out).relative_to(ROOT))


if __name__ == "__main__":
    main()
