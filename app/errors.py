"""The service's error type and its JSON shape: {"detail": "<sentence>", "code": "<snake_case>"}."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.exceptions import HTTPException


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


def not_ready() -> ApiError:
    return ApiError(503, "not_ready", "the model is still loading; try again shortly", {"Retry-After": "2"})


def overloaded(detail: str, retry_after_s: int = 1) -> ApiError:
    return ApiError(503, "overloaded", detail, {"Retry-After": str(retry_after_s)})


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
