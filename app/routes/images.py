"""POST /colorize and POST /colorize/batch: read the upload, hand it to the colouriser (app/colorize.py), stream
the answer."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from app.auth import check_api_key
from app.encode import MEDIA_TYPES, check_format
from app.errors import ColorizerError
from app.http_errors import ApiError, error_responses
from app.routes.guidance import HintsField, PaletteOnlyField, ReferenceField, read_guidance
from app.service import Service

router = APIRouter(dependencies=[Depends(check_api_key)], responses=error_responses())
CHUNK = 256 * 1024
Format = Annotated[str, Query(pattern="^(png|jpeg|jpg|webp)$", description="output format")]


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def read_upload(request: Request, file: UploadFile | None) -> bytes:
    """The image bytes from multipart field `file`, or from a raw image/* body."""
    if file is not None:
        return await file.read()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith("multipart/"):
        raise ApiError(422, "missing_field", "multipart upload needs the image in a field named 'file'")
    if not ctype.startswith("image/") and ctype != "application/octet-stream":
        shown = ctype[:60] or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the image as multipart field 'file' or as a raw body with an image/* Content-Type (got {shown})",
        )
    return await request.body()


def stream_bytes(data: bytes) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]

    return chunks()


@router.post(
    "/colorize",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
    summary="Colourise one image (multipart field `file`, or a raw image/* body), optionally guided by colour hints",
)
async def colorize(
    request: Request,
    service: Annotated[Service, Depends(get_service)],
    file: Annotated[UploadFile | None, File(description="the image")] = None,
    hints: HintsField = None,
    reference: ReferenceField = None,
    format: Format = "png",
) -> StreamingResponse:
    fmt = check_format(format)
    colorizer = service.colorizer
    guidance = await read_guidance(colorizer, hints, reference)
    data = await read_upload(request, file)
    encoded = await colorizer.colorize(data, fmt, guidance=guidance)  # a ColorizerError leaves through app/main.py
    return StreamingResponse(
        stream_bytes(encoded), media_type=MEDIA_TYPES[fmt], headers={"Content-Length": str(len(encoded))}
    )


@router.post(
    "/colorize/batch",
    responses={200: {"content": {"application/zip": {}}}},
    summary="Colourise several images (repeated multipart field `files`); a zip of PNGs in request order",
)
async def colorize_batch(
    files: Annotated[list[UploadFile], File(description="the images")],
    service: Annotated[Service, Depends(get_service)],
    hints: PaletteOnlyField = None,
    reference: ReferenceField = None,
) -> StreamingResponse:
    if len(files) > service.settings.max_queue:
        raise ApiError(
            413,
            "too_many_files",
            f"{len(files)} files in one batch; the limit is {service.settings.max_queue} (COLORIZER_MAX_QUEUE)",
        )
    guidance = await read_guidance(service.colorizer, hints, reference, points_allowed=False)
    blobs = [await f.read() for f in files]
    names = unique_names([f.filename or f"image{i}" for i, f in enumerate(files)])
    # Admitted as one request, the images then share model runs; any bad one fails the whole request with its
    # name, before a byte of the zip is sent.
    results = await service.colorizer.colorize_all(blobs, guidance=guidance)
    for name, result in zip(names, results, strict=True):
        if isinstance(result, ColorizerError):
            raise result.with_prefix(f"{name}: ") from result
        if isinstance(result, BaseException):
            raise result
    encoded = [r for r in results if isinstance(r, bytes)]
    return StreamingResponse(
        zip_stream(names, encoded),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="colorized.zip"'},
    )


def unique_names(filenames: list[str]) -> list[str]:
    """`<stem>.png` per input, with a suffix where two inputs share a stem."""
    seen: dict[str, int] = {}
    out = []
    for raw in filenames:
        stem = PurePath(raw.replace("\\", "/")).stem or "image"
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        out.append(f"{stem}.png" if n == 0 else f"{stem}-{n}.png")
    return out


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream: zipfile then counts offsets itself, so chunks can be sent as made."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


async def zip_stream(names: list[str], blobs: list[bytes]) -> AsyncIterator[bytes]:
    """A zip written and sent member by member; PNGs are already compressed, so members are stored."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, blob in zip(names, blobs, strict=True):
            archive.writestr(name, blob)
            yield sink.take()
    yield sink.take()
