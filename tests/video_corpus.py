"""The damaged and unusual films of docs/VIDEO.md's corpus table, made by code (PyAV) in a few frames each.

Each maker writes a file and returns it; ``CORPUS`` names every case with its expected outcome, the same as the
table. Damage is done the way it happens in real files: some packets' bytes are scrambled (their size and
timestamps kept), so the container reads fine and only the decoder fails on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

W, H = 64, 48  # small: the corpus must stay fast on two cores


def scene(i: int, width: int = W, height: int = H, peak: int = 255) -> np.ndarray:
    """A gray frame that changes from frame to frame (a bright bar moving over a ramp), (H, W) in 0..peak."""
    ramp = np.linspace(0.15, 0.85, width)[None, :].repeat(height, 0)
    bar = (np.arange(width)[None, :] - 3 * i) % width < max(2, width // 8)
    return np.rint((ramp + 0.1 * bar) / 1.1 * peak)


def _scramble(packet: Any, stream: Any) -> Any:
    """The same packet with its bytes scrambled: the container carries it, the decoder refuses it."""
    bad = av.Packet(bytes(b ^ 0x5A for b in bytes(packet)))
    bad.pts, bad.dts, bad.duration, bad.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
    bad.is_keyframe = packet.is_keyframe
    bad.stream = stream
    return bad


def _tone(
    out: Any, codec: str, rate: int, seconds: float, layout: str = "stereo", bad: Iterable[int] = ()
) -> Callable[[], int]:
    """A 440 Hz tone as the file's sound track; packets numbered in ``bad`` are scrambled. The stream is added at
    once (every stream before the first packet); the returned function writes it and says how many packets."""
    stream = out.add_stream(codec, rate=rate)
    stream.layout = layout
    return lambda: _write_tone(out, stream, rate, seconds, layout, bad)


def _write_tone(out: Any, stream: Any, rate: int, seconds: float, layout: str, bad: Iterable[int]) -> int:
    channels = 1 if layout == "mono" else 2
    samples = int(rate * seconds)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    frame_size = stream.codec_context.frame_size or 1024
    bad, n = set(bad), 0
    for start in range(0, samples, frame_size):
        block = np.repeat(tone[None, start : start + frame_size], channels, 0)  # (C, n)
        if fmt == "s16":
            frame = av.AudioFrame.from_ndarray((block.T.reshape(1, -1) * 32767).astype(np.int16), "s16", layout)
        elif fmt == "flt":
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T.reshape(1, -1)), "flt", layout)
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), "fltp", layout)
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(_scramble(packet, stream) if n in bad else packet)
            n += 1
    for packet in stream.encode(None):
        out.mux(packet)
        n += 1
    return n


def _video(
    out: Any,
    codec: str,
    frames: int,
    fps: int,
    pix_fmt: str,
    *,
    width: int = W,
    height: int = H,
    bad: Iterable[int] = (),
    pts: list[int] | None = None,
    options: dict[str, str] | None = None,
    rotation: int = 0,
    peak: int = 255,
    time_base: Fraction | None = None,
) -> Callable[[], None]:
    """A video stream of ``scene`` frames, added at once; the returned function writes it."""
    stream = out.add_stream(codec, rate=fps, options=options or {})
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if time_base is not None:
        stream.time_base = stream.codec_context.time_base = time_base
    if rotation:
        stream.set_display_rotation(rotation)
    return lambda: _write_video(out, stream, frames, width, height, pix_fmt, bad, pts, peak)


def _write_video(
    out: Any,
    stream: Any,
    frames: int,
    width: int,
    height: int,
    pix_fmt: str,
    bad: Iterable[int],
    pts: list[int] | None,
    peak: int,
) -> None:
    bad, n = set(bad), 0
    for i in range(frames):
        gray = scene(i, width, height, peak)
        if peak > 255:
            plane = np.repeat(gray.astype(np.uint16)[:, :, None], 3, 2)
            frame = av.VideoFrame.from_ndarray(plane, format="rgb48le").reformat(format=pix_fmt)
        else:
            frame = av.VideoFrame.from_ndarray(gray.astype(np.uint8), format="gray").reformat(format=pix_fmt)
        frame.pts = i if pts is None else pts[i]
        for packet in stream.encode(frame):
            out.mux(_scramble(packet, stream) if n in bad else packet)
            n += 1
    for packet in stream.encode(None):
        out.mux(_scramble(packet, stream) if n in bad else packet)
        n += 1


def ac3_avi_bad_audio(path: Path) -> Path:
    """Megamind.avi in small: fine video, AC-3 sound with three packets that do not decode."""
    with av.open(str(path), "w", format="avi") as out:
        video, sound = _video(out, "mjpeg", 12, 12, "yuvj420p"), _tone(out, "ac3", 48_000, 1.0, bad=(2, 5, 9))
        video()
        sound()
    return path


def mjpeg_bad_video(path: Path) -> Path:
    """Two of 24 video packets do not decode (a scratched tape): under the 10 % that may be lost."""
    with av.open(str(path), "w", format="avi") as out:
        _video(out, "mjpeg", 24, 12, "yuvj420p", bad=(5, 13))()
    return path


def mjpeg_ruined_video(path: Path) -> Path:
    """Nine of 24 video packets do not decode: over the 10 % that may be lost."""
    with av.open(str(path), "w", format="avi") as out:
        _video(out, "mjpeg", 24, 12, "yuvj420p", bad=range(3, 24, 2)[:9])()
    return path


def undecodable_video(path: Path) -> Path:
    """No video packet decodes at all."""
    with av.open(str(path), "w", format="avi") as out:
        _video(out, "mjpeg", 8, 12, "yuvj420p", bad=range(8))()
    return path


def pcm_avi(path: Path) -> Path:
    with av.open(str(path), "w", format="avi") as out:
        video, sound = _video(out, "mjpeg", 12, 12, "yuvj420p"), _tone(out, "pcm_s16le", 22_050, 1.0)
        video()
        sound()
    return path


def vp9_opus_webm(path: Path) -> Path:
    with av.open(str(path), "w", format="webm") as out:
        video = _video(out, "libvpx-vp9", 12, 12, "yuv420p", options={"deadline": "realtime", "cpu-used": "8"})
        sound = _tone(out, "libopus", 48_000, 1.0)
        video()
        sound()
    return path


def prores_10bit(path: Path) -> Path:
    """ProRes 422 HQ, 10 bits a component, in MOV: the values' low bits matter."""
    with av.open(str(path), "w", format="mov") as out:
        _video(out, "prores_ks", 8, 12, "yuv422p10le", options={"profile": "3"}, peak=65535)()
    return path


def mjpeg_plain(path: Path) -> Path:
    with av.open(str(path), "w", format="avi") as out:
        _video(out, "mjpeg", 12, 12, "yuvj420p")()
    return path


VFR_PTS = [0, 1, 2, 4, 5, 8, 9, 10, 14, 15, 16, 20]  # in 1/24 s: frames 1/24 to 4/24 s apart


def variable_rate(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        _video(out, "libx264", 12, 24, "yuv420p", pts=VFR_PTS, time_base=Fraction(1, 24), options={"bf": "0"})()
    return path


def rotated_phone(path: Path) -> Path:
    """A phone held upright: H.264 stored landscape with a 90° display matrix, AAC sound."""
    with av.open(str(path), "w", format="mp4") as out:
        video = _video(out, "libx264", 12, 12, "yuv420p", rotation=90)
        sound = _tone(out, "aac", 16_000, 1.0, layout="mono")
        video()
        sound()
    return path


def odd_size(path: Path) -> Path:
    """641×481 in spirit: odd on both sides (here 33×25)."""
    with av.open(str(path), "w", format="matroska") as out:
        _video(out, "ffv1", 12, 12, "yuv420p", width=33, height=25)()
    return path


@dataclass(frozen=True)
class Case:
    """One row of docs/VIDEO.md's corpus table."""

    make: Callable[[Path], Path]
    suffix: str
    status: str  # "done" or "failed"
    frames: int  # frames in the source, all of them in a done result
    filled: int = 0
    audio: str | None = None  # the result's audio codec
    warnings: tuple[str, ...] = ()  # a phrase each expected warning contains, in order
    error: str = ""  # a phrase the failed job's sentence contains
    extra: dict[str, Any] = field(default_factory=dict)


CORPUS = {
    "ac3-avi-bad-audio": Case(
        ac3_avi_bad_audio,
        ".avi",
        "done",
        12,
        audio="aac",
        warnings=(
            "AC-3 sound track was re-encoded to AAC",
            "3 of 29 audio packets could not be decoded and were skipped",
        ),
    ),
    "mjpeg-bad-video": Case(
        mjpeg_bad_video,
        ".avi",
        "done",
        24,
        filled=2,
        warnings=("2 of 24 video frames could not be decoded and were filled by repeating the previous frame",),
    ),
    "mjpeg-ruined-video": Case(
        mjpeg_ruined_video, ".avi", "failed", 24, error="the video stream is too damaged: 7 of 24 frames"
    ),
    # Refused at upload (400 invalid_video): probing finds no frame that decodes.
    "undecodable-video": Case(undecodable_video, ".avi", "failed", 8, error="the video stream could not be decoded"),
    "pcm-avi": Case(pcm_avi, ".avi", "done", 12, audio="aac", warnings=("PCM sound track was re-encoded to AAC",)),
    "vp9-opus-webm": Case(vp9_opus_webm, ".webm", "done", 12, audio="opus"),
    "prores-10bit": Case(prores_10bit, ".mov", "done", 8),
    "mjpeg": Case(mjpeg_plain, ".avi", "done", 12),
    "variable-frame-rate": Case(variable_rate, ".mp4", "done", 12),
    "rotated-phone": Case(rotated_phone, ".mp4", "done", 12, audio="aac"),
    "odd-size": Case(odd_size, ".mkv", "done", 12),
}
