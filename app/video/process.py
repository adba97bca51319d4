"""The per-chunk frame work shared by server jobs and the offline CLI: frames -> model input, model ab ->
smoothed, full-resolution colour frames. Chunks bound memory; the model call itself is the caller's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.color import join
from app.pipeline import prepare_array
from app.video.media import AudioItem, VideoReader, VideoWriter
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
    audio: list[AudioItem]

    def __len__(self) -> int:
        return len(self.full_l)


def read_chunk(reader: VideoReader, count: int, size: int, rotation: int) -> Chunk:
    """Decode up to ``count`` frames and prepare them; an empty chunk (perhaps with audio) at the end."""
    frames, audio = reader.read(count)
    prepared = [prepare_array(frame.bgr, size) for frame in frames]
    turns = rotation // 90
    if prepared:
        # The model was trained on upright photos: show it the frame as players display it.
        model_l = np.stack([np.rot90(p.small_l, turns, axes=(1, 2)) for p in prepared])  # (N, 1, S, S)
    else:
        model_l = np.zeros((0, 1, size, size), np.float32)
    return Chunk([p.full_l for p in prepared], np.ascontiguousarray(model_l), [f.pts for f in frames], audio)


def colour_frames(chunk: Chunk, ab: np.ndarray, smoother: TemporalSmoother, rotation: int) -> list[np.ndarray]:
    """Model ab (N, 2, h, w) for the chunk -> smoothed -> (H, W, 3) uint8 BGR frames in coded orientation."""
    if len(ab) != len(chunk):
        raise RuntimeError(f"the model returned {len(ab)} results for {len(chunk)} frames")
    turns = rotation // 90
    frames = []
    for full_l, small_l, frame_ab in zip(chunk.full_l, chunk.model_l, ab, strict=True):
        steady = smoother.update(small_l, frame_ab)  # (2, h, w), upright
        frames.append(join(full_l, np.ascontiguousarray(np.rot90(steady, -turns, axes=(1, 2)))))
    return frames


def write_chunk(writer: VideoWriter, chunk: Chunk, ab: np.ndarray, smoother: TemporalSmoother, rotation: int) -> None:
    """Colour the chunk's frames and write them, with the audio read alongside them."""
    writer.write(colour_frames(chunk, ab, smoother, rotation), chunk.pts, chunk.audio)
