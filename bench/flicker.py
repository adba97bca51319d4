"""Flicker before/after temporal smoothing on a generated clip, and image latency while a video job runs.

    .venv/bin/python bench/flicker.py              # flicker table (+ docs/flicker.png) into docs/VIDEO.md
    .venv/bin/python bench/flicker.py --latency    # also: image latency idle vs. during a video job

Flicker (app/video/temporal.py): mean |Δa|, |Δb| between consecutive output frames over pixels whose L changed
by less than 2, in Lab units. The clip is made here: a panning, grainy, exposure-flickering landscape, a hard
cut, then a still room with a ball rolling across it — gray, 160×120, 24 fps.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.color import model_input  # noqa: E402
from app.guidance import Guidance, reference_distribution  # noqa: E402
from app.runtime import ModelRuntime  # noqa: E402
from app.video.offline import colorize_video_file  # noqa: E402
from app.video.process import Chunk, colour_frames, frame_lightness  # noqa: E402
from app.video.temporal import (  # noqa: E402
    DEFAULT_SCENE_CUT,
    DEFAULT_SMOOTHING,
    FlickerMeter,
    TemporalSmoother,
    mean_l_change,
)
from bench.common import PHOTOS  # noqa: E402

DOC = ROOT / "docs" / "VIDEO.md"
PLOT = ROOT / "docs" / "flicker.png"
DEFAULT_MODEL = ROOT / "models" / "colorizer.onnx"
WIDTH, HEIGHT, FPS, SHOT = 160, 120, 24, 48  # two shots of SHOT frames each


# -- the clip ----------------------------------------------------------------------------------------


def _landscape(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A wide gray landscape (sky, hills, a field with texture, a house) to pan across."""
    img = np.zeros((height, width), np.float32)
    horizon = height * 11 // 20
    img[:horizon] = np.linspace(205, 165, horizon)[:, None]
    hills = (horizon - 12 + 8 * np.sin(np.arange(width) / 23.0) + 4 * np.sin(np.arange(width) / 7.0)).astype(int)
    for x, top in enumerate(hills):
        img[top:, x] = 95
    img[horizon:] = 115 + cv2.GaussianBlur(rng.normal(0, 22, (height - horizon, width)).astype(np.float32), (0, 0), 1.2)
    cv2.rectangle(img, (width // 3, horizon - 26), (width // 3 + 40, horizon + 6), 70, -1)
    cv2.circle(img, (width * 3 // 4, height // 6), 11, 245, -1)
    return img


def _room(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    img = np.full((height, width), 150, np.float32)
    img += cv2.GaussianBlur(rng.normal(0, 10, (height, width)).astype(np.float32), (0, 0), 3)  # plaster
    floor = height * 2 // 3
    img[floor:] = 85 + 12 * np.sin(np.arange(width) / 4.0)[None, :]  # floorboards
    cv2.rectangle(img, (width // 8, height // 6), (width // 8 + 38, height // 6 + 30), 60, -1)  # a picture
    return img


def make_clip(seed: int = 0) -> list[np.ndarray]:
    """Gray (H, W, 3) uint8 frames: shot A pans with grain and exposure flicker, then a cut to shot B."""
    rng = np.random.default_rng(seed)
    wide, room = _landscape(rng, HEIGHT, WIDTH * 2), _room(rng, HEIGHT, WIDTH)
    frames = []
    for t in range(2 * SHOT):
        if t < SHOT:  # pan half a pixel a frame (sub-pixel: every frame is resampled, like a real camera)
            shift = np.array([[1, 0, -0.5 * t], [0, 1, 0]], np.float32)
            img = cv2.warpAffine(wide, shift, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        else:
            img = room.copy()
            x = int(10 + (t - SHOT) * 2.5)
            cv2.circle(img, (x, HEIGHT * 3 // 4), 9, 230, -1)  # a ball rolls across the floor
        img = img * (1 + 0.015 * np.sin(t * 1.7)) + rng.normal(0, 1.2, img.shape)  # exposure flicker, grain
        gray = np.clip(img, 0, 255).astype(np.uint8)
        frames.append(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    return frames


# -- flicker ------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    smoothing: float
    scene_cut: float
    flicker: float
    moving_lag: float  # mean |ab - per-frame ab| where L changed (>= 2): colour trailing motion
    cut_bleed: float  # mean |ab - per-frame ab| on the first frame after the cut
    per_frame: list[float]


def lab(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)


def run_config(
    name: str, smoothing: float, scene_cut: float, chunk: Chunk, ab: np.ndarray, raw: list[np.ndarray]
) -> Row:
    out = colour_frames(chunk, ab, TemporalSmoother(smoothing, scene_cut), rotation=0)
    meter = FlickerMeter()
    lag, lag_n = 0.0, 0
    labs = [lab(f) for f in out]
    for i, frame in enumerate(labs):
        meter.add(frame)
        if i:
            moving = np.abs(frame[:, :, 0] - labs[i - 1][:, :, 0]) >= 2
            diff = np.abs(frame[:, :, 1:] - raw[i][:, :, 1:])[moving]
            lag, lag_n = lag + float(diff.sum()), lag_n + diff.size
    bleed = float(np.abs(labs[SHOT][:, :, 1:] - raw[SHOT][:, :, 1:]).mean())
    return Row(name, smoothing, scene_cut, meter.value, lag / max(lag_n, 1), bleed, meter.per_frame)


def flicker_bench(runtime: ModelRuntime) -> tuple[list[Row], str, dict[str, float]]:
    frames = make_clip()
    size = runtime.info.input_size
    full = [frame_lightness(f) for f in frames]  # as a video job reads its frames (app/video/process.py)
    chunk = Chunk(full, np.stack([model_input(lum, size) for lum in full]), [None] * len(frames))
    ab = np.concatenate([runtime.run(chunk.model_l[i : i + 16]) for i in range(0, len(frames), 16)])  # (N, 2, h, w)
    raw = [lab(f) for f in colour_frames(chunk, ab, TemporalSmoother(0.0), rotation=0)]
    never = 1e9
    rows = [
        run_config("off (per-frame colour)", 0.0, DEFAULT_SCENE_CUT, chunk, ab, raw),
        run_config("EMA 0.5", 0.5, DEFAULT_SCENE_CUT, chunk, ab, raw),
        run_config(f"EMA {DEFAULT_SMOOTHING} (default)", DEFAULT_SMOOTHING, DEFAULT_SCENE_CUT, chunk, ab, raw),
        run_config("EMA 0.85", 0.85, DEFAULT_SCENE_CUT, chunk, ab, raw),
        run_config(f"EMA {DEFAULT_SMOOTHING}, no scene-cut reset", DEFAULT_SMOOTHING, never, chunk, ab, raw),
    ]
    changes = [mean_l_change(chunk.model_l[i - 1], chunk.model_l[i]) for i in range(1, len(frames))]
    within = max(c for i, c in enumerate(changes, 1) if i != SHOT)
    cuts = {"within": within, "cut": changes[SHOT - 1]}
    rows += reference_rows(runtime, chunk)
    encoded = encoded_flicker(runtime, frames)
    return rows, encoded, cuts


def reference_photo() -> np.ndarray:
    """A colour photo to guide the clip (a sunny meadow, from the training photos), or a made-up one without them."""
    path = PHOTOS / "mate-backgrounds/usr/share/backgrounds/mate/nature/GreenMeadow.jpg"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.exists() else None
    if img is None:
        img = np.zeros((64, 64, 3), np.uint8)
        img[:32], img[32:] = (220, 160, 90), (60, 150, 70)  # sky over grass
    return img


def reference_rows(runtime: ModelRuntime, chunk: Chunk) -> list[Row]:
    """The same clip guided by a reference photo's colours (a global hint on every frame, as a video job with
    `reference` does): does a film-wide palette steady the colour across frames and shots?"""
    if runtime.ab_bins is None:
        return []
    size, n = runtime.info.input_size, len(chunk.model_l)
    guidance = Guidance(reference=reference_distribution(reference_photo(), runtime.ab_bins))
    hints = guidance.for_image(size, size, size, runtime.ab_bins)
    ab = np.concatenate(
        [runtime.run(chunk.model_l[i : i + 16], [hints] * len(chunk.model_l[i : i + 16])) for i in range(0, n, 16)]
    )
    raw = [lab(f) for f in colour_frames(chunk, ab, TemporalSmoother(0.0), rotation=0)]
    return [
        run_config("off, with a reference photo", 0.0, DEFAULT_SCENE_CUT, chunk, ab, raw),
        run_config(
            f"EMA {DEFAULT_SMOOTHING}, with a reference photo", DEFAULT_SMOOTHING, DEFAULT_SCENE_CUT, chunk, ab, raw
        ),
    ]


def encoded_flicker(runtime: ModelRuntime, frames: list[np.ndarray]) -> str:
    """The same, end to end: the clip as H.264, colourised by colorize_video_file, decoded again."""
    values = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.mp4"
        with av.open(str(src), "w") as out:
            stream = out.add_stream("libx264", rate=FPS, options={"crf": "12"})
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            for i, frame in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
                vf.pts = i
                out.mux(stream.encode(vf))
            out.mux(stream.encode())
        for smoothing in (0.0, DEFAULT_SMOOTHING):
            dst = Path(tmp) / f"out-{smoothing}.mp4"
            colorize_video_file(runtime, src, dst, smoothing=smoothing)
            meter = FlickerMeter()
            with av.open(str(dst)) as result:
                for vf in result.decode(video=0):
                    meter.add_bgr(vf.to_ndarray(format="bgr24"))
            values[smoothing] = meter.value
    off, on = values[0.0], values[DEFAULT_SMOOTHING]
    return f"off {off:.2f} → on {on:.2f} ({(1 - on / off) * 100:.0f} % less)"


def plot(rows: list[Row], path: Path) -> None:
    """Per-frame flicker, smoothing off vs. the default, as a small PNG (OpenCV: no plotting dependency)."""
    w, h, pad = 720, 300, 40
    img = np.full((h, w, 3), 255, np.uint8)
    series = [(rows[0], (60, 60, 200)), (rows[2], (180, 120, 30))]
    top = max(max(np.nan_to_num(r.per_frame)) for r, _ in series) * 1.1 or 1.0
    n = len(rows[0].per_frame)
    cv2.rectangle(img, (pad, pad // 2), (w - pad // 2, h - pad), (200, 200, 200), 1)
    cut_x = pad + int((SHOT - 1) / (n - 1) * (w - 1.5 * pad))
    cv2.line(img, (cut_x, pad // 2), (cut_x, h - pad), (160, 160, 160), 1)
    cv2.putText(img, "cut", (cut_x + 4, pad), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (120, 120, 120), 1)
    for k, (row, colour) in enumerate(series):
        pts = [
            (pad + int(i / (n - 1) * (w - 1.5 * pad)), h - pad - int(v / top * (h - 1.5 * pad)))
            for i, v in enumerate(np.nan_to_num(row.per_frame))
        ]
        cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, f"{row.name}: {row.flicker:.2f}", (pad + 10, pad + 18 * k + 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)  # fmt: skip
    cv2.putText(img, "flicker per frame pair (Lab units)", (pad, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def flicker_markdown(rows: list[Row], encoded: str, cuts: dict[str, float], runtime: ModelRuntime) -> str:
    lines = [
        f"Model `{runtime.info.version}` on {runtime.info.provider}; clip {WIDTH}×{HEIGHT}, {2 * SHOT} frames "
        f"(two shots of {SHOT}). Lower is better in every column.",
        "",
        "| smoothing | flicker | colour lag on moving pixels | bleed into the first frame after the cut |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {r.flicker:.2f} | {r.moving_lag:.2f} | {r.cut_bleed:.2f} |")
    lines += [
        "",
        f"End to end through H.264 (`colorize_video_file`, decoded again): flicker {encoded}.",
        "",
        f"Mean |ΔL| between consecutive model-size frames: at most {cuts['within']:.1f} within a shot, "
        f"{cuts['cut']:.1f} at the cut; the scene-cut threshold is {DEFAULT_SCENE_CUT:g}.",
        "",
        "![flicker per frame, smoothing off vs. on](flicker.png)",
    ]
    return "\n".join(lines)


# -- latency ------------------------------------------------------------------------------------------


def write_clip(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode())


def latency_bench(model: Path, samples: int) -> str:
    """Start a real server, time /colorize idle and while a video job runs (median and p90 of ``samples``)."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "long.mp4"
        write_clip(clip, make_clip() * 4)  # 384 frames: long enough to outlast the measurement
        port = 8700 + os.getpid() % 200
        env = {**os.environ, "COLORIZER_VIDEO_DIR": str(Path(tmp) / "videos"), "COLORIZER_MODEL_PATH": str(model)}
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 -- lives as long as the server
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                for _ in range(600):
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                image = cv2.imencode(".png", make_clip()[0])[1].tobytes()

                def once() -> float:
                    started = time.perf_counter()
                    client.post("/colorize", files={"file": ("a.png", image, "image/png")}).raise_for_status()
                    return time.perf_counter() - started

                once()
                idle = [once() for _ in range(samples)]
                with clip.open("rb") as f:
                    job = client.post("/videos", files={"file": ("long.mp4", f, "video/mp4")}).raise_for_status().json()
                while client.get(job["status_url"]).json()["status"] != "running":
                    time.sleep(0.05)
                busy, ran = [], True
                for _ in range(samples):
                    busy.append(once())
                    ran &= client.get(job["status_url"]).json()["status"] == "running"
                status = client.get(job["status_url"]).json()
                client.delete(f"/videos/{job['id']}")
                info = client.get("/model").json()
        finally:
            server.terminate()
            server.wait(30)
            log.close()
    if not ran:
        print("warning: the job finished before the measurement did", file=sys.stderr)
    provider = info.get("provider") or info.get("providers", ["?"])[0]

    def stats(xs: list[float]) -> str:
        return f"{np.median(xs) * 1000:.0f} ms / {np.percentile(xs, 90) * 1000:.0f} ms"

    return "\n".join(
        [
            f"{WIDTH}×{HEIGHT} gray image, {samples} requests one after another, provider {provider}; "
            f"a {status['frames_total']}-frame {WIDTH}×{HEIGHT} video job was "
            f"{'running during every one of them' if ran else 'running during only some of them'}.",
            "",
            "| image latency (median / p90) | idle | during a video job |",
            "| --- | ---: | ---: |",
            f"| `POST /colorize` | {stats(idle)} | {stats(busy)} |",
        ]
    )


# -- docs ---------------------------------------------------------------------------------------------


def replace_section(text: str, name: str, body: str, command: str) -> str:
    block = f"<!-- bench:{name} -->\n`{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores)\n\n{body}\n"
    block += f"<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--latency", action="store_true", help="also time images during a video job")
    parser.add_argument("--samples", type=int, default=15, help="image requests per latency measurement")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()

    runtime = ModelRuntime(args.model, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    rows, encoded, cuts = flicker_bench(runtime)
    flicker_md = flicker_markdown(rows, encoded, cuts, runtime)
    print(flicker_md)
    latency_md = latency_bench(args.model, args.samples) if args.latency else None
    if latency_md:
        print("\n" + latency_md)
    if args.no_write:
        return
    plot(rows, PLOT)
    text = DOC.read_text() if DOC.exists() else "# Video\n"
    command = "python bench/flicker.py" + ("" if args.model == DEFAULT_MODEL else f" --model {args.model}")
    text = replace_section(text, "flicker", flicker_md, command)
    if latency_md:
        text = replace_section(text, "latency", latency_md, f"{command} --latency --samples {args.samples}")
    DOC.write_text(text)
    print(f"\nwrote {DOC.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
