"""Video parts without the model or a server: smoothing and the flicker measure, the job store, PyAV in and out."""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from app.video.media import (
    OUTPUTS,
    Encoding,
    InvalidMedia,
    Timeline,
    UnsupportedMedia,
    VideoReader,
    finish,
    probe,
    write_segment,
)
from app.video.process import Chunk, colour_frames
from app.video.store import Checkpoint, JobState, JobStore, QuotaExceeded, valid_id
from app.video.temporal import FlickerMeter, TemporalSmoother

S = 16  # model input size for these tests; ab comes back at half of it, as from the shipped model


def still_l(value: float = 50.0) -> np.ndarray:
    return np.full((1, S, S), value, np.float32)


def test_smoother_damps_prediction_noise_on_a_still_scene() -> None:
    rng = np.random.default_rng(0)
    truth = np.stack([np.full((S // 2, S // 2), 20.0), np.full((S // 2, S // 2), -10.0)]).astype(np.float32)
    raw = [truth + rng.normal(0, 5, truth.shape).astype(np.float32) for _ in range(60)]
    smoother = TemporalSmoother(smoothing=0.7, scene_cut=10)
    smoothed = [smoother.update(still_l(), ab).copy() for ab in raw]
    assert np.std(smoothed[10:], axis=0).mean() < 0.6 * np.std(raw[10:], axis=0).mean()
    assert abs(float(np.mean(smoothed[10:])) - float(truth.mean())) < 1
    assert smoother.cuts == 0


def test_smoother_follows_moving_pixels_at_once() -> None:
    smoother = TemporalSmoother(smoothing=0.9, scene_cut=30)
    smoother.update(still_l(), np.zeros((2, S // 2, S // 2), np.float32))
    moved = still_l()
    moved[:, :4, :4] = 90.0  # a bright object enters one corner: a local change, not a cut
    new_ab = np.full((2, S // 2, S // 2), 40.0, np.float32)
    out = smoother.update(moved, new_ab)
    assert np.allclose(out[:, :2, :2], 40.0), "where L changed, the new prediction wins"
    assert np.allclose(out[:, 4:, 4:], 40.0 * (1 - 0.9)), "where L held, history weighs in"


def test_smoother_resets_at_a_scene_cut() -> None:
    smoother = TemporalSmoother(smoothing=0.9, scene_cut=10)
    smoother.update(still_l(20), np.zeros((2, S // 2, S // 2), np.float32))
    fresh = np.full((2, S // 2, S // 2), 30.0, np.float32)
    assert np.array_equal(smoother.update(still_l(70), fresh), fresh), "no colour crosses a cut"
    assert smoother.cuts == 1


def test_smoothing_zero_is_off_and_bad_values_are_refused() -> None:
    ab = np.ones((2, S // 2, S // 2), np.float32)
    off = TemporalSmoother(smoothing=0.0)
    off.update(still_l(), ab * 5)
    assert off.update(still_l(), ab) is ab
    with pytest.raises(ValueError, match="smoothing"):
        TemporalSmoother(smoothing=1.0)
    with pytest.raises(ValueError, match="scene-cut"):
        TemporalSmoother(scene_cut=0)


def test_flicker_counts_only_pixels_whose_lightness_held() -> None:
    meter = FlickerMeter()
    first = np.zeros((4, 4, 3), np.float32)
    first[:, :, 0] = 50
    second = first.copy()
    second[:, :, 1] = 3.0  # a changes by 3 everywhere ...
    second[:2, :, 0] = 80  # ... but the top half also changed L, so only the bottom half counts
    second[:2, :, 1:] = 100.0
    meter.add(first)
    meter.add(second)
    assert meter.value == pytest.approx(1.5)  # mean of |Δa| = 3 and |Δb| = 0
    assert meter.per_frame == [pytest.approx(1.5)]


def test_store_is_private_atomic_and_refuses_strange_ids(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "videos")
    job_id = store.create()
    assert valid_id(job_id)
    assert not valid_id("../../etc")
    assert not valid_id("A" * 32)
    path, size = store.save_upload(job_id, io.BytesIO(b"x" * 1000), ".mp4", quota=10_000)
    assert (path.name, size) == ("input.mp4", 1000)
    store.write(JobState(job_id, "running", frames_total=10, frames_done=4))
    job_dir = store.dir(job_id)
    assert job_dir.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in job_dir.iterdir()} == {"input.mp4": 0o600, "status.json": 0o600}
    state = store.read(job_id)
    assert state is not None
    assert state.public() == {
        "id": job_id,
        "status": "running",
        "progress": 0.4,
        "frames_done": 4,
        "frames_total": 10,
        "error": None,
        "warnings": [],
        "frames_filled": 0,
        "output": "mp4",
        "resumed_from": None,
    }
    assert store.read("0" * 32) is None
    assert store.read("nope") is None

    store.request_cancel(job_id)
    assert store.read(job_id) is None, "a job being cancelled is gone for every reader"
    assert store.read(job_id, include_cancelled=True) is not None

    other = store.create()
    with pytest.raises(QuotaExceeded) as refused:
        store.save_upload(other, io.BytesIO(b"y" * 20_000), ".mp4", quota=10_000)
    assert refused.value.room == 10_000 - 1000 - len((job_dir / "status.json").read_bytes())
    assert list(store.dir(other).iterdir()) == [], "a refused upload leaves no bytes behind"
    store.remove(job_id)
    assert not job_dir.exists()
    assert store.usage() == 0


def test_probe_refuses_what_is_not_a_video(tmp_path: Path) -> None:
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(os.urandom(5000))
    with pytest.raises(InvalidMedia, match="could not be read as a video"):
        probe(noise)
    tone = tmp_path / "tone.m4a"
    with av.open(str(tone), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16_000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16_000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(UnsupportedMedia, match="no video stream"):
        probe(tone)


def test_audio_mp4_cannot_carry_is_reencoded_and_odd_sizes_are_padded(tmp_path: Path) -> None:
    """PCM audio in Matroska: the result has AAC of the same length; 95×63 frames become 96×64. Frames go through
    segment files (one per chunk, as a job writes them) and are muxed with the sound at the end."""
    src = tmp_path / "pcm.mkv"
    with av.open(str(src), "w") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 95, 63, "yuv420p"
        sound = out.add_stream("pcm_s16le", rate=22_050)
        sound.layout = "stereo"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((63, 95), 10 * i, np.uint8), format="gray")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        samples = np.zeros((2, 22_050 * 20 // 25), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 22_050, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode())
    info = probe(src)
    dst = tmp_path / "out.mp4"
    segments = []
    with VideoReader(src) as reader:
        encoding = Encoding.choose(OUTPUTS["mp4"], info, reader.video.time_base)
        timeline = Timeline(info.fps, encoding.time_base)
        while frames := reader.read(8):
            segments.append(tmp_path / f"{len(segments)}.seg")
            write_segment(segments[-1], encoding, [f.bgr for f in frames], [timeline.next(f.pts) for f in frames])
    assert finish(dst, segments, src, info, encoding) == ["the PCM sound track was re-encoded to AAC"]
    result = probe(dst)
    assert (result.width, result.height, result.frames, result.fps) == (96, 64, 20, Fraction(25))
    assert result.video_codec == "h264"
    assert result.audio_codec == "aac"
    assert abs(result.duration_s - info.duration_s) <= 1 / 25
    assert dst.stat().st_mode & 0o777 == 0o600
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in segments)


def test_a_checkpoint_is_whole_and_later_segments_are_dropped(tmp_path: Path) -> None:
    """A crash after a segment was written but before its checkpoint: the resumed run redoes that chunk."""
    store = JobStore(tmp_path / "videos")
    job_id = store.create()
    smoother = TemporalSmoother()
    smoother.update(still_l(), np.ones((2, S // 2, S // 2), np.float32))
    for i in range(3):
        store.segment_path(job_id, i).write_bytes(b"x")
    store.checkpoint(job_id, Checkpoint(2, 32), smoother.state())
    done, saved = store.read_checkpoint(job_id)
    assert done == Checkpoint(2, 32)
    assert saved is not None
    restored = TemporalSmoother()
    restored.restore(saved)
    new_ab = np.zeros((2, S // 2, S // 2), np.float32)
    assert np.array_equal(restored.update(still_l(), new_ab), smoother.update(still_l(), new_ab))
    assert sorted(p.name for p in (store.dir(job_id) / "segments").iterdir()) == ["000000.seg", "000001.seg"]


def test_each_frames_colour_is_put_on_its_own_edges_after_smoothing() -> None:
    """Video frames are joined by the chunk loop itself (it smooths colour between frames first), so it must take
    the same edge-aware step as images: red smeared over the edge of a dark and a light panel goes back to the
    dark one, in every frame, 8-bit and 16-bit alike."""

    size, height, width = 128, 96, 192
    small = np.full((1, size, size), 30.0, np.float32)
    small[:, :, size // 2 :] = 80.0  # model view: dark left, light right
    full = np.full((height, width), 30.0, np.float32)
    full[:, width // 2 :] = 80.0
    x = np.arange(size // 2, dtype=np.float32) + 0.5
    weight = np.clip((x - (size // 4 - 2)) / 4, 0, 1)  # red on the left, none on the right, blended at the edge
    ab = np.zeros((2, 2, size // 2, size // 2), np.float32)
    ab[:, 0] = 40 * (1 - weight)
    for deep in (False, True):
        chunk = Chunk([full, full], np.stack([small, small]), [0, 1], deep)
        for frame in colour_frames(chunk, ab, TemporalSmoother(0.7), rotation=0):
            scale = 65535.0 if deep else 255.0
            a = cv2.cvtColor((frame.astype(np.float32) / scale), cv2.COLOR_BGR2Lab)[height // 2, :, 1]
            assert a[width // 2 - 2] > 25, a[width // 2 - 6 : width // 2 + 6]  # the dark side keeps its red ...
            assert a[width // 2 + 1] < 8, a[width // 2 - 6 : width // 2 + 6]  # ... the light side loses it
