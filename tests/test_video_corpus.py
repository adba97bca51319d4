"""The corpus of docs/VIDEO.md (tests/video_corpus.py): damaged and unusual films, each with its expected outcome;
the archival FFV1 output; and a job that survives a SIGKILL of its server."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from app.runtime import ModelRuntime
from app.video.media import MediaError, VideoReader, probe
from app.video.offline import colorize_video_file
from app.video.process import chunk_frames, colour_frames, read_chunk
from app.video.temporal import TemporalSmoother
from tests.conftest import MODEL, Server, launch
from tests.test_video import post_video, wait_for, write_clip
from tests.video_corpus import CORPUS, VFR_PTS, Case, mjpeg_bad_video, odd_size, prores_10bit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    return ModelRuntime(MODEL, ["CPUExecutionProvider"])


def decode(path: Path) -> tuple[list[Any], Any]:
    """Every frame of the first video stream (as PyAV frames) and the container's audio codec name or None."""
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
    return frames, audio


def check_outcome(case: Case, frames: list[Any], audio: str | None, warnings: list[str], filled: int) -> None:
    assert len(frames) == case.frames, "every frame of the source is in the result"
    assert audio == case.audio
    assert len(warnings) == len(case.warnings), warnings
    for phrase, warning in zip(case.warnings, warnings, strict=True):
        assert phrase in warning
    assert filled == case.filled


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_offline(name: str, runtime: ModelRuntime, tmp_path: Path) -> None:
    case = CORPUS[name]
    src = case.make(tmp_path / f"{name}{case.suffix}")
    dst = tmp_path / "out.mp4"
    if case.status == "failed":
        with pytest.raises(MediaError, match=case.error):
            colorize_video_file(runtime, src, dst)
        assert list(tmp_path.iterdir()) == [src], "a failure leaves nothing behind"
        return
    warnings = colorize_video_file(runtime, src, dst)
    frames, audio = decode(dst)
    filled = next((int(w.split()[0]) for w in warnings if "were filled" in w), 0)
    check_outcome(case, frames, audio, warnings, filled)
    info = probe(src)
    assert (frames[0].width, frames[0].height) == (info.width + info.width % 2, info.height + info.height % 2)
    if name == "variable-frame-rate":
        assert [round(float(f.time) * 24) for f in frames] == VFR_PTS, "variable frame rate stays variable"
    if name == "rotated-phone":
        assert frames[0].rotation == 90


def test_a_frame_that_does_not_decode_repeats_the_one_before(runtime: ModelRuntime, tmp_path: Path) -> None:
    """mjpeg-bad-video: packets 5 and 13 do not decode; frames 5 and 13 of the result repeat frames 4 and 12,
    and the timestamps of all 24 frames are the source's."""
    dst = tmp_path / "out.mp4"
    colorize_video_file(runtime, mjpeg_bad_video(tmp_path / "bad.avi"), dst, smoothing=0.0)
    frames, _ = decode(dst)
    images = [f.to_ndarray(format="bgr24").astype(np.int16) for f in frames]
    diff = [float(np.abs(images[i] - images[i - 1]).mean()) for i in range(1, len(images))]
    repeated = [i for i, d in enumerate(diff, start=1) if d < 1.0]
    assert repeated == [5, 13], diff
    assert [round(float(f.time) * 12) for f in frames] == list(range(24))


def _pipeline_frames(runtime: ModelRuntime, src: Path, deep: bool) -> list[np.ndarray]:
    """What the pipeline makes of ``src`` before any encoder: the truth a lossless file must hold."""
    info = probe(src)
    smoother = TemporalSmoother()
    out: list[np.ndarray] = []
    with VideoReader(src, deep=deep) as reader:
        while len(chunk := read_chunk(reader, chunk_frames(info.width, info.height), runtime.info.input_size, 0)):
            out += colour_frames(chunk, runtime.run(chunk.model_l, [None] * len(chunk)), smoother, 0)
    return out


def test_archival_ffv1_is_lossless_keeps_bit_depth_and_odd_size(runtime: ModelRuntime, tmp_path: Path) -> None:
    # 10-bit ProRes -> FFV1 RGB with 10 bits, every value the pipeline made, exactly.
    src = prores_10bit(tmp_path / "prores.mov")
    dst = tmp_path / "prores.mkv"
    assert colorize_video_file(runtime, src, dst, output="ffv1") == []
    frames, _ = decode(dst)
    with av.open(str(dst)) as c:
        assert c.format.name == "matroska,webm"
        assert c.streams.video[0].codec_context.name == "ffv1"
    assert frames[0].format.name == "gbrp10le"
    assert (frames[0].width, frames[0].height, len(frames)) == (64, 48, 8)
    truth = _pipeline_frames(runtime, src, deep=True)  # (H, W, 3) uint16 each
    got = [f.to_ndarray(format="bgr48le") for f in frames]
    # Values between 8-bit levels (multiples of 257 in 16 bits): an 8-bit round trip would put every value within
    # half a 10-bit step (32) of one; 10 bits put them anywhere, over half a 10-bit step away for about half of them.
    green = got[0][:, :, 1].astype(np.float64)
    between = float((np.abs(green - np.round(green / 257) * 257) > 48).mean())
    assert between > 0.2, f"only {between:.0%} of green values lie between 8-bit levels: the 10 bits were not kept"
    for want, have in zip(truth, got, strict=True):
        # 16-bit truth stored in 10 bits: within one 10-bit step (64 of 65535; an 8-bit step is 257).
        assert np.abs(want.astype(np.int32) - have.astype(np.int32)).max() <= 64

    # An odd size stays odd; 8 bits stay 8 bits, bit for bit.
    src = odd_size(tmp_path / "odd.mkv")
    dst = tmp_path / "odd-out.mkv"
    colorize_video_file(runtime, src, dst, output="ffv1")
    frames, _ = decode(dst)
    assert (frames[0].width, frames[0].height, frames[0].format.name) == (33, 25, "bgr0")
    truth = _pipeline_frames(runtime, src, deep=False)
    assert all(np.array_equal(want, f.to_ndarray(format="bgr24")) for want, f in zip(truth, frames, strict=True))


def test_the_mp4_of_an_odd_size_is_padded_by_one(runtime: ModelRuntime, tmp_path: Path) -> None:
    dst = tmp_path / "odd.mp4"
    colorize_video_file(runtime, odd_size(tmp_path / "odd.mkv"), dst)
    frames, _ = decode(dst)
    assert (frames[0].width, frames[0].height) == (34, 26)


# -- over HTTP ---------------------------------------------------------------------------------------------------


def post(client: httpx.Client, path: Path, **data: str) -> httpx.Response:
    with path.open("rb") as f:
        return client.post("/videos", files={"file": (path.name, f, "video/x-msvideo")}, data=data)


def test_corpus_over_http_warnings_filled_frames_and_archival_output(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server(COLORIZER_VIDEO_DIR=str(tmp_path / "videos"))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for name in ("ac3-avi-bad-audio", "mjpeg-bad-video", "mjpeg-ruined-video"):
            case = CORPUS[name]
            job = post(client, case.make(tmp_path / f"{name}{case.suffix}")).raise_for_status().json()
            final = wait_for(client, job["status_url"], {"done", "failed"})
            assert final["status"] == case.status, final
            if case.status == "failed":
                assert case.error in final["error"]
                continue
            out = tmp_path / f"{name}.mp4"
            out.write_bytes(client.get(f"{job['status_url']}/result").raise_for_status().content)
            frames, audio = decode(out)
            check_outcome(case, frames, audio, final["warnings"], final["frames_filled"])

        undecodable = post(client, CORPUS["undecodable-video"].make(tmp_path / "none.avi"))
        assert undecodable.status_code == 400
        assert "the video stream could not be decoded" in undecodable.json()["detail"]

        refused = post(client, CORPUS["mjpeg"].make(tmp_path / "m.avi"), output="webm")
        assert refused.status_code == 422
        assert refused.json()["code"] == "invalid_output"

        job = post(client, prores_10bit(tmp_path / "p.mov"), output="ffv1").raise_for_status().json()
        final = wait_for(client, job["status_url"], {"done", "failed"})
        assert (final["status"], final["output"], final["warnings"]) == ("done", "ffv1", [])
        answer = client.get(f"{job['status_url']}/result")
        assert answer.headers["content-type"] == "video/x-matroska"
        assert answer.headers["content-disposition"].endswith('.mkv"')
        (tmp_path / "p.mkv").write_bytes(answer.content)
        frames, _ = decode(tmp_path / "p.mkv")
        assert (len(frames), frames[0].format.name) == (8, "gbrp10le")


def test_a_job_survives_sigkill_and_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    """SIGKILL mid-job; a new server on the same store finishes the job with every frame, from the checkpoint."""
    store = tmp_path / "videos"
    env = {"COLORIZER_VIDEO_DIR": str(store), "COLORIZER_VIDEO_SMOOTHING": "0.7"}
    total = 160  # ten chunks of 16: the kill lands after the first checkpoint with nine chunks still to go
    src = write_clip(tmp_path / "long.mp4", frames=total, fps=24, width=64, height=48)
    server = launch(tmp_path, env)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            job = post_video(client, src).raise_for_status().json()
        checkpoint = store / job["id"] / "checkpoint.json"
        deadline = time.monotonic() + 120
        while not checkpoint.exists():  # the first finished chunk: watched on disk, so the kill follows at once
            assert time.monotonic() < deadline, "no chunk was finished"
            assert server.process.poll() is None
            time.sleep(0.005)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        kept = json.loads(checkpoint.read_text())["frames"]
        status = json.loads((store / job["id"] / "status.json").read_text())
        assert 0 < kept < total, "killed mid-job"
    finally:
        server.terminate()

    again = launch(tmp_path, env)
    try:
        with httpx.Client(base_url=again.url, timeout=60) as client:
            final = wait_for(client, job["status_url"], {"done", "failed"}, timeout=240)
            assert final["status"] == "done", final
            assert final["frames_done"] == final["frames_total"] == total
            resumed = final["resumed_from"]
            assert resumed >= kept, "the new server went on from the checkpoint, not from the start"
            coloured_again = float(
                next(
                    line.split()[-1]
                    for line in client.get("/metrics").text.splitlines()
                    if line.startswith("colorizer_video_frames_total ")
                )
            )
            assert coloured_again == total - resumed, "only the frames after the checkpoint were coloured again"
            out = tmp_path / "resumed.mp4"
            out.write_bytes(client.get(f"{job['status_url']}/result").raise_for_status().content)
            # The same film in one go, for comparison: the resumed one went on with the same smoothing state.
            whole = post_video(client, src).raise_for_status().json()
            assert wait_for(client, whole["status_url"], {"done", "failed"}, timeout=240)["status"] == "done"
            (tmp_path / "whole.mp4").write_bytes(client.get(f"{whole['status_url']}/result").content)
        frames, audio = decode(out)
        assert len(frames) == total
        assert audio == "aac"
        assert [round(float(f.time) * 24) for f in frames] == list(range(total)), "no frame twice, none missing"
        in_one_go, _ = decode(tmp_path / "whole.mp4")
        diff = [
            float(np.abs(a.to_ndarray(format="bgr24").astype(np.int16) - b.to_ndarray(format="bgr24")).mean())
            for a, b in zip(frames, in_one_go, strict=True)
        ]
        # Usually bit for bit (0.0); a smoother restarted at the checkpoint instead of restored differs by ~1.1 a
        # frame. Once (2026-12-02, AVX-512 CPU, CI from a fresh clone) the chunk after the checkpoint differed by
        # 0.04 to 0.13, growing through the chunk and back to 0.0 at the next one; the cause is not found (another
        # batch grouping does not change ONNX Runtime's output here). 0.4 lets that through and still catches a
        # restarted smoother.
        assert max(diff) < 0.4, f"resumed vs in one go, mean |difference| per frame: {diff}"
        # Frames redone: those the first server had coloured past its checkpoint when it was killed. It kept no
        # count (it was killed), but the pipeline bounds it: one chunk at the model, one being decoded.
        print(  # noqa: T201 -- for the record (pytest -s)
            f"\nkilled with {kept} frames checkpointed (its status said {status['frames_done']} done); the new "
            f"server resumed from frame {resumed} and coloured {coloured_again:.0f} frames; at most "
            f"{2 * 16} frames were coloured twice"
        )
        assert "resumes at frame" in again.log()
    finally:
        again.terminate()
