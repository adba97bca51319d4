"""Video jobs over HTTP: POST /videos, GET /videos/{id}, GET /videos/{id}/result, DELETE /videos/{id}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from app.auth import check_api_key
from app.http_errors import ApiError, error_responses
from app.routes.guidance import PaletteOnlyField, ReferenceField, read_guidance
from app.video.jobs import JobManager
from app.video.media import DEFAULT_OUTPUT, OUTPUTS

router = APIRouter(
    prefix="/videos",
    tags=["videos"],
    dependencies=[Depends(check_api_key)],
    responses=error_responses(
        (404, "no such video job"), (409, "the result is not ready yet"), (507, "the video disk quota is full")
    ),
)


async def get_jobs(request: Request) -> JobManager:
    jobs: JobManager = request.app.state.video_jobs
    return jobs


Jobs = Annotated[JobManager, Depends(get_jobs)]


@router.post(
    "",
    status_code=202,
    summary="Queue a video (multipart field `file`, optionally a palette or a reference photo); poll status_url",
)
async def submit(
    file: Annotated[UploadFile, File(description="the video")],
    jobs: Jobs,
    hints: PaletteOnlyField = None,
    reference: ReferenceField = None,
    output: Annotated[
        str, Form(description="`mp4` (H.264, plays in browsers; the default) or `ffv1` (lossless FFV1 in Matroska)")
    ] = DEFAULT_OUTPUT,
) -> JSONResponse:
    if output not in OUTPUTS:
        raise ApiError(422, "invalid_output", f"output must be {' or '.join(OUTPUTS)} (got {output[:32]!r})")
    guidance = await read_guidance(jobs.service.colorizer, hints, reference, points_allowed=False)
    jobs.service.colorizer.check_guidance(
        guidance
    )  # counted by guidance; hints_unsupported before the upload is stored
    state = await jobs.submit(file.file, file.filename, file.size, guidance, output)
    url = f"/videos/{state.id}"
    return JSONResponse({"id": state.id, "status_url": url}, 202, {"Location": url})


@router.get("/{job_id}", summary="A video job's status and progress")
async def status(job_id: str, jobs: Jobs) -> dict[str, Any]:
    return (await jobs.status(job_id)).public()


@router.get(
    "/{job_id}/result",
    responses={200: {"content": {"video/mp4": {}, "video/x-matroska": {}}}},
    summary="The colourised video (MP4, or Matroska for output=ffv1) once the job is done; 409 before",
)
async def result(job_id: str, jobs: Jobs) -> FileResponse:
    path, spec = await jobs.result(job_id)
    return FileResponse(path, media_type=spec.media_type, filename=f"colorized-{job_id[:8]}{spec.suffix}")


@router.delete("/{job_id}", status_code=204, summary="Cancel a video job and delete its files")
async def delete(job_id: str, jobs: Jobs) -> Response:
    await jobs.delete(job_id)
    return Response(status_code=204)
