"""The per-chunk frame work shared by server jobs and the offline CLI: frames -> model input, model ab ->
smoothed, full-resolution colour frames -> one segment file. Chunks bound memory; the model call itself is the
caller's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.color import join, lightness, lightness_u8, model_input
from app.edges import guided_ab
from app.video.media import Encoding, Timeline, VideoReader, write_segment
from app.video.temporal import TemporalSmoother

MAX_CHUNK_FRAMES = 16  # frames decoded, coloured and encoded together
CHUNK_PIXELS = 16 * 1920 * 1080  # full-resolution pixels a chunk may hold (fewer frames for 4K)


def chunk_frames(width: int, height: int) -> int:
    """How many frames of this size go in one chunk."""
    return max(1, min(MAX_CHUNK_FRAMES, CHUNK_PIXELS // max(1, width * height)))


@dataclass
class Chunk:
    full_l: list[np.ndarray]  # (H, W) float32 each, coded orientation
    model_l: np.ndarray  # (N, 1, S, S) float32, turned upright for the model
    pts: list[int | None]
    deep: bool = False  # the frames had 16 bits a component; their colour is made in 16 bits too

    def __len__(self) -> int:
        return len(self.full_l)


def read_chunk(reader: VideoReader, count: int, size: int, rotation: int) -> Chunk:
    """Decode up to ``count`` frames and prepare them; an empty chunk at the end."""
    frames = reader.read(count)
    full = [frame_lightness(frame.bgr) for frame in frames]
    turns = rotation // 90
    if full:
        # The model was trained on upright photos: show it the frame as players display it.
        model_l = np.stack([np.rot90(model_input(lum, size), turns, axes=(1, 2)) for lum in full])  # (N, 1, S, S)
    else:
        model_l = np.zeros((0, 1, size, size), np.float32)
    return Chunk(full, np.ascontiguousarray(model_l), [f.pts for f in frames], reader.deep)


def frame_lightness(bgr: np.ndarray) -> np.ndarray:
    """A decoded frame, uint8 or (read deep) uint16 BGR -> (H, W) float32 L; a gray 8-bit frame is a table lookup."""
    if bgr.dtype == np.uint16:
        return lightness(bgr.astype(np.float32) * (1.0 / 65535.0))
    return lightness_u8(bgr)


def join_deep(full_l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Like app.color.join, in float all the way: (H, W) L and (2, h, w) ab -> (H, W, 3) uint16 BGR."""
    height, width = full_l.shape
    ab_full = cv2.resize(ab.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W, 2)
    lab = np.dstack([full_l, ab_full]).astype(np.float32)  # (H, W, 3)
    bgr = cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)  # float in [0, 1], out-of-gamut clipped below
    out: np.ndarray = np.clip(np.rint(bgr * 65535.0), 0, 65535).astype(np.uint16)
    return out


def colour_frames(chunk: Chunk, ab: np.ndarray, smoother: TemporalSmoother, rotation: int) -> list[np.ndarray]:
    """Model ab (N, 2, h, w) for the chunk -> smoothed -> (H, W, 3) BGR frames in coded orientation."""
    if len(ab) != len(chunk):
        raise RuntimeError(f"the model returned {len(ab)} results for {len(chunk)} frames")
    turns = rotation // 90
    frames = []
    for full_l, small_l, frame_ab in zip(chunk.full_l, chunk.model_l, ab, strict=True):
        steady = guided_ab(smoother.update(small_l, frame_ab), small_l[0])  # (2, S, S), upright, along L's edges
        coded = np.ascontiguousarray(np.rot90(steady, -turns, axes=(1, 2)))
        frames.append(join_deep(full_l, coded) if chunk.deep else join(full_l, coded))
    return frames


def write_chunk(
    path: Path,
    encoding: Encoding,
    timeline: Timeline,
    chunk: Chunk,
    ab: np.ndarray,
    smoother: TemporalSmoother,
    rotation: int,
) -> None:
    """Colour the chunk's frames and write them as the segment ``path``."""
    frames = colour_frames(chunk, ab, smoother, rotation)
    write_segment(path, encoding, frames, [timeline.next(pts) for pts in chunk.pts])


def loss_error(reader: VideoReader, expected: int, max_lost: float) -> str | None:
    """The sentence a job fails with when its video is too damaged to be worth colouring, else None.

    Lost frames are the filled ones, and those the container stopped short of (when reading ended on an error).
    Checked as the frames come, so a hopeless film fails early."""
    total = max(expected, reader.frames)
    missing = max(0, expected - reader.frames) if reader.done and reader.stopped else 0
    lost = reader.filled + missing
    if reader.done and not reader.decoded_any:
        why = reader.error or reader.stopped or "no frame decoded"
        return f"the video stream could not be decoded: none of its {total} frames came out ({why})"
    if lost > max_lost * total:
        return (
            f"the video stream is too damaged: {lost} of {total} frames could not be decoded ({lost / total:.0%}); "
            f"at most {max_lost:.0%} may be lost (COLORIZER_VIDEO_MAX_LOST_FRAMES)"
        )
    return None


def reader_warnings(reader: VideoReader, expected: int) -> list[str]:
    """Sentences for what the reader skipped and filled, once it has read to the end."""
    total = max(expected, reader.frames)
    out = []
    if reader.filled:
        out.append(
            f"{reader.filled} of {total} video frames could not be decoded and were filled by repeating "
            "the previous frame"
        )
    if reader.stopped and reader.frames < expected:
        out.append(
            f"the file could not be read past frame {reader.frames} of {expected} ({reader.stopped}); "
            "the rest is missing"
        )
    return out
