"""Guidance for films and the CLI: a reference photo or palette applies to every frame of a video job (frame count
and sound kept), and `colorizer colorize --hints/--reference` takes the same JSON and photos as the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, launch, photo_like
from tests.hint_model import export_small_model
from tests.test_video import assert_same_timing_and_sound, read_clip, wait_for, write_clip

pytestmark = pytest.mark.slow


def blue_png(path: Path) -> Path:
    img = np.zeros((60, 80, 3), np.uint8)
    img[:] = (200, 90, 30)
    cv2.imwrite(str(path), img)
    return path


def test_a_video_job_with_a_reference_keeps_its_frames_and_sound_and_changes_colour(tmp_path: Path) -> None:
    model = export_small_model(tmp_path / "hints.onnx", hints=True)
    server = launch(tmp_path, {"COLORIZER_MODEL_PATH": str(model), "COLORIZER_VIDEO_DIR": str(tmp_path / "videos")})
    try:
        src = write_clip(tmp_path / "in.mp4", frames=16)
        results = {}
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for name, extra in {
                "plain": {},
                "reference": {"reference": ("ref.png", blue_png(tmp_path / "ref.png").read_bytes(), "image/png")},
            }.items():
                with src.open("rb") as f:
                    r = client.post("/videos", files={"file": ("in.mp4", f, "video/mp4"), **extra})
                assert r.status_code == 202, r.text
                done = wait_for(client, r.json()["status_url"], {"done", "failed"})
                assert done["status"] == "done", done
                out = tmp_path / f"{name}.mp4"
                out.write_bytes(client.get(f"/videos/{r.json()['id']}/result").content)
                results[name] = read_clip(out)
            refused = client.post(
                "/videos",
                files={"file": ("in.mp4", src.read_bytes(), "video/mp4")},
                data={"hints": json.dumps({"points": [{"x": 1, "y": 1, "color": "#ff0000"}]})},
            )
            assert refused.status_code == 422
            assert refused.json()["code"] == "invalid_hints"
        source = read_clip(src)
        for clip in results.values():
            assert_same_timing_and_sound(source, clip)
        diff = np.mean(
            [
                np.abs(a.astype(int) - b.astype(int)).mean()
                for a, b in zip(results["plain"].frames, results["reference"].frames, strict=True)
            ]
        )
        assert diff > 1.0, "the reference should change the colour of the frames"
    finally:
        server.terminate()


def run_cli(*args: str, model: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "colorize", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"COLORIZER_MODEL_PATH": str(model), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def test_cli_takes_the_apis_hints_json_and_a_reference_for_photos_and_films(tmp_path: Path) -> None:
    guided = export_small_model(tmp_path / "hints.onnx", hints=True)
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.cvtColor(photo_like(120, 160), cv2.COLOR_BGR2GRAY))
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"points": [{"x": 40, "y": 90, "color": "#c03020", "radius": 10}]}))
    ref = blue_png(tmp_path / "ref.png")
    outs = {}
    for name, extra in {"plain": [], "hints": ["--hints", str(hints)], "reference": ["--reference", str(ref)]}.items():
        result = run_cli(str(photo), "-o", str(tmp_path / name), *extra, model=guided)
        assert result.returncode == 0, result.stderr
        outs[name] = cv2.imread(str(tmp_path / name / "p.png"))
    assert np.abs(outs["hints"].astype(int) - outs["plain"].astype(int)).max() > 0
    assert np.abs(outs["reference"].astype(int) - outs["plain"].astype(int)).max() > 0

    film = write_clip(tmp_path / "film.mp4", frames=8)
    result = run_cli(str(film), "-o", str(tmp_path / "film"), "--reference", str(ref), model=guided)
    assert result.returncode == 0, result.stderr
    assert len(read_clip(tmp_path / "film" / "film.mp4").frames) == 8
    refused = run_cli(str(film), "-o", str(tmp_path / "film2"), "--hints", str(hints), model=guided)
    assert refused.returncode == 2
    assert "a film takes a palette or --reference" in refused.stderr

    bad = tmp_path / "bad.json"
    bad.write_text('{"points": [{"x": 1, "y": 1, "color": "red"}]}')
    result = run_cli(str(photo), "-o", str(tmp_path / "bad"), "--hints", str(bad), model=guided)
    assert result.returncode == 2
    assert "'red' is not a #rrggbb colour" in result.stderr
    automatic = export_small_model(tmp_path / "auto.onnx", hints=False)
    result = run_cli(str(photo), "-o", str(tmp_path / "auto"), "--hints", str(hints), model=automatic)
    assert result.returncode == 2
    assert "takes no colour hints" in result.stderr


def test_cli_says_what_a_damaged_film_lost_and_writes_the_archival_file(tmp_path: Path) -> None:
    """`colorizer colorize` on Megamind.avi in small logs the job's warnings; `--video-output ffv1` gives FFV1 in
    Matroska; a ruined film is reported with its sentence and the exit status says so."""
    from tests.conftest import MODEL
    from tests.video_corpus import ac3_avi_bad_audio, mjpeg_ruined_video

    src = ac3_avi_bad_audio(tmp_path / "megamind.avi")
    result = run_cli(str(src), "-o", str(tmp_path / "out"), model=MODEL)
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr
    assert "megamind.avi: 3 of 29 audio packets could not be decoded and were skipped" in result.stderr
    assert "megamind.avi: the AC-3 sound track was re-encoded to AAC" in result.stderr
    assert len(read_clip(tmp_path / "out" / "megamind.mp4").frames) == 12

    result = run_cli(str(src), "-o", str(tmp_path / "archive"), "--video-output", "ffv1", model=MODEL)
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "archive" / "megamind.mkv")) as c:
        assert (c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name) == ("ffv1", "ac3")

    ruined = mjpeg_ruined_video(tmp_path / "ruined.avi")
    result = run_cli(str(ruined), "-o", str(tmp_path / "ruined"), model=MODEL)
    assert result.returncode == 1
    assert "the video stream is too damaged" in result.stderr
