"""The service's error type and its JSON shape: {"detail": "<sentence>", "code": "<snake_case>"}."""

from __future__ import annotations

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
