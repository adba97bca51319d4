"""The ``colorizer`` command: ``colorizer serve`` and ``colorizer colorize PATH... -o DIR``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from app.colorize import Colorizer
from app.config import Settings
from app.cores import available_cores
from app.encode import check_format
from app.errors import ColorizerError
from app.guidance import NO_GUIDANCE, Guidance, hints_unsupported, parse_hints, reference_colours
from app.image_header import checked_header
from app.metrics import Metrics
from app.runtime import ModelRuntime
from app.tuning import Tuning

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="colorizer", description="Colourise grayscale photos and videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service (settings from COLORIZER_* variables)")
    serve.add_argument("--host", help="default: COLORIZER_HOST")
    serve.add_argument("--port", type=int, help="default: COLORIZER_PORT")
    col = sub.add_parser("colorize", help="colourise files or folders offline, without HTTP")
    col.add_argument("paths", nargs="+", type=Path, help="images, videos or folders (searched recursively)")
    col.add_argument("-o", "--output", type=Path, required=True, help="folder for the results")
    col.add_argument("--format", default="png", help="png, jpeg or webp for images (videos: see --video-output)")
    col.add_argument(
        "--video-output",
        choices=("mp4", "ffv1"),
        default="mp4",
        help="mp4: H.264 for browsers (default); ffv1: lossless FFV1 in Matroska (.mkv) for archives",
    )
    col.add_argument("--batch-size", type=int, default=4, help="images per model run")
    col.add_argument("--hints", type=Path, help="a JSON file of colour hints, as the API's `hints` field takes")
    col.add_argument("--reference", type=Path, help="an image whose colours guide every photo and film")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings()
    if args.command == "serve":
        return serve_http(settings, args.host or settings.host, args.port or settings.port)
    try:
        guidance = read_guidance(args.hints, args.reference)
    except (OSError, ColorizerError) as exc:
        log.error("%s", exc)
        return 2
    fmt = check_format(args.format)
    return colorize_paths(settings, args.paths, args.output, fmt, args.batch_size, guidance, args.video_output)


@dataclass(frozen=True)
class GuidanceFiles:
    """What --hints and --reference said, parsed; the reference is turned into colours once the model is known."""

    hints: Guidance = NO_GUIDANCE
    reference: bytes | None = None


def read_guidance(hints_path: Path | None, reference_path: Path | None) -> GuidanceFiles:
    """The --hints JSON, checked as the API checks it (a bad file fails before any work), and the reference bytes."""
    hints = parse_hints(hints_path.read_text()) if hints_path else NO_GUIDANCE
    return GuidanceFiles(hints, reference_path.read_bytes() if reference_path else None)


def guidance_for(runtime: ModelRuntime, files: GuidanceFiles, max_pixels: int) -> Guidance:
    """The hints plus the reference photo's colours over the model's bins; hints_unsupported on a model without
    hint inputs."""
    if not files.hints and files.reference is None:
        return NO_GUIDANCE
    if runtime.ab_bins is None:
        raise hints_unsupported(runtime.info.version)
    if files.reference is None:
        return files.hints
    colours = reference_colours(files.reference, checked_header(files.reference, max_pixels), runtime.ab_bins)
    return dataclasses.replace(files.hints, reference=colours)


def serve_http(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from app.observability import configure_logging

    configure_logging()
    # uvicorn takes whole seconds; rounding down would turn a drain timeout under 1 s into none at all (0 = wait).
    drain = math.ceil(settings.drain_timeout_s) or None
    uvicorn.run("app.main:app", host=host, port=port, timeout_graceful_shutdown=drain)
    return 0


def find_inputs(paths: list[Path], suffixes: tuple[str, ...]) -> Iterator[tuple[Path, Path]]:
    """(file, path relative to its root) for every matching file; folders are searched recursively."""
    for root in paths:
        if root.is_dir():
            for f in sorted(root.rglob("*")):
                if f.is_file() and f.suffix.lower() in suffixes:
                    yield f, f.relative_to(root)
        elif root.is_file():
            yield root, Path(root.name)
        else:
            log.error("%s does not exist", root)


def colorize_paths(
    settings: Settings,
    paths: list[Path],
    out_dir: Path,
    fmt: str,
    batch_size: int,
    files: GuidanceFiles = GuidanceFiles(),  # noqa: B008  # frozen, so one shared default is safe
    video_output: str = "mp4",
) -> int:
    """The service's own path (app/colorize.py: admission, batcher, the same decode, join and encode settings),
    run offline: images wait for their turn instead of being refused, at most a few in memory at once."""
    from app.video.media import OUTPUTS
    from app.video.offline import VIDEO_SUFFIXES, colorize_video_file

    cores = available_cores()
    runtime = ModelRuntime.from_settings(settings, cores)
    try:
        guidance = guidance_for(runtime, files, settings.max_pixels)
    except ColorizerError as exc:
        log.error("%s", exc.detail)
        return 2
    inputs = list(find_inputs(paths, IMAGE_SUFFIXES + VIDEO_SUFFIXES))
    images = [(f, rel) for f, rel in inputs if f.suffix.lower() in IMAGE_SUFFIXES]
    videos = [(f, rel) for f, rel in inputs if f.suffix.lower() in VIDEO_SUFFIXES]
    if videos and guidance.points:
        log.error("hint points apply to photos; a film takes a palette or --reference, applied to every frame")
        return 2
    tuning = Tuning.resolve(settings.model_copy(update={"max_batch_size": batch_size}), runtime.kind, cores)
    failures = asyncio.run(
        colorize_images(Colorizer(runtime, tuning, Metrics(), settings.max_pixels), images, out_dir, fmt, guidance)
    )
    for src, rel in videos:
        with tqdm(total=0, unit="frame", desc=src.name) as bar:

            def progress(done: int, total: int, bar: tqdm = bar) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                warnings = colorize_video_file(
                    runtime,
                    src,
                    out_dir / rel.with_suffix(OUTPUTS[video_output].suffix),
                    progress,
                    smoothing=settings.video_smoothing,
                    scene_cut=settings.video_scene_cut,
                    guidance=guidance,
                    output=video_output,
                    max_lost=settings.video_max_lost_frames,
                )
            except Exception as exc:  # a broken film must not stop the rest of the list
                failures += 1
                log.error("%s: %s", src, exc)
            else:
                for warning in warnings:  # done, but not everything came through: say what
                    log.warning("%s: %s", src, warning)
    return 1 if failures else 0


async def colorize_images(
    colorizer: Colorizer, images: list[tuple[Path, Path]], out_dir: Path, fmt: str, guidance: Guidance = NO_GUIDANCE
) -> int:
    """Every image through ``colorizer``; returns how many failed (each reported with its sentence)."""
    await colorizer.start()
    reading = asyncio.Semaphore(2 * colorizer.tuning.max_in_flight)  # files read ahead of their turn
    suffix = "." + ("jpg" if fmt == "jpeg" else fmt)
    failures = 0
    with tqdm(total=len(images), unit="img", desc="images", disable=not images) as bar:

        async def one(src: Path, rel: Path) -> None:
            nonlocal failures
            async with reading:
                data = await asyncio.to_thread(src.read_bytes)
                try:
                    encoded = await colorizer.colorize(data, fmt, shed=False, guidance=guidance)
                except ColorizerError as exc:
                    failures += 1
                    log.error("%s: %s", src, exc.detail)
                else:
                    dst = out_dir / rel.with_suffix(suffix)
                    await asyncio.to_thread(write_bytes, dst, encoded)
            bar.update(1)

        try:
            await asyncio.gather(*(one(src, rel) for src, rel in images))
        finally:
            await colorizer.stop()
    return failures


def write_bytes(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)


if __name__ == "__main__":
    sys.exit(main())
