"""PyAV in and out: probe a file; decode its video in chunks, skipping what does not decode (as FFmpeg's own tools
do) and filling each lost frame with the one before it; encode each chunk as its own segment file, so that a job
can resume after a restart; finish by muxing the segments with the source's sound into MP4 (H.264, for browsers)
or Matroska (lossless FFV1, for archives).

Frames stay in their coded orientation; the source's display matrix is copied to the output, so players
rotate the result exactly as they rotated the original.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import av
import av.error
import cv2
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.codec.context import CodecContext, Flags
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.sidedata.sidedata import SideData
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
# Audio codecs that browsers play inside MP4: copied packet for packet. Anything else becomes AAC.
COPY_AUDIO = frozenset({"aac", "mp3", "opus", "flac"})
# Encoders in order of preference: H.264 plays everywhere; MPEG-4 part 2 is the fallback of last resort.
VIDEO_ENCODERS = ("libx264", "libopenh264", "mpeg4")
# Near-transparent (the colour is what the user came for); no B-frames, so that segments encoded one at a time
# join with increasing timestamps.
X264_OPTIONS = {"preset": "fast", "crf": "18", "bf": "0"}
# FFV1 version 3 with slice checksums and every frame a keyframe: what archives ask for (RFC 9043).
FFV1_OPTIONS = {"level": "3", "slicecrc": "1", "g": "1"}
MPEG4_BITS_PER_PIXEL = 0.25
AUDIO_BIT_RATE = 160_000
AAC_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}  # re-encoded audio keeps these; other channel counts -> stereo
AUDIO_NAMES = {"ac3": "AC-3", "eac3": "E-AC-3", "vorbis": "Vorbis", "mp2": "MP2", "alac": "ALAC", "dts": "DTS"}


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
    bit_depth: int = 8  # bits per component of the decoded video (10 for ProRes 10-bit)


@dataclass
class Frame:
    bgr: np.ndarray  # (H, W, 3) uint8, or uint16 when read deep; coded orientation
    pts: int | None


@dataclass(frozen=True)
class OutputSpec:
    """A kind of result: the browsers' MP4 (the default) or the archivists' Matroska."""

    name: str  # what POST /videos and the CLI call it
    container: str  # FFmpeg's muxer
    suffix: str
    media_type: str


OUTPUTS = {
    "mp4": OutputSpec("mp4", "mp4", ".mp4", "video/mp4"),
    "ffv1": OutputSpec("ffv1", "matroska", ".mkv", "video/x-matroska"),
}
DEFAULT_OUTPUT = "mp4"


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
        first = _first_frame(container, stream)
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
            bit_depth=max((c.bits for c in first.format.components), default=8),
        )


def _first_frame(container: InputContainer, stream: VideoStream) -> VideoFrame:
    """The first frame that decodes: packets that do not decode are skipped, as the reader will skip them."""
    error: BaseException | None = None
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError as exc:
                error = exc
                continue
            if frames:
                return frames[0]
    except av.error.FFmpegError as exc:
        error = exc
    if error is not None:
        raise InvalidMedia(f"the video stream could not be decoded ({_reason(error)})")
    raise InvalidMedia("the video stream has no frames")


def _count_packets(path: Path) -> int:
    """Frame count for containers that do not store it (Matroska, WebM): demux without decoding."""
    with _open(path) as container:
        stream = container.streams.video[0]
        count = 0
        try:
            for packet in container.demux(stream):
                count += packet.size > 0
        except av.error.FFmpegError as exc:
            log.info("counting frames stopped after %d packets (%s)", count, _reason(exc))
        return count


class VideoReader:
    """Decodes the first video stream in chunks of frames, the way FFmpeg's tools do: a packet that does not decode
    is skipped and counted, and the frame it held is filled with the frame before it (or, at the very start, the
    first that decodes), so frame count and duration hold. A read error in the container ends the stream early;
    ``stopped`` then says why. ``deep`` decodes to 16 bits a component (for sources of more than 8 bits)."""

    def __init__(self, path: Path, deep: bool = False) -> None:
        self.container = _open(path)
        if not self.container.streams.video:
            self.container.close()
            raise UnsupportedMedia("the file has no video stream")
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.deep = deep
        self._packets = self.container.demux(self.video)
        self._pending: list[tuple[VideoFrame | None, int | None]] = []  # None: a filler before any frame decoded
        self._last: VideoFrame | None = None
        self.done = False
        self.packets = 0  # video packets with data
        self.bad_packets = 0  # of them, those that did not decode
        self.frames = 0  # frames handed out (decoded and filled)
        self.filled = 0  # of them, the repeated ones
        self.stopped: str | None = None  # why the container could not be read to its end
        self.error: str | None = None  # the first decoding error, for sentences

    def _next_packet(self) -> Packet[Any] | None:
        try:
            return next(self._packets, None)
        except av.error.FFmpegError as exc:
            self.stopped = _reason(exc)
            return None

    def _decode(self, packet: Packet[Any]) -> None:
        if packet.size:
            self.packets += 1
        try:
            frames = self.video.decode(packet)
        except av.error.FFmpegError as exc:
            if not packet.size:
                return  # the decoder's flush at the end: nothing was lost
            self.bad_packets += 1
            self.error = self.error or _reason(exc)
            self.filled += 1
            self._pending.append((self._last, packet.pts))
            return
        for frame in frames:
            if self._last is None:  # fillers queued before the first frame take this one
                self._pending = [(frame, pts) for _, pts in self._pending]
            self._last = frame
            self._pending.append((frame, frame.pts))

    @property
    def decoded_any(self) -> bool:
        return self._last is not None

    def _fill(self, count: int) -> None:
        while not self.done and (len(self._pending) < count or (self._pending and self._pending[0][0] is None)):
            packet = self._next_packet()
            if packet is None:
                self.done = True
            else:
                self._decode(packet)
        if self.done and self._pending and self._pending[0][0] is None:
            self._pending = []  # nothing ever decoded: nothing to fill with

    def _take(self, count: int) -> list[tuple[VideoFrame, int | None]]:
        self._fill(count)
        taken, self._pending = self._pending[:count], self._pending[count:]
        self.frames += len(taken)
        return [(frame, pts) for frame, pts in taken if frame is not None]

    def read(self, count: int) -> list[Frame]:
        """Up to ``count`` frames in presentation order; fewer only at the end."""
        fmt = "bgr48le" if self.deep else "bgr24"
        return [Frame(frame.to_ndarray(format=fmt), pts) for frame, pts in self._take(count)]

    def skip(self, count: int) -> list[int | None]:
        """Pass over ``count`` frames (a resumed job's finished ones) without converting them; their timestamps."""
        return [pts for _, pts in self._take(count)]

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


@dataclass
class Timeline:
    """Output timestamps: the source's where it has them, made up from the frame rate where not, kept increasing."""

    fps: Fraction
    time_base: Fraction
    last_pts: int | None = None
    index: int = 0

    def next(self, pts: int | None) -> int:
        if pts is None:
            pts = round(self.index / self.fps / self.time_base)
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        self.index += 1
        return pts


@dataclass(frozen=True)
class Encoding:
    """How a job's video is encoded, the same for every segment and for the final stream (whose extradata must
    match the segments' packets)."""

    spec: OutputSpec
    encoder: str
    width: int
    height: int
    pix_fmt: str
    fps: Fraction
    time_base: Fraction
    bit_rate: int = 0
    options: dict[str, str] = field(default_factory=dict)

    @property
    def deep(self) -> bool:
        return self.pix_fmt.endswith("le")

    @classmethod
    def choose(cls, spec: OutputSpec, info: VideoInfo, time_base: Fraction | None) -> Encoding:
        tb = time_base or Fraction(1, 90_000)
        if spec.name == "ffv1":  # exact size, RGB, the source's bit depth: lossless for what the model made
            depth = info.bit_depth
            pix_fmt = "bgr0" if depth <= 8 else "gbrp10le" if depth <= 10 else "gbrp12le" if depth <= 12 else "gbrp16le"
            return cls(spec, "ffv1", info.width, info.height, pix_fmt, info.fps, tb, options=dict(FFV1_OPTIONS))
        encoder = pick_encoder()
        rate = 0
        if encoder == "mpeg4":  # no constant-quality mode worth the name: a generous bit rate instead
            rate = int(info.width * info.height * float(info.fps) * MPEG4_BITS_PER_PIXEL)
        options = dict(X264_OPTIONS) if encoder == "libx264" else {}
        # 4:2:0 needs even sides: an odd width or height gets one replicated column or row.
        width, height = info.width + info.width % 2, info.height + info.height % 2
        return cls(spec, encoder, width, height, "yuv420p", info.fps, tb, rate, options)

    def configure(self, ctx: CodecContext) -> None:
        video = cast(Any, ctx)
        video.width, video.height, video.pix_fmt = self.width, self.height, self.pix_fmt
        video.time_base, video.framerate = self.time_base, self.fps
        if self.bit_rate:
            video.bit_rate = self.bit_rate
        video.flags |= Flags.global_header  # MP4 and Matroska keep the parameter sets in the stream header

    def frame(self, bgr: np.ndarray, pts: int) -> VideoFrame:
        if bgr.dtype == np.uint16:
            frame = VideoFrame.from_ndarray(bgr, format="bgr48le")
        else:
            frame = VideoFrame.from_ndarray(_pad_even(bgr) if self.spec.name == "mp4" else bgr, format="bgr24")
        frame = frame.reformat(format=self.pix_fmt)
        frame.pts, frame.time_base = pts, self.time_base
        return frame


# A segment file: one chunk's encoded packets, each a header (pts, dts, duration, keyframe, size) and its bytes.
_SEGMENT_MAGIC = b"colorizer-segment-1\n"
_PACKET = struct.Struct("<qqqBI")
_NONE = -(2**63)


def write_segment(path: Path, encoding: Encoding, frames: list[np.ndarray], stamps: list[int]) -> None:
    """Encode ``frames`` with a fresh encoder (so the segment stands alone) into ``path``, written under a
    temporary name, flushed to disk and renamed: after a crash it is whole or absent."""
    ctx = cast(VideoCodecContext, CodecContext.create(encoding.encoder, "w"))
    encoding.configure(ctx)
    ctx.options = dict(encoding.options)
    temp = path.with_name(f".{path.name}.partial")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_SEGMENT_MAGIC)
        packets = [p for bgr, pts in zip(frames, stamps, strict=True) for p in ctx.encode(encoding.frame(bgr, pts))]
        packets += ctx.encode(None)
        for p in packets:
            data = bytes(p)
            none = _NONE
            header = (none if p.pts is None else p.pts, none if p.dts is None else p.dts, p.duration or 0)
            out.write(_PACKET.pack(*header, int(p.is_keyframe), len(data)))
            out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def read_segment(path: Path, encoding: Encoding) -> Iterator[Packet[Any]]:
    with path.open("rb") as f:
        if f.read(len(_SEGMENT_MAGIC)) != _SEGMENT_MAGIC:
            raise InvalidMedia(f"the segment {path.name} of this job is damaged")
        while header := f.read(_PACKET.size):
            pts, dts, duration, key, size = _PACKET.unpack(header)
            packet = Packet(f.read(size))
            packet.pts = None if pts == _NONE else pts
            packet.dts = None if dts == _NONE else dts
            packet.duration, packet.time_base, packet.is_keyframe = duration, encoding.time_base, bool(key)
            yield packet


def _packet_time(packet: Packet[Any]) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float((stamp or 0) * (packet.time_base or 0))


class _AudioTrack:
    """The source's first audio track on its way into the result: copied, or decoded and re-encoded; counted."""

    def __init__(self, out: OutputContainer, source: AudioStream, spec: OutputSpec) -> None:
        self.source = source
        self.name = source.codec_context.name
        self.label = AUDIO_NAMES.get(self.name, "PCM" if self.name.startswith("pcm_") else self.name.upper())
        self.packets = self.bad_packets = self.bad_writes = 0
        self._next = 0  # the sample the next re-encoded frame starts at, at the earliest
        self.notes: list[str] = []
        self.copy = spec.name == "ffv1" or self.name in COPY_AUDIO  # Matroska carries any codec unchanged
        self.stream: AudioStream
        if self.copy:
            try:
                self.stream = out.add_stream_from_template(source)
                return
            except (av.error.FFmpegError, ValueError) as exc:
                if spec.name != "ffv1":
                    raise
                log.info("%s audio cannot be copied into Matroska (%s); encoding FLAC", self.name, _reason(exc))
                self.copy = False
        target = "flac" if spec.name == "ffv1" else "aac"
        ctx = source.codec_context
        self.stream = cast(AudioStream, out.add_stream(target, rate=ctx.sample_rate))
        channels = len(ctx.layout.channels)
        self.stream.layout = AAC_LAYOUTS.get(channels, "stereo") if target == "aac" else ctx.layout
        if target == "aac":
            self.stream.bit_rate = AUDIO_BIT_RATE
        self.notes.append(f"the {self.label} sound track was re-encoded to {target.upper()}")

    def packets_in(self, container: InputContainer) -> Iterator[Packet[Any]]:
        try:
            for packet in container.demux(self.source):
                if packet.size:
                    self.packets += 1
                if self.copy:
                    if packet.size and packet.dts is not None:
                        packet.stream = self.stream
                        yield packet
                    continue
                try:
                    frames = self.source.decode(packet)
                except av.error.FFmpegError:
                    self.bad_packets += packet.size > 0
                    continue
                for frame in frames:
                    yield from self.stream.encode(self._retime(frame))
        except av.error.FFmpegError as exc:
            self.notes.append(f"the sound track could not be read past {self.packets} packets ({_reason(exc)})")
        if not self.copy:
            yield from self.stream.encode(None)

    def _retime(self, frame: AudioFrame) -> AudioFrame:
        """Timestamps in samples, never overlapping: after a skipped packet the next frame keeps its own time (so
        the sound stays in sync); a source without timestamps is laid end to end."""
        rate = frame.sample_rate
        start = round(frame.time * rate) if frame.time is not None else self._next
        frame.pts, frame.time_base = max(start, self._next), Fraction(1, rate)
        self._next = frame.pts + frame.samples
        return frame

    def warnings(self) -> list[str]:
        out = list(self.notes)
        if self.bad_packets:
            out.append(f"{self.bad_packets} of {self.packets} audio packets could not be decoded and were skipped")
        if self.bad_writes:
            out.append(f"{self.bad_writes} of {self.packets} audio packets could not be written and were skipped")
        return out


def finish(dst: Path, segments: list[Path], source: Path, info: VideoInfo, encoding: Encoding) -> list[str]:
    """Mux the segments' video with the source's sound into ``dst``; sentences for what could not be kept."""
    warnings: list[str] = []
    os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # private before FFmpeg writes
    options = {"movflags": "+faststart"} if encoding.spec.container == "mp4" else {}
    out: OutputContainer = av.open(str(dst), "w", format=encoding.spec.container, options=options)
    try:
        video = cast(VideoStream, out.add_stream(encoding.encoder, rate=encoding.fps, options=encoding.options))
        encoding.configure(video.codec_context)
        video.time_base = encoding.time_base
        if info.matrix is not None:
            video.set_display_matrix(info.matrix)
        with _open(source) as src:
            audio: _AudioTrack | None = None
            if src.streams.audio:
                first = src.streams.audio[0]
                try:
                    audio = _AudioTrack(out, first, encoding.spec)
                except (av.error.FFmpegError, ValueError, AttributeError) as exc:
                    name = first.codec_context.name if first.codec_context else first.name
                    warnings.append(
                        f"the film has no sound: its {name} track could neither be copied nor re-encoded "
                        f"({_reason(exc)})"
                    )
            video_packets = (p for seg in segments for p in read_segment(seg, encoding))

            def tagged(packets: Iterator[Packet[Any]], stream: Any) -> Iterator[Packet[Any]]:
                for p in packets:
                    p.stream = stream
                    yield p

            streams = [tagged(video_packets, video)]
            if audio is not None:
                streams.append(audio.packets_in(src))
            for packet in heapq.merge(*streams, key=_packet_time):
                if packet.stream is video:
                    out.mux(packet)
                    continue
                try:
                    out.mux(packet)
                except av.error.FFmpegError:
                    assert audio is not None
                    audio.bad_writes += 1
            if audio is not None:
                warnings += audio.warnings()
        out.close()
    except BaseException:
        with contextlib.suppress(av.error.FFmpegError):
            out.close()
        raise
    return warnings


def _pad_even(bgr: np.ndarray) -> np.ndarray:
    height, width = bgr.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return bgr
    return cv2.copyMakeBorder(bgr, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
