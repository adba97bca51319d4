"""What every benchmark shares: photo-like test images, the validation photos, timing statistics, the machine's
description, and the JSON result files that bench/report.py turns into docs/PERFORMANCE.md."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(os.environ.get("BENCH_MODEL", ROOT / "models" / "colorizer.onnx"))  # another fp32 export to measure
INT8_MODEL = ROOT / "models" / "colorizer.int8.onnx"
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "docs" / "perf"))  # run_all --quick writes elsewhere
PHOTOS = Path.home() / ".cache" / "colorize" / "train"
CACHE = Path(tempfile.gettempdir()) / "colorizer-bench"
VAL_FRACTION = 0.05  # the training run's hold-out fraction (train.train's default)
CALIB_FRACTION = 0.05  # its calibration split, where choices are made (train.train's default)

# Input sizes for the stage benchmark: 4:3 photos of about 0.25, 1, 12 and 24 megapixels.
SIZES_MP = {"0.25": (576, 432), "1": (1152, 864), "12": (4000, 3000), "24": (6000, 4000)}


# ---------------------------------------------------------------- test images


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A grayscale "photo" as uint8 (H, W): a lit gradient, fractal texture from coarse shapes to fine detail,
    hard-edged objects and film grain. Compresses and decodes like a real photo; flat colour would not."""
    rng = np.random.default_rng(seed)
    img: np.ndarray = np.zeros((height, width), np.float32)
    aspect = height / width
    amplitude = 0.5
    for cells in (3, 12, 48, 192, 768):  # octaves of value noise, upsampled smoothly
        grid = rng.random((max(2, int(cells * aspect)) + 1, cells + 1), dtype=np.float32)
        img += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amplitude *= 0.6
    img += np.linspace(0.4, -0.2, height, dtype=np.float32)[:, None]  # light from above
    objects = np.zeros_like(img)
    for _ in range(12):  # objects with sharp edges, textured like the rest of the scene
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 40, width // 8))
        shade = float(rng.uniform(-0.5, 0.5))
        if rng.random() < 0.5:
            cv2.circle(objects, (x, y), r, shade, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(objects, (x, y), (x + r, y + 2 * r), shade, -1)
    img = cv2.GaussianBlur(img + objects, (0, 0), 0.7)
    lo, hi = np.percentile(img[:: max(1, height // 256), :: max(1, width // 256)], (0.5, 99.5))
    img = (img - lo) * (235.0 / max(hi - lo, 1e-6)) + 10
    img += rng.standard_normal((height, width), dtype=np.float32) * 3.0  # film grain
    return np.clip(img, 0, 255).astype(np.uint8)


def photo_jpeg(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG: gray content stored as a 3-channel JPEG, as cameras, scanners and editors save a
    desaturated photo. Cached on disk, so repeated runs do not pay for making 24 MP of noise."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"photo-{width}x{height}-s{seed}-q{quality}.jpg"
    if not path.exists():
        gray = photo_like(height, width, seed)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode the test JPEG")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.tobytes())
        tmp.replace(path)
    return path.read_bytes()


def split_photos(split: str = "val", limit: int = 0) -> list[Path]:
    """A split of the training photos as the training run drew it: "val" (validation) or "calib" (calibration);
    empty where they are not on this machine."""
    if not PHOTOS.is_dir():
        return []
    from train.data import list_images  # train/ is a bench-time dependency only
    from train.evaluate import select_split

    rel = select_split(list_images(str(PHOTOS)), split, VAL_FRACTION, CALIB_FRACTION)
    return [PHOTOS / f for f in rel][: limit or None]


# ---------------------------------------------------------------- timing


def stats(samples: Sequence[float]) -> dict[str, float]:
    """Mean and percentiles of latencies in seconds, reported in milliseconds."""
    if not samples:
        return {"n": 0, "mean_ms": float("nan"), "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    arr = np.asarray(samples) * 1000
    p50, p95, p99 = np.percentile(arr, (50, 95, 99))
    return {
        "n": len(arr),
        "mean_ms": float(arr.mean()),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
    }


def repeat(fn: Callable[[], Any], min_time: float, min_runs: int = 3, max_runs: int = 10_000) -> list[float]:
    """Run ``fn`` until both ``min_runs`` runs and ``min_time`` seconds are done; the time of each run."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - started < min_time):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


# ---------------------------------------------------------------- machine and results


def cpu_ghz() -> float:
    """The clock /proc/cpuinfo reports (a VM reports its nominal clock; turbo is not visible from inside)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000
    except OSError:
        pass
    return float("nan")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "ghz": cpu_ghz(), "python": platform.python_version()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model"] = fields.get("Model name", "unknown")
        info["family_model"] = f"family {fields.get('CPU family', '?')} model {fields.get('Model', '?')}"
        info["hypervisor"] = fields.get("Hypervisor vendor", "none")
        info["flags"] = " ".join(
            f
            for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
            if f in out.split()
        )
    except (OSError, subprocess.CalledProcessError):
        info["model"] = platform.processor() or "unknown"
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    info["opencv"] = cv2.__version__
    info["numpy"] = np.__version__
    return info


def command() -> str:
    """The command that reproduces this run, as typed from the repository root."""
    module = Path(sys.argv[0]).with_suffix("").relative_to(ROOT).as_posix().replace("/", ".")
    env = [f"{k}={os.environ[k]}" for k in ("BENCH_MODEL", "BENCH_RESULTS") if k in os.environ]
    return shlex.join([*env, ".venv/bin/python", "-m", module, *sys.argv[1:]])


def record(payload: dict[str, Any]) -> dict[str, Any]:
    """The numbers with the command that reproduces them, when, and the machine they were measured on."""
    return {
        "command": command(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        **payload,
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write docs/perf/<name>.json: the record of the numbers."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record(payload), indent=1, default=float) + "\n")
    print(f"wrote {path}")
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def batch_of(data: np.ndarray, batch: int) -> np.ndarray:
    """(batch, 1, S, S): the sample L repeated (or cut) to that many images, contiguous for ONNX Runtime."""
    return np.ascontiguousarray(np.resize(data, (batch, *data.shape[1:])))


def model_feeds(session: Any, lightness: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs for one run of any Colorizer model: L, plus zeros (automatic colour) for a guided model's hint inputs,
    as the service feeds them when a request has no hints."""
    feeds = {"L": lightness}
    n, _, h, w = lightness.shape
    for i in session.get_inputs()[1:]:
        shape = (n, 2 if i.name == "hint_ab" else 1, h, w) if len(i.shape) == 4 else (n, i.shape[1])
        feeds[i.name] = np.zeros(shape, np.float32)
    return feeds
