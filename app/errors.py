"""The core error type: what went wrong with one image, as a stable code and a sentence a person understands.

It knows nothing of HTTP. The HTTP edge (app/http_errors.py) maps each code to a status; the CLI and video jobs
report the sentence."""

from __future__ import annotations

import math


class ColorizerError(Exception):
    """``code`` is snake_case and stable (what a program branches on); ``detail`` is the sentence. ``retry_after_s``
    is set when trying again later can succeed (overload, not ready)."""

    def __init__(self, code: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.retry_after_s = code, detail, retry_after_s

    def with_prefix(self, prefix: str) -> ColorizerError:
        """The same error, its sentence prefixed (a batch names the file that failed)."""
        error = ColorizerError(self.code, f"{prefix}{self.detail}", self.retry_after_s)
        error.__cause__ = self.__cause__
        return error


def overloaded(detail: str, retry_after_s: float = 1.0) -> ColorizerError:
    """Busy: try again in ``retry_after_s`` (rounded up to whole seconds, at least one)."""
    return ColorizerError("overloaded", detail, max(1, math.ceil(retry_after_s)))


def not_ready() -> ColorizerError:
    return ColorizerError("not_ready", "the model is still loading; try again shortly", 2)


def model_failed(cause: Exception) -> ColorizerError:
    """What each request of a failed model run gets: the run is logged once by the batcher, so this leaves as a
    handled error (with the request id and CORS headers, and no second traceback)."""
    error = ColorizerError(
        "model_failed", "the model failed on the batch this request was in; it has been logged, try again"
    )
    error.__cause__ = cause
    return error
