"""Videos offline (the `colorizer colorize` CLI): the server's pipeline, with the model session called directly."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from app.guidance import NO_GUIDANCE, Guidance
from app.runtime import ModelRuntime
from app.video.media import OUTPUTS, VIDEO_SUFFIXES, Encoding, InvalidMedia, Timeline, VideoReader, finish, probe
from app.video.process import chunk_frames, loss_error, read_chunk, reader_warnings, write_chunk
from app.video.temporal import DEFAULT_SCENE_CUT, DEFAULT_SMOOTHING, TemporalSmoother

__all__ = ["VIDEO_SUFFIXES", "colorize_video_file"]

log = logging.getLogger(__name__)
DEFAULT_MAX_LOST = 0.1  # as COLORIZER_VIDEO_MAX_LOST_FRAMES


def colorize_video_file(
    runtime: ModelRuntime,
    src: Path,
    dst: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    smoothing: float = DEFAULT_SMOOTHING,
    scene_cut: float = DEFAULT_SCENE_CUT,
    guidance: Guidance = NO_GUIDANCE,
    output: str = "mp4",
    max_lost: float = DEFAULT_MAX_LOST,
) -> list[str]:
    """Colourise ``src`` into ``dst`` (MP4, or FFV1 in Matroska for ``output="ffv1"``) a chunk at a time (bounded
    memory); ``progress(done, total)`` after each chunk. Returns the warnings (sentences: frames filled, audio
    skipped or re-encoded). Raises app.video.media.MediaError with a sentence for files it cannot read or that
    are too damaged. ``dst`` is written under a temporary name and renamed at the end, so a failure never leaves
    half a video behind."""
    spec = OUTPUTS[output]
    info = probe(src)
    size = runtime.info.input_size
    count = chunk_frames(info.width, info.height)
    smoother = TemporalSmoother(smoothing, scene_cut)
    bins = runtime.ab_bins
    hints = guidance.for_image(info.width, info.height, size, bins) if guidance and bins is not None else None
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial")
    parts = dst.with_name(f".{dst.name}.segments")
    parts.mkdir(mode=0o700, exist_ok=True)
    segments: list[Path] = []
    try:
        with VideoReader(src, deep=spec.name == "ffv1" and info.bit_depth > 8) as reader:
            encoding = Encoding.choose(spec, info, reader.video.time_base)
            timeline = Timeline(info.fps, encoding.time_base)
            done = 0
            while True:
                chunk = read_chunk(reader, count, size, info.rotation)
                if error := loss_error(reader, info.frames, max_lost):
                    raise InvalidMedia(error)
                if not len(chunk):
                    break
                ab = runtime.run(chunk.model_l, [hints] * len(chunk))
                segments.append(parts / f"{len(segments):06d}.seg")
                write_chunk(segments[-1], encoding, timeline, chunk, ab, smoother, info.rotation)
                done += len(chunk)
                if progress is not None:
                    progress(done, max(done, info.frames))
            warnings = reader_warnings(reader, info.frames)
        warnings += finish(partial, segments, src, info, encoding)
        partial.replace(dst)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    log.info("%s: %d frames colourised into %s (%d scene cuts)", src, done, dst, smoother.cuts)
    return warnings
