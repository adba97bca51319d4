"""Video: the offline function and the job API end to end, on short generated clips with a sound track."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest

from app.runtime import ModelRuntime
from app.video.offline import VIDEO_SUFFIXES, colorize_video_file
from tests.conftest import MODEL, Server, colourfulness, gray_png, photo_like


def write_clip(
    path: Path,
    frames: int = 24,
    fps: int = 12,
    width: int = 96,
    height: int = 64,
    audio: bool = True,
    rotation: int = 0,
) -> Path:
    """A gray H.264 clip of a panning scene, with a 440 Hz AAC tone as its sound track."""
    scene = cv2.cvtColor(photo_like(height, width * 2), cv2.COLOR_BGR2GRAY)
    rate = 16_000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=rate) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i in range(frames):
            step = i * width // max(1, frames)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, step : step + width]), format="gray")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            t = np.arange(int(rate * frames / fps)) / rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # (1, n)
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = rate, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return path


@dataclass
class Clip:
    frames: list[np.ndarray]
    fps: Fraction
    duration: float
    audio_codec: str | None
    audio_packets: list[bytes]
    rotation: int


def read_clip(path: Path) -> Clip:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        fps = video.average_rate
        assert fps is not None
        duration = (container.duration or 0) / 1e6
        decoded = list(container.decode(video))
        frames = [f.to_ndarray(format="bgr24") for f in decoded]
        rotation = decoded[0].rotation
    audio_codec, packets = None, []
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio_codec = container.streams.audio[0].codec_context.name
            packets = [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]
    return Clip(frames, Fraction(fps), duration, audio_codec, packets, rotation)


def mean_chroma(frames: list[np.ndarray]) -> float:
    return float(np.mean([colourfulness(f) for f in frames]))


def assert_same_timing_and_sound(source: Clip, result: Clip) -> None:
    assert len(result.frames) == len(source.frames)
    assert result.fps == source.fps
    assert abs(result.duration - source.duration) <= 1 / float(source.fps)
    assert result.frames[0].shape == source.frames[0].shape
    assert result.audio_codec == source.audio_codec
    assert result.audio_packets == source.audio_packets, "the audio should be copied packet for packet"
    assert result.rotation == source.rotation


@pytest.mark.slow
def test_offline_colorize_video_file_keeps_timing_sound_and_rotation(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "in.mp4", frames=20, rotation=90)
    dst = tmp_path / "out.mp4"
    runtime = ModelRuntime(MODEL, ["CPUExecutionProvider"])
    calls: list[tuple[int, int]] = []

    colorize_video_file(runtime, src, dst, lambda done, total: calls.append((done, total)))

    source, result = read_clip(src), read_clip(dst)
    assert_same_timing_and_sound(source, result)
    assert result.rotation == 90
    assert mean_chroma(result.frames) > mean_chroma(source.frames) + 2
    assert calls[-1] == (20, 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"], "no partial file is left behind"
    assert ".mp4" in VIDEO_SUFFIXES


# -- the job API, against a real server --------------------------------------------------------------


def wait_for(client: httpx.Client, url: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
    """Poll until the job's status is one of ``statuses``; a job that ends in another status fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(url).raise_for_status().json()
        if body["status"] in statuses:
            return body
        assert body["status"] not in {"done", "failed"}, f"the job ended as {body}, waiting for {statuses}"
        assert time.monotonic() < deadline, f"job still {body} after {timeout} s"
        time.sleep(0.05)


# A job that cannot finish while a test watches it, on any machine: 4000 model runs (minutes on a CPU, far more
# than the few requests a test makes on a GPU), but tiny frames, so the clip is made and decoded in a second.
# Tests that need a job held "running" use it and delete it when done, instead of hoping a short one is slow.
LONG_JOB = {"frames": 4000, "fps": 50, "width": 32, "height": 32, "audio": False}


def running(client: httpx.Client, url: str) -> dict[str, Any]:
    """Wait until the job has coloured its first chunk (so it is provably running, not just started)."""
    deadline = time.monotonic() + 120
    while True:
        body = wait_for(client, url, {"running"})
        if body["frames_done"] > 0:
            return body
        assert time.monotonic() < deadline, f"no progress: {body}"
        time.sleep(0.05)


def post_video(client: httpx.Client, path: Path) -> httpx.Response:
    with path.open("rb") as f:
        return client.post("/videos", files={"file": (path.name, f, "video/mp4")})


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert len(body["detail"].split()) >= 4, "the detail should be a sentence"


def assert_images_still_work(client: httpx.Client) -> None:
    answer = client.post("/colorize", files={"file": ("a.png", gray_png(48, 64), "image/png")})
    assert answer.status_code == 200, answer.text


def video_server(start_server: Callable[..., Server], tmp_path: Path, **env: str) -> tuple[Server, Path]:
    store = tmp_path / "videos"
    return start_server(COLORIZER_VIDEO_DIR=str(store), **env), store


@pytest.mark.slow
def test_video_job_end_to_end(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server, store = video_server(start_server, tmp_path, COLORIZER_API_KEYS="k1")
    src = write_clip(tmp_path / "in.mp4", frames=24)
    headers = {"Authorization": "Bearer k1"}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
        assert_error(httpx.post(server.url + "/videos", files={"file": ("a.mp4", b"x")}), 401, "missing_api_key")

        accepted = post_video(client, src)
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        assert job["status_url"] == f"/videos/{job['id']}"
        early = client.get(f"/videos/{job['id']}/result")
        if early.status_code != 200:  # only if the job were already finished
            assert_error(early, 409, "video_not_ready")

        final = wait_for(client, job["status_url"], {"done", "failed"})
        assert final == {"id": job["id"], "status": "done", "progress": 1.0, "frames_done": 24,
                         "frames_total": 24, "error": None, "warnings": [], "frames_filled": 0, "output": "mp4",
                         "resumed_from": None}  # fmt: skip

        answer = client.get(f"/videos/{job['id']}/result")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "video/mp4"
        (tmp_path / "out.mp4").write_bytes(answer.content)
        source, result = read_clip(src), read_clip(tmp_path / "out.mp4")
        assert_same_timing_and_sound(source, result)
        assert mean_chroma(result.frames) > mean_chroma(source.frames) + 2

        metrics = client.get("/metrics").text
        assert "colorizer_video_frames_total 24.0" in metrics
        assert 'colorizer_video_jobs{status="done"} 1.0' in metrics

        job_dir = store / job["id"]
        assert job_dir.stat().st_mode & 0o777 == 0o700
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in job_dir.iterdir())

        assert client.delete(f"/videos/{job['id']}").status_code == 204
        assert_error(client.get(job["status_url"]), 404, "video_not_found")
        assert not job_dir.exists()
        assert_error(client.get("/videos/0123456789abcdef0123456789abcdef/result"), 404, "video_not_found")
        assert_error(client.delete("/videos/not-a-job"), 404, "video_not_found")
        assert client.get("/videos/..%2F..%2Fetc%2Fpasswd/result").status_code == 404


@pytest.mark.slow
def test_delete_cancels_a_running_job_and_frees_its_files(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server, store = video_server(start_server, tmp_path)
    src = write_clip(tmp_path / "long.mp4", **LONG_JOB)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        job = post_video(client, src).raise_for_status().json()
        running(client, job["status_url"])

        assert client.delete(f"/videos/{job['id']}").status_code == 204

        assert_error(client.get(job["status_url"]), 404, "video_not_found")
        assert not (store / job["id"]).exists()
        assert list(store.iterdir()) == []
        assert_images_still_work(client)
        assert 'colorizer_video_jobs{status="running"} 0.0' in client.get("/metrics").text


@pytest.mark.slow
def test_bad_files_are_refused_and_disturb_nothing(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server, store = video_server(start_server, tmp_path)
    clip = write_clip(tmp_path / "in.mp4", frames=12).read_bytes()
    sound_only = tmp_path / "tone.m4a"
    with av.open(str(sound_only), "w", format="mp4") as out:
        tone = out.add_stream("aac", rate=16_000)
        tone.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16_000, 0
        out.mux(tone.encode(frame))
        out.mux(tone.encode())
    with httpx.Client(base_url=server.url, timeout=60) as client:
        noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
        assert_error(client.post("/videos", files={"file": ("noise.mp4", noise)}), 400, "invalid_video")
        truncated = clip[: len(clip) // 2]  # x264 + faststart-less MP4: the index is at the end
        answer = client.post("/videos", files={"file": ("cut.mp4", truncated)})
        if answer.status_code == 202:
            assert wait_for(client, answer.json()["status_url"], {"done", "failed"})["status"] == "failed"
        else:
            assert_error(answer, 400, "invalid_video")
        assert_error(post_video(client, sound_only), 415, "unsupported_video")
        assert_error(client.post("/videos", files={"file": ("empty.mp4", b"")}), 400, "empty_upload")
        assert_error(client.post("/videos"), 422, "missing_field")

        corrupt = bytearray(clip)
        mdat = corrupt.find(b"mdat")
        corrupt[mdat + 64 : mdat + 4000] = bytes(len(corrupt[mdat + 64 : mdat + 4000]))  # zero the first frames
        answer = client.post("/videos", files={"file": ("zeroed.mp4", bytes(corrupt))})
        if answer.status_code == 202:
            final = wait_for(client, answer.json()["status_url"], {"done", "failed"})
            assert final["status"] == "done" or len(final["error"].split()) >= 4
        else:
            assert answer.status_code in (400, 415)
        assert_images_still_work(client)
        assert client.get("/healthz").status_code == 200
    for job_dir in store.iterdir():  # refused uploads leave nothing; failed jobs keep only their status
        state = json.loads((job_dir / "status.json").read_text())
        assert state["status"] in ("done", "failed")
        assert state["status"] == "done" or not list(job_dir.glob("input*"))


@pytest.mark.slow
def test_limits_ttl_and_busy_answers(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server, store = video_server(
        start_server,
        tmp_path,
        COLORIZER_MAX_VIDEO_JOBS="1",
        COLORIZER_MAX_VIDEO_FRAMES="200",
        COLORIZER_VIDEO_TTL_S="1",
        COLORIZER_VIDEO_QUOTA_BYTES="400000",
    )
    with httpx.Client(base_url=server.url, timeout=60) as client:
        too_long = write_clip(tmp_path / "long.mp4", frames=201, fps=50, audio=False)
        assert_error(post_video(client, too_long), 413, "too_many_frames")
        big = np.random.default_rng(1).integers(0, 256, 500_000, dtype=np.uint8).tobytes()
        assert_error(client.post("/videos", files={"file": ("big.mp4", big)}), 413, "video_too_large")

        busy = write_clip(tmp_path / "busy.mp4", frames=120, fps=24, width=128, height=96)
        first = post_video(client, busy).raise_for_status().json()
        second = post_video(client, write_clip(tmp_path / "small.mp4", frames=6))
        assert_error(second, 503, "overloaded")
        assert int(second.headers["retry-after"]) > 0

        wait_for(client, first["status_url"], {"done"}, timeout=180)
        deadline = time.monotonic() + 15
        while client.get(first["status_url"]).status_code != 404:
            assert time.monotonic() < deadline, "the finished result should expire after COLORIZER_VIDEO_TTL_S"
            time.sleep(0.2)
        assert list(store.iterdir()) == []


@pytest.mark.slow
def test_images_are_answered_while_a_video_job_runs(start_server: Callable[..., Server], tmp_path: Path) -> None:
    """Images jump ahead of video frames in the batcher. Latency is printed for the record, not asserted."""
    server, _ = video_server(start_server, tmp_path)
    src = write_clip(tmp_path / "long.mp4", **LONG_JOB)
    image = gray_png(240, 320)
    with httpx.Client(base_url=server.url, timeout=60) as client:

        def image_latency() -> float:
            started = time.perf_counter()
            answer = client.post("/colorize", files={"file": ("a.png", image, "image/png")})
            assert answer.status_code == 200
            return time.perf_counter() - started

        image_latency()
        idle = [image_latency() for _ in range(5)]
        job = post_video(client, src).raise_for_status().json()
        running(client, job["status_url"])
        busy = []
        for _ in range(5):
            busy.append(image_latency())
            assert client.get(job["status_url"]).json()["status"] == "running", "the job should still be running"
        print(  # noqa: T201 -- the number for the record (pytest -s)
            f"\nimage latency, median of 5: idle {np.median(idle) * 1000:.0f} ms, "
            f"during a video job {np.median(busy) * 1000:.0f} ms"
        )
        assert client.delete(f"/videos/{job['id']}").status_code == 204


@pytest.mark.slow
def test_replicas_sharing_the_directory_answer_for_each_others_jobs(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "shared-videos"
    owner, other = (start_server(COLORIZER_VIDEO_DIR=str(store)) for _ in range(2))
    with httpx.Client(base_url=owner.url, timeout=60) as a, httpx.Client(base_url=other.url, timeout=60) as b:
        short = post_video(a, write_clip(tmp_path / "short.mp4", frames=8)).raise_for_status().json()
        wait_for(b, short["status_url"], {"done"})
        assert b.get(f"/videos/{short['id']}/result").headers["content-type"] == "video/mp4"

        long = post_video(a, write_clip(tmp_path / "long.mp4", **LONG_JOB))
        job = long.raise_for_status().json()
        running(b, job["status_url"])
        assert b.delete(f"/videos/{job['id']}").status_code == 204  # b does not run it: leaves a cancel marker
        assert_error(a.get(job["status_url"]), 404, "video_not_found")
        deadline = time.monotonic() + 30
        while (store / job["id"]).exists():  # the owner sees the marker and cleans up
            assert time.monotonic() < deadline, "the owning replica should cancel and remove the job"
            time.sleep(0.2)
        assert 'colorizer_video_jobs{status="running"} 0.0' in a.get("/metrics").text


@pytest.mark.slow
def test_shutdown_keeps_a_running_job_and_the_next_server_finishes_it(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server, store = video_server(start_server, tmp_path)
    src = write_clip(tmp_path / "long.mp4", frames=160, fps=24, width=32, height=32)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        job = post_video(client, src).raise_for_status().json()
        running(client, job["status_url"])  # then SIGTERM at once: nine of ten chunks are still to do
    assert server.terminate() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    state = json.loads((store / job["id"] / "status.json").read_text())
    assert state["status"] == "queued", "a job stopped by a shutdown waits to be resumed"
    kept = json.loads((store / job["id"] / "checkpoint.json").read_text())["frames"]
    assert kept > 0
    again, _ = video_server(start_server, tmp_path)
    with httpx.Client(base_url=again.url, timeout=60) as client:
        final = wait_for(client, job["status_url"], {"done", "failed"})
        assert (final["status"], final["frames_done"], final["resumed_from"]) == ("done", 160, kept)
        out = tmp_path / "out.mp4"
        out.write_bytes(client.get(f"/videos/{job['id']}/result").raise_for_status().content)
    assert_same_timing_and_sound(read_clip(src), read_clip(out))
    assert sorted(p.name for p in (store / job["id"]).iterdir()) == ["result.mp4", "status.json"]
