"""Videos offline (the `colorizer colorize` CLI): the server's pipeline, with the model session called directly."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from app.guidance import NO_GUIDANCE, Guidance
from app.runtime import ModelRuntime
from app.video.media import VIDEO_SUFFIXES, VideoReader, VideoWriter, probe
from app.video.process import chunk_frames, read_chunk, write_chunk
from app.video.temporal import DEFAULT_SCENE_CUT, DEFAULT_SMOOTHING, TemporalSmoother

__all__ = ["VIDEO_SUFFIXES", "colorize_video_file"]

log = logging.getLogger(__name__)


def colorize_video_file(
    runtime: ModelRuntime,
    src: Path,
    dst: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    smoothing: float = DEFAULT_SMOOTHING,
    scene_cut: float = DEFAULT_SCENE_CUT,
    guidance: Guidance = NO_GUIDANCE,
) -> None:
    """Colourise ``src`` into the MP4 ``dst`` a chunk at a time (bounded memory); ``progress(done, total)``
    after each chunk. Raises app.video.media.MediaError with a sentence for files it cannot read. ``dst`` is
    written under a temporary name and renamed at the end, so a failure never leaves half a video behind."""
    info = probe(src)
    size = runtime.info.input_size
    count = chunk_frames(info.width, info.height)
    smoother = TemporalSmoother(smoothing, scene_cut)
    bins = runtime.ab_bins
    hints = guidance.for_image(info.width, info.height, size, bins) if guidance and bins is not None else None
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial")
    done = 0
    with VideoReader(src) as reader:
        writer = VideoWriter(partial, reader, info)
        try:
            while True:
                chunk = read_chunk(reader, count, size, info.rotation)
                ab = runtime.run(chunk.model_l, [hints] * len(chunk)) if len(chunk) else chunk.model_l[:, :0]
                write_chunk(writer, chunk, ab, smoother, info.rotation)
                done += len(chunk)
                if progress is not None and len(chunk):
                    progress(done, max(done, info.frames))
                if not len(chunk):  # the end: the last audio went out with this empty chunk
                    break
            writer.close()
        except BaseException:
            writer.abort()
            partial.unlink(missing_ok=True)
            raise
    partial.replace(dst)
    log.info("%s: %d frames colourised into %s (%d scene cuts)", src, done, dst, smoother.cuts)
