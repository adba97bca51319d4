"""Every benchmark, one after another, then docs/PERFORMANCE.md and its plots.

    .venv/bin/python -m bench.run_all            # the full run (~11 min on 2 cores; keep the machine otherwise idle)
    .venv/bin/python -m bench.run_all --quick    # a smoke test (~3 min); results and report go to $TMPDIR
    .venv/bin/python -m bench.run_all --only load,report

Each step is its own process, so one benchmark's threads and memory never colour the next one's numbers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.common import CACHE, ROOT

STEPS = ("quantize", "load", "model", "stages", "sweep")  # the int8 file first: load and model measure it


def commands(quick: bool, results: str) -> dict[str, list[str]]:
    python = [sys.executable, "-m"]
    int8 = [] if not quick else ["--out", os.path.join(results, "colorizer.int8.onnx")]
    q = ["--quick"] if quick else []
    return {
        "quantize": [*python, "bench.quantize", *int8, *(["--limit", "8"] if quick else [])],
        "model": [*python, "bench.model", *q, *([] if not quick else ["--int8", int8[1]])],
        "stages": [*python, "bench.stages", *q],
        "load": [*python, "bench.load", *q],
        "sweep": [*python, "bench.load", "--sweep", *q],
        "report": [*python, "bench.report", "--results", results]
        + ([] if not quick else ["--doc", os.path.join(results, "PERFORMANCE.md")]),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Run every benchmark and regenerate docs/PERFORMANCE.md.")
    p.add_argument("--quick", action="store_true", help="tiny settings, written under $TMPDIR, not docs/")
    p.add_argument("--only", default=",".join((*STEPS, "report")), help="comma-separated steps")
    a = p.parse_args(argv)
    results = str(CACHE / "quick") if a.quick else str(ROOT / "docs" / "perf")
    os.makedirs(results, exist_ok=True)
    env = {**os.environ, "BENCH_RESULTS": results}
    cmds = commands(a.quick, results)
    failed = []
    for step in a.only.split(","):
        print(f"== {step}: {' '.join(cmds[step][1:])}", flush=True)
        started = time.monotonic()
        if subprocess.run(cmds[step], cwd=ROOT, env=env).returncode:
            failed.append(step)  # go on: the report shows what was measured, and older results for the rest
        print(f"== {step} took {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
