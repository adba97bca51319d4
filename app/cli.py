"""The ``colorizer`` command: ``colorizer serve`` and ``colorizer colorize PATH... -o DIR``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.color import join
from app.config import Settings
from app.encode import check_format, encode_image
from app.errors import ApiError
from app.pipeline import Prepared, prepare
from app.runtime import ModelRuntime

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
    col.add_argument("--format", default="png", help="png, jpeg or webp for images (videos are MP4)")
    col.add_argument("--batch-size", type=int, default=4, help="images per model run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings()
    if args.command == "serve":
        return serve_http(settings, args.host or settings.host, args.port or settings.port)
    return colorize_paths(settings, args.paths, args.output, check_format(args.format), args.batch_size)


def serve_http(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from app.observability import configure_logging

    configure_logging()
    uvicorn.run("app.main:app", host=host, port=port, timeout_graceful_shutdown=int(settings.drain_timeout_s) or None)
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


def colorize_paths(settings: Settings, paths: list[Path], out_dir: Path, fmt: str, batch_size: int) -> int:
    """Same pipeline as the service, in batches, holding at most one batch of images in memory."""
    from app.video.offline import VIDEO_SUFFIXES, colorize_video_file

    runtime = ModelRuntime.from_settings(settings)
    inputs = list(find_inputs(paths, IMAGE_SUFFIXES + VIDEO_SUFFIXES))
    images = [(f, rel) for f, rel in inputs if f.suffix.lower() in IMAGE_SUFFIXES]
    videos = [(f, rel) for f, rel in inputs if f.suffix.lower() in VIDEO_SUFFIXES]
    failures = 0
    size = runtime.info.input_size
    with tqdm(total=len(images), unit="img", desc="images", disable=not images) as bar:
        for start in range(0, len(images), batch_size):
            chunk, ready = images[start : start + batch_size], []
            for src, rel in chunk:
                try:
                    ready.append((src, rel, prepare(src.read_bytes(), size, settings.max_pixels)))
                except ApiError as exc:
                    failures += 1
                    log.error("%s: %s", src, exc.detail)
            if ready:
                abs_ = runtime.run(np.stack([p.small_l for _, _, p in ready]))
                for (_, rel, prepared), ab in zip(ready, abs_, strict=True):
                    write_result(prepared, ab, out_dir / rel.with_suffix("." + ("jpg" if fmt == "jpeg" else fmt)), fmt)
            bar.update(len(chunk))
    for src, rel in videos:
        with tqdm(total=0, unit="frame", desc=src.name) as bar:

            def progress(done: int, total: int, bar: tqdm = bar) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                colorize_video_file(
                    runtime,
                    src,
                    out_dir / rel.with_suffix(".mp4"),
                    progress,
                    smoothing=settings.video_smoothing,
                    scene_cut=settings.video_scene_cut,
                )
            except Exception as exc:  # a broken film must not stop the rest of the list
                failures += 1
                log.error("%s: %s", src, exc)
    return 1 if failures else 0


def write_result(prepared: Prepared, ab: np.ndarray, dst: Path, fmt: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(encode_image(join(prepared.full_l, ab, prepared.alpha), fmt))


if __name__ == "__main__":
    sys.exit(main())
