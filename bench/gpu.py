"""The CUDA path on a GPU host, end to end, in one command (a GPU is lent to few sessions, so this is one run):

    .venv/bin/python -m bench.gpu           # writes docs/perf/gpu.json; refuses to run without the CUDA provider
    .venv/bin/python -m bench.gpu --sweep   # only the service's batch / delay / in-flight sweep: gpu-sweep.json

1. The service's own loader (app/runtime.py) with COLORIZER_REQUIRE_GPU=true: which provider and file, and why.
2. Parity: the CUDA provider's ab against the CPU provider's on the same L, automatic and with hints.
3. The model alone by batch size: fp32 and fp16 on CUDA, fed from host arrays (a copy each way per run, as the
   service runs it) and with IO binding (everything stays on the GPU), beside the CPU provider on all the host's
   cores, in one run.
4. cuDNN's convolution searches: the first run at each batch size, and warm speed.
5. The service over real HTTP with the CUDA defaults: 512² JPEGs at 1 and 32 clients, against the same service
   batching (32 / 5 ms / 128 in flight) and against the CPU provider on the same host, as ratios; and one guided
   request.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort

from app.config import Settings
from app.runtime import CPU, CUDA, ModelRuntime, provider_options
from bench.common import MODEL, batch_of, model_feeds, photo_jpeg, repeat, save, stats
from bench.load import PHOTO_SIDE, measure, service
from bench.model import sample_inputs, to_fp16
from bench.model import session as model_session


def gpu_description() -> dict[str, str]:
    """nvidia-smi's own words for the card and driver: what the numbers were measured on."""
    fields = "name,driver_version,memory.total,clocks.max.sm"
    try:
        line = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        return {"error": str(exc)}
    return dict(zip(fields.split(","), (v.strip() for v in line.split(",")), strict=False))


def session(model: Path | bytes, provider: str, threads: int = 0, search: str = "") -> ort.InferenceSession:
    """bench.model's session on ``provider``: CUDA with the service's own provider options (or with another cuDNN
    convolution search where ``search`` names one), the CPU as the fallback ONNX Runtime must not take."""
    cuda = provider_options(CUDA)
    if search:
        cuda = (CUDA, cuda[1] | {"cudnn_conv_algo_search": search})
    sess = model_session(model, threads, [cuda, provider_options(CPU)] if provider == CUDA else [CPU])
    if sess.get_providers()[0] != provider:
        raise RuntimeError(f"asked for {provider}, ONNX Runtime runs {sess.get_providers()}")
    return sess


def service_loader(model: Path) -> dict[str, Any]:
    """What the service itself loads when told to require the GPU (a failure here is the finding)."""
    settings = Settings(model_path=model, providers="cuda,cpu", require_gpu=True, precision="auto")
    runtime = ModelRuntime.from_settings(settings, os.cpu_count() or 1)
    return {
        "providers": runtime.info.providers,
        "kind": runtime.kind,
        "precision": runtime.info.precision,
        "precision_reason": runtime.info.precision_reason,
    }


def hinted_feeds(sess: ort.InferenceSession, lightness: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Ten 3 × 3 point hints of random colour per image, and a global hint on every other image."""
    feeds = model_feeds(sess, lightness)
    if "hint_ab" not in feeds:
        return feeds
    rng = np.random.default_rng(seed)
    n, _, h, w = lightness.shape
    for i in range(n):
        for _ in range(10):
            y, x = rng.integers(1, h - 1), rng.integers(1, w - 1)
            feeds["hint_ab"][i, :, y - 1 : y + 2, x - 1 : x + 2] = rng.uniform(-60, 60, (2, 1, 1))
            feeds["hint_mask"][i, :, y - 1 : y + 2, x - 1 : x + 2] = 1
        if i % 2:
            dist = rng.dirichlet(np.ones(feeds["global_hint"].shape[1] - 1))
            feeds["global_hint"][i] = np.append(dist, 1)
    return feeds


def parity(model: Path, data: np.ndarray) -> dict[str, Any]:
    """max and mean |Δab| between the providers, in ab units (the contract's raw a, b)."""
    cuda, cpu = session(model, CUDA), session(model, CPU)
    out: dict[str, Any] = {}
    for name, feeds in (("automatic", model_feeds(cpu, data)), ("hinted", hinted_feeds(cpu, data))):
        diff = np.abs(cuda.run(None, feeds)[0] - cpu.run(None, feeds)[0])
        out[name] = {"max_abs_ab": float(diff.max()), "mean_abs_ab": float(diff.mean())}
        print(f"parity {name}: max |Δab| {diff.max():.4f}, mean {diff.mean():.5f}")
    return out


def cudnn_search(model: Path, data: np.ndarray, max_batch: int) -> dict[str, Any]:
    """Each cuDNN convolution search, in a fresh session: the first run at every batch size 1..max_batch (the
    batcher forms any of them, and cuDNN searches once per new shape), then warm images/s at 1, 8 and max_batch."""
    out: dict[str, Any] = {}
    for search in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
        sess = session(model, CUDA, search=search)
        first = []
        for batch in range(1, max_batch + 1):
            feeds = model_feeds(sess, batch_of(data, batch))
            t = time.perf_counter()
            sess.run(None, feeds)
            first.append(time.perf_counter() - t)
        warm = {}
        for batch in (1, 8, max_batch):
            feeds = model_feeds(sess, batch_of(data, batch))
            times = repeat(functools.partial(sess.run, None, feeds), 0.5, min_runs=5)
            warm[batch] = batch * len(times) / sum(times)
        out[search] = {"first_runs_s": sum(first), "slowest_first_run_ms": max(first) * 1000, "warm_images_per_s": warm}
        print(f"cuDNN {search}: first runs at 1..{max_batch} took {sum(first):.2f} s, warm img/s {warm}")
    return out


def iobinding_run(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> Any:
    """Inputs copied to the GPU once and outputs left there: the model's own time, without host transfers."""
    binding = sess.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda", 0)

    def run() -> None:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def throughput(models: dict[str, Path | bytes], batches: list[int], data: np.ndarray, min_time: float) -> list[dict]:
    """Images per second by batch: each model on CUDA (host feeds and IO binding) and on the CPU provider with
    every core, alternating inside each batch size so drifts hit all alike."""
    cores = os.cpu_count() or 1
    runs: dict[str, ort.InferenceSession] = {}
    for name, model in models.items():
        runs[f"{name} cuda"] = session(model, CUDA)
    runs[f"fp32 cpu {cores} threads"] = session(models["fp32"], CPU, cores)
    rows = []
    for batch in batches:
        x = batch_of(data, batch)
        for name, sess in runs.items():
            feeds = model_feeds(sess, x)
            ways = {"host": functools.partial(sess.run, None, feeds)}
            if name.endswith("cuda"):
                ways["iobinding"] = iobinding_run(sess, feeds)
            for way, fn in ways.items():
                for _ in range(3):  # warm-up: cuDNN's plan for this shape, the memory arena
                    fn()
                times = repeat(fn, min_time, min_runs=5)
                row = {"model": name, "feed": way, "batch": batch, **stats(times)}
                row["images_per_s"] = batch * len(times) / sum(times)
                rows.append(row)
                rate, p50 = row["images_per_s"], row["p50_ms"]
                print(f"{name:>22} {way:>9} batch={batch:>3}: {rate:9.1f} img/s, p50 {p50:.2f} ms")
    return rows


BATCHING = ("COLORIZER_MAX_BATCH_SIZE", "COLORIZER_MAX_BATCH_DELAY_MS", "COLORIZER_MAX_IN_FLIGHT")
# The HTTP sweep: the knobs that app/tuning.py sets per provider, on the CUDA provider (batch, delay ms, in flight).
SWEEP = {
    "batch32-delay5-inflight128": ("32", "5", "128"),  # the first CUDA defaults, reasoned before any GPU was lent
    "batch1-inflight4": ("1", "0", "4"),
    "batch32-delay0-inflight4": ("32", "0", "4"),
    "batch32-delay0-inflight16": ("32", "0", "16"),
    "batch32-delay0-inflight32": ("32", "0", "32"),
    "batch32-delay2-inflight16": ("32", "2", "16"),
}


def cuda_env(model: Path) -> dict[str, str]:
    """The service on ``model`` with the CUDA provider required (a quiet CPU fallback would measure the CPU)."""
    return {"COLORIZER_MODEL_PATH": str(model), "COLORIZER_PROVIDERS": "cuda,cpu", "COLORIZER_REQUIRE_GPU": "true"}


def over_http(model: Path, seconds: float) -> dict[str, Any]:
    """The service with the CUDA defaults against batching on, at 1 and 32 clients, and the CPU provider on the
    same host at 32; /model and a guided request on the CUDA defaults."""
    payloads = [photo_jpeg(PHOTO_SIDE, PHOTO_SIDE, seed=s) for s in range(8)]
    gpu = cuda_env(model)
    configs = {
        "cuda-defaults": (gpu, (1, 32)),
        "cuda-batch-32": (gpu | dict(zip(BATCHING, SWEEP["batch32-delay5-inflight128"], strict=True)), (1, 32)),
        "cpu-only": (gpu | {"COLORIZER_PROVIDERS": "cpu", "COLORIZER_REQUIRE_GPU": "false"}, (32,)),
    }
    out: dict[str, Any] = {"photo": f"{PHOTO_SIDE}x{PHOTO_SIDE} JPEG q90", "rows": [], "model_endpoint": {}}
    for name, (env, levels) in configs.items():
        server = service(env, name=name)
        try:
            out["model_endpoint"][name] = httpx.get(server.url + "/model", timeout=10).json()
            if name == "cuda-defaults":
                hints = {"points": [{"x": 100, "y": 120, "color": "#c03020"}], "palette": ["#3060c0"]}
                r = httpx.post(
                    server.url + "/colorize",
                    files={"file": ("p.jpg", payloads[0], "image/jpeg")},
                    data={"hints": json.dumps(hints)},
                    timeout=60,
                )
                out["guided_request"] = {"status": r.status_code, "content_type": r.headers.get("content-type")}
            for clients in levels:
                out["rows"].append(measure(server, payloads, clients, 100_000, seconds) | {"clients": clients})
        finally:
            server.stop()
    by = {(r["server"], r["clients"]): r["images_per_s"] for r in out["rows"]}
    out["defaults_over_batching_at_32_clients"] = by[("cuda-defaults", 32)] / by[("cuda-batch-32", 32)]
    out["cuda_over_cpu_at_32_clients"] = by[("cuda-defaults", 32)] / by[("cpu-only", 32)]
    print(
        f"at 32 clients: the defaults {out['defaults_over_batching_at_32_clients']:.2f}x batching, "
        f"CUDA {out['cuda_over_cpu_at_32_clients']:.2f}x the CPU provider"
    )
    return out


def http_sweep(model: Path, seconds: float) -> list[dict[str, Any]]:
    """Each configuration at 32 clients and at 1 (an editor's user alone), side by side in one run."""
    payloads = [photo_jpeg(PHOTO_SIDE, PHOTO_SIDE, seed=s) for s in range(8)]
    rows = []
    for name, (batch, delay, in_flight) in SWEEP.items():
        server = service(cuda_env(model) | dict(zip(BATCHING, (batch, delay, in_flight), strict=True)), name=name)
        try:
            for clients, span in ((32, seconds), (1, seconds / 2)):
                rows.append(measure(server, payloads, clients, 100_000, span) | {"clients": clients})
        finally:
            server.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="The CUDA path on a GPU host: loader, parity, throughput, HTTP.")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--batches", default="1,8,32,64,128")
    p.add_argument("--min_time", type=float, default=1.0, help="seconds per setting")
    p.add_argument("--http_seconds", type=float, default=8.0, help="seconds per HTTP load level")
    p.add_argument("--sweep", action="store_true", help="only the HTTP sweep of batch, delay and in-flight")
    a = p.parse_args(argv)
    if a.sweep:
        save("gpu-sweep", {"gpu": gpu_description(), "sweep": http_sweep(a.model, a.http_seconds)})
        return
    if CUDA not in ort.get_available_providers():
        raise SystemExit(
            f"no CUDA provider in this ONNX Runtime ({ort.get_available_providers()}): install onnxruntime-gpu"
        )
    result: dict[str, Any] = {"gpu": gpu_description(), "model": a.model.name}
    data = sample_inputs(int(session(a.model, CPU).get_inputs()[0].shape[2]))
    models: dict[str, Path | bytes] = {"fp32": a.model}
    try:
        models["fp16"] = to_fp16(onnx.load(str(a.model))).SerializeToString()
    except ImportError as exc:  # onnxconverter-common is a bench-only package; the fp32 steps still run
        result["fp16"] = f"not measured: {exc} (pip install onnxconverter-common)"
    steps = {
        "service_loader": lambda: service_loader(a.model),
        "parity": lambda: parity(a.model, data),
        "cudnn_search": lambda: cudnn_search(a.model, data, 32),
        "throughput": lambda: throughput(models, [int(b) for b in a.batches.split(",")], data, a.min_time),
        "http": lambda: over_http(a.model, a.http_seconds),
    }
    if "fp16" in models:
        steps["parity_fp16_vs_fp32"] = lambda: fp16_gap(session(models["fp16"], CUDA), session(a.model, CUDA), data)
    # A GPU is lent rarely and briefly: a step that fails is recorded as the finding, and the rest still run.
    for name, step in steps.items():
        try:
            result[name] = step()
        except Exception as exc:  # noqa: BLE001 -- any failure is the result of this step
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name} failed: {exc}")
        save("gpu", result)


def fp16_gap(half: ort.InferenceSession, full: ort.InferenceSession, data: np.ndarray) -> dict[str, float]:
    """fp16 against fp32, both on CUDA, automatic and hinted feeds together."""
    diffs = []
    for feeds in (model_feeds(full, data), hinted_feeds(full, data)):
        diffs.append(np.abs(half.run(None, feeds)[0] - full.run(None, feeds)[0]))
    both = np.concatenate([d.ravel() for d in diffs])
    print(f"fp16 vs fp32 on CUDA: max |Δab| {both.max():.4f}, mean {both.mean():.5f}")
    return {"max_abs_ab": float(both.max()), "mean_abs_ab": float(both.mean())}


if __name__ == "__main__":
    main()
