"""The HTTP edge of errors: the JSON shape {"detail": "<sentence>", "code": "<snake_case>"}, and the status each
core error code (app/errors.py) is answered with."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.errors import ColorizerError

# The status of every code the core raises. A code missing here is a bug, answered as 500.
STATUS_OF_CODE = {
    "empty_file": 400,
    "undecodable_image": 400,
    "unsupported_output_format": 400,
    "too_many_pixels": 413,
    "unsupported_media_type": 415,
    "invalid_hints": 422,
    "hints_unsupported": 422,
    "model_failed": 500,
    "overloaded": 503,
    "not_ready": 503,
    "deadline_exceeded": 504,
}


class ApiError(HTTPException):
    """An error with the HTTP status, a machine-readable code and a sentence a person understands.

    It is an HTTPException so that FastAPI passes it through unchanged when it is raised while the request
    body is being read (the upload limit), instead of turning it into a generic 400.
    """

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.headers: dict[str, str] = headers or {}
        self.status, self.code = status, code
        self.detail: str = detail

    def body(self) -> dict[str, str]:
        return {"detail": self.detail, "code": self.code}


def http_status(error: ColorizerError) -> int:
    return STATUS_OF_CODE.get(error.code, 500)


def as_api_error(error: ColorizerError) -> ApiError:
    """A core error as the HTTP answer: its status, and Retry-After (whole seconds) when retrying can help."""
    headers = {} if error.retry_after_s is None else {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}
    return ApiError(http_status(error), error.code, error.detail, headers)


class ErrorBody(BaseModel):
    """What every error answer carries, whatever its status."""

    detail: str  # a sentence a person understands
    code: str  # snake_case, stable: what a program branches on


_MEANINGS = {
    400: "not a decodable image, or a bad parameter",
    401: "an API key is required (Authorization: Bearer <key>)",
    403: "the API key is wrong",
    408: "the upload took longer than COLORIZER_BODY_READ_TIMEOUT_S",
    413: "too many bytes, pixels, files or frames",
    415: "not a format the service reads",
    422: "a missing or malformed request field",
    500: "the server failed on this request (logged with its request id)",
    503: "busy or not ready: retry after Retry-After",
    504: "past COLORIZER_REQUEST_TIMEOUT_S",
}


def error_responses(*extra: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a router: every error status it can answer, each with the ErrorBody shape (and
    422 replacing FastAPI's own validation schema, which the service never sends)."""
    meanings = {**_MEANINGS, **dict(extra)}
    return {status: {"model": ErrorBody, "description": text} for status, text in sorted(meanings.items())}
