"""PyAV in and out: probe a file, read frames and audio in chunks, write H.264/MP4 with the audio copied.

Frames stay in their coded orientation; the source's display matrix is copied to the output, so players
rotate the result exactly as they rotated the original.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias, cast

import av
import av.error
import cv2
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.sidedata.sidedata import SideData
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
# Audio codecs that browsers play inside MP4: copied packet for packet. Anything else becomes AAC.
COPY_AUDIO = frozenset({"aac", "mp3", "opus", "flac"})
# Encoders in order of preference: H.264 plays everywhere; MPEG-4 part 2 is the fallback of last resort.
VIDEO_ENCODERS = ("libx264", "libopenh264", "mpeg4")
X264_OPTIONS = {"preset": "fast", "crf": "18"}  # near-transparent; the colour is what the user came for
MPEG4_BITS_PER_PIXEL = 0.25
AUDIO_BIT_RATE = 160_000
AAC_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}  # re-encoded audio keeps these; other channel counts -> stereo


class MediaError(Exception):
    """The file cannot be processed; the message is a sentence for the user."""


class InvalidMedia(MediaError):
    """Not a readable video at all (corrupt, truncated, or not a media file)."""


class UnsupportedMedia(MediaError):
    """A readable file we cannot colourise (no video stream, no decoder)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: Fraction
    duration_s: float
    rotation: int  # degrees counter-clockwise that players turn the coded frame (0, 90, 180, 270)
    video_codec: str
    audio_codec: str | None
    matrix: tuple[int, ...] | None  # the source's display matrix (rotation and flips), copied to the output


@dataclass
class Frame:
    bgr: np.ndarray  # (H, W, 3) uint8, coded orientation
    pts: int | None


AudioItem: TypeAlias = "Packet[Any] | AudioFrame"  # Packet is generic only in the stubs


def pick_encoder() -> str:
    """The best video encoder this FFmpeg build has (see docs/VIDEO.md for what each build offers)."""
    for name in VIDEO_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (av.error.FFmpegError, ValueError):  # UnknownCodecError subclasses ValueError
            continue
        return name
    raise UnsupportedMedia("this server's FFmpeg has no H.264 or MPEG-4 encoder; install one (e.g. libx264)")


def _open(path: Path) -> InputContainer:
    try:
        return av.open(str(path), "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InvalidMedia(f"the file could not be read as a video ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).rstrip(".").lower()


def _rotation(stream: VideoStream, first: VideoFrame) -> int:
    """Rotation from the display matrix (newer FFmpeg) or the legacy clockwise `rotate` tag."""
    degrees = first.rotation
    if not degrees and (tag := stream.metadata.get("rotate")):
        try:
            degrees = -int(float(tag))
        except ValueError:
            degrees = 0
    return int(round(degrees / 90)) % 4 * 90


def _display_matrix(first: VideoFrame) -> tuple[int, ...] | None:
    """The 3×3 display matrix as nine int32, as FFmpeg stores it."""
    sides = cast("Mapping[str, SideData]", first.side_data)  # PyAV's stub lists only MOTION_VECTORS
    side = sides.get("DISPLAYMATRIX")
    if side is None:
        return None
    values = np.frombuffer(bytes(side), dtype="<i4")
    return tuple(int(v) for v in values[:9]) if values.size >= 9 else None


def probe(path: Path) -> VideoInfo:
    """What a job needs to know before it starts; raises MediaError with a sentence for bad files."""
    with _open(path) as container:
        if not container.streams.video:
            raise UnsupportedMedia("the file has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise UnsupportedMedia(f"this server cannot decode the video codec of this file ({stream.name})")
        try:
            first = next(container.decode(stream))
        except StopIteration:
            raise InvalidMedia("the video stream has no frames") from None
        except av.error.FFmpegError as exc:
            raise InvalidMedia(f"the video stream could not be decoded ({_reason(exc)})") from exc
        rotation = _rotation(stream, first)
        frames = stream.frames or _count_packets(path)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        if container.duration:
            duration = container.duration / 1_000_000
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = frames / float(fps)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return VideoInfo(
            width=first.width,
            height=first.height,
            frames=frames,
            fps=Fraction(fps),
            duration_s=duration,
            rotation=rotation,
            video_codec=stream.codec_context.name,
            audio_codec=audio,
            matrix=_display_matrix(first),
        )


def _count_packets(path: Path) -> int:
    """Frame count for containers that do not store it (Matroska, WebM): demux without decoding."""
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError as exc:
            raise InvalidMedia(f"the video could not be read to the end ({_reason(exc)})") from exc


class VideoReader:
    """Decodes the first video stream in chunks of frames, collecting the audio met on the way.

    Audio comes out as packets when it will be copied, or as decoded frames when it must be re-encoded.
    """

    def __init__(self, path: Path) -> None:
        self.container = _open(path)
        if not self.container.streams.video:
            self.container.close()
            raise UnsupportedMedia("the file has no video stream")
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.audio: AudioStream | None = self.container.streams.audio[0] if self.container.streams.audio else None
        self.copy_audio = self.audio is not None and self.audio.codec_context.name in COPY_AUDIO
        streams = [self.video] if self.audio is None else [self.video, self.audio]
        self._packets = self.container.demux(streams)
        self._pending: list[Frame] = []
        self.done = False

    def read(self, count: int) -> tuple[list[Frame], list[AudioItem]]:
        """Up to ``count`` frames in presentation order, and the audio demuxed alongside them."""
        audio: list[AudioItem] = []
        try:
            while len(self._pending) < count and not self.done:
                packet = next(self._packets, None)
                if packet is None:
                    self.done = True
                elif packet.stream is self.video:
                    for frame in self.video.decode(packet):
                        self._pending.append(Frame(frame.to_ndarray(format="bgr24"), frame.pts))
                elif self.copy_audio:
                    if packet.size and packet.dts is not None:
                        audio.append(packet)
                elif self.audio is not None:
                    audio.extend(self.audio.decode(packet))
        except av.error.FFmpegError as exc:
            raise InvalidMedia(f"the video could not be decoded ({_reason(exc)})") from exc
        frames, self._pending = self._pending[:count], self._pending[count:]
        return frames, audio

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class VideoWriter:
    """H.264 (or the best encoder available) in MP4, yuv420p, the source's timestamps and display matrix."""

    def __init__(self, path: Path, reader: VideoReader, info: VideoInfo) -> None:
        self.encoder = pick_encoder()
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # private before FFmpeg writes
        self.container: OutputContainer = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        src = reader.video
        self.time_base = src.time_base or Fraction(1, 90_000)
        options = X264_OPTIONS if self.encoder == "libx264" else {}
        self.video = cast(VideoStream, self.container.add_stream(self.encoder, rate=info.fps, options=options))
        self.video.width, self.video.height = info.width + info.width % 2, info.height + info.height % 2
        self.video.pix_fmt = "yuv420p"  # 4:2:0 needs even sides: odd ones get one replicated row or column
        self.video.time_base = self.time_base
        self.video.codec_context.time_base = self.time_base
        if self.encoder == "mpeg4":  # no constant-quality mode worth the name: a generous bit rate instead
            self.video.bit_rate = int(info.width * info.height * float(info.fps) * MPEG4_BITS_PER_PIXEL)
        if info.matrix is not None:
            self.video.set_display_matrix(info.matrix)
        self._fps = info.fps
        self._last_pts: int | None = None
        self._index = 0
        self.audio: AudioStream | None = None
        self.copy_audio = reader.copy_audio
        if reader.audio is not None:
            if self.copy_audio:
                self.audio = self.container.add_stream_from_template(reader.audio)
            else:
                ctx = reader.audio.codec_context
                self.audio = self.container.add_stream("aac", rate=ctx.sample_rate)
                channels = len(ctx.layout.channels)
                self.audio.layout = AAC_LAYOUTS.get(channels, "stereo")
                self.audio.bit_rate = AUDIO_BIT_RATE
                log.info("audio codec %s cannot be copied into MP4; re-encoding it as AAC", ctx.name)

    def _pts(self, pts: int | None) -> int:
        """The source timestamp; made up from the frame rate where the source has none, kept increasing."""
        if pts is None:
            pts = round(self._index / self._fps / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        self._index += 1
        return pts

    def write(self, frames: list[np.ndarray], pts: list[int | None], audio: list[AudioItem]) -> None:
        """Encode coloured frames ((H, W, 3) uint8 BGR) and mux the audio that goes with them."""
        for bgr, stamp in zip(frames, pts, strict=True):
            frame = VideoFrame.from_ndarray(_pad_even(bgr), format="bgr24")
            frame.pts, frame.time_base = self._pts(stamp), self.time_base
            self.container.mux(self.video.encode(frame))
        self._write_audio(audio)

    def _write_audio(self, audio: list[AudioItem]) -> None:
        if self.audio is None:
            return
        for item in audio:
            if isinstance(item, Packet):
                item.stream = self.audio
                self.container.mux(item)
            else:
                self.container.mux(self.audio.encode(item))

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        if self._index:
            self.container.mux(self.video.encode())
        if self.audio is not None and not self.copy_audio:
            self.container.mux(self.audio.encode())
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except av.error.FFmpegError:
            log.debug("closing an aborted output failed", exc_info=True)


def _pad_even(bgr: np.ndarray) -> np.ndarray:
    height, width = bgr.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return bgr
    return cv2.copyMakeBorder(bgr, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
