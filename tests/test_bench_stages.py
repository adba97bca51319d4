"""bench/stages.py takes the service's pipeline apart into its stages: its quick run must keep working as app/
changes (it broke once when decode_lightness began to take a parsed header, unnoticed until the next full run),
and must still produce the service's own bytes, which the bench itself checks against app.pipeline.finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_stages_run_times_every_stage_of_the_service_pipeline(tmp_path: Path) -> None:
    env = os.environ | {"BENCH_RESULTS": str(tmp_path)}  # never docs/perf
    done = subprocess.run(
        [sys.executable, "-m", "bench.stages", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    stages = json.loads((tmp_path / "stages.json").read_text())["stages"]
    for size in stages.values():
        assert {"decode", "resize", "model", "edges", "join", "encode"} <= set(size)
        assert all(size[s]["p50_ms"] > 0 for s in ("decode", "model", "edges", "join", "encode"))
