"""Did a change cost speed? The service at two commits, side by side in one run on the same machine: server CPU
per image for 512² JPEGs (4 closed-loop clients) and for 12 MP JPEGs (one client), and the latency of each.

    .venv/bin/python -m bench.regression --before <commit> [--after <commit>]   # ~2 min; docs/perf/regression.json

Each commit's app/ is exported with ``git archive`` into a temporary folder and served from there with this
checkout's virtual environment and the same model file; the two servers take turns, twice, so a neighbour's load
falls on both alike. CPU is the server process's user + system time (/proc/<pid>/stat) over the load.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import rawhttp
from bench.admission import cpu_model
from bench.common import MODEL, ROOT, SIZES_MP, photo_jpeg, stats
from bench.load import PHOTO_SIDE, Server, closed_loop, start_server

OUT = ROOT / "docs" / "perf" / "regression.json"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def export(commit: str, into: Path) -> Path:
    """``app/`` (and what it imports at run time) of ``commit``, written under ``into``."""
    archive = subprocess.run(["git", "archive", commit, "app"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def small_load(server: Server, payloads: list[bytes], seconds: float) -> dict[str, Any]:
    before = cpu_s(server.process.pid)
    row = asyncio.run(closed_loop(server.url, payloads, 4, 100_000, seconds))
    used = cpu_s(server.process.pid) - before
    return {"images": row["ok"], "cpu_ms_per_image": 1000 * used / max(1, row["ok"]), "p50_ms": row["p50_ms"]}


def large_load(server: Server, data: bytes, count: int) -> dict[str, Any]:
    request = rawhttp.multipart_post(server.url, "/colorize", "file", "large.jpg", data)
    latencies = []
    before = cpu_s(server.process.pid)
    for _ in range(count):
        t = time.perf_counter()
        status, _, _ = asyncio.run(rawhttp.timed(server.url, request))
        assert status == 200, status
        latencies.append(time.perf_counter() - t)
    used = cpu_s(server.process.pid) - before
    return {"images": count, "cpu_ms_per_image": 1000 * used / count, **stats(latencies)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the commit to compare against")
    p.add_argument("--after", default="", help="default: this working tree")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--large", type=int, default=4, help="12 MP requests per turn")
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args(argv)
    payloads = [photo_jpeg(PHOTO_SIDE, PHOTO_SIDE, seed=s) for s in range(8)]
    large = photo_jpeg(*SIZES_MP["12"], seed=1)
    env = {"COLORIZER_MODEL_PATH": str(MODEL)}
    with tempfile.TemporaryDirectory(prefix="colorizer-regression-") as tmp:
        trees = {"before": export(a.before, Path(tmp) / "before")}
        trees["after"] = export(a.after, Path(tmp) / "after") if a.after else ROOT
        servers = [start_server(name, "app.main:app", env, "/readyz", cwd=tree) for name, tree in trees.items()]
        rows: list[dict[str, Any]] = []
        try:
            for server in servers:  # warm-up: arenas, kernels, the service-time estimates
                asyncio.run(closed_loop(server.url, payloads, 4, 40, 3.0))
                assert "tuning" in httpx.get(server.url + "/model").json() or server.name == "before"
            for rep in range(a.reps):
                for server in servers:
                    row: dict[str, Any] = {"server": server.name, "rep": rep}
                    row["512"] = small_load(server, payloads, a.seconds)
                    row["12mp"] = large_load(server, large, a.large)
                    rows.append(row)
                    print(
                        f"{server.name:>6} rep {rep}: 512² {row['512']['cpu_ms_per_image']:.1f} ms CPU/image, "
                        f"p50 {row['512']['p50_ms']:.0f} ms; 12 MP {row['12mp']['cpu_ms_per_image']:.0f} ms CPU/image, "
                        f"p50 {row['12mp']['p50_ms']:.0f} ms"
                    )
        finally:
            for server in servers:
                server.stop()
    summary = {}
    for name in trees:
        mine = [r for r in rows if r["server"] == name]
        summary[name] = {
            kind: {
                "cpu_ms_per_image": sum(r[kind]["cpu_ms_per_image"] * r[kind]["images"] for r in mine)
                / sum(r[kind]["images"] for r in mine),
                "p50_ms": sorted(r[kind]["p50_ms"] for r in mine)[len(mine) // 2],
            }
            for kind in ("512", "12mp")
        }
    result = {
        "cpu": cpu_model(),
        "before": a.before,
        "after": a.after or "working tree",
        "rows": rows,
        "summary": summary,
    }
    print(json.dumps(summary, indent=1))
    OUT.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print("wrote", OUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
