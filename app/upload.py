"""Upload limits enforced while bytes arrive, so no body past COLORIZER_MAX_UPLOAD_BYTES is ever held, and no
client can hold a request open by trickling its body (uvicorn has no body-read timeout of its own)."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http_errors import ApiError

# The rest of the body is never read after these errors, so the connection cannot carry another request.
CLOSE = {"Connection": "close"}


def too_large(limit: int, declared: int | None = None) -> ApiError:
    size = f"is {declared / 1e6:.1f} MB" if declared is not None else "is larger than that"
    return ApiError(
        413,
        "upload_too_large",
        f"the limit is {limit / 1e6:.1f} MB (COLORIZER_MAX_UPLOAD_BYTES) and the upload {size}",
        dict(CLOSE),
    )


def too_slow(timeout_s: float, seen: int) -> ApiError:
    return ApiError(
        408,
        "upload_timeout",
        f"the upload did not arrive within {timeout_s:g} s ({seen / 1e6:.1f} MB came); check the connection, "
        "or raise COLORIZER_BODY_READ_TIMEOUT_S on the server",
        dict(CLOSE),
    )


def gone(seen: int) -> ApiError:
    """The client hung up mid-upload. Nobody will read this answer; it exists so the request ends as a counted
    client error (499, nginx's "client closed request") instead of a ClientDisconnect traceback and a 500."""
    return ApiError(
        499, "client_disconnected", f"the client closed the connection after {seen / 1e6:.1f} MB of the upload"
    )


class BodyLimitMiddleware:
    """Refuses a declared Content-Length over the limit at once, counts streamed bytes otherwise, and gives the
    whole body ``read_timeout_s`` to arrive (408 past it).

    The deadline covers the body only: once the last byte is in, ``receive`` is passed through untouched, because
    a streaming response keeps listening on it for the client's disconnect for as long as it streams. A disconnect
    before the last byte ends the request as a 499 (see ``gone``).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float = 60.0) -> None:
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, too_large(self.max_bytes, int(declared)))
            return
        deadline = asyncio.get_running_loop().time() + self.read_timeout_s
        seen = 0
        body_done = b"transfer-encoding" not in headers and declared in (None, b"0")  # no body: nothing to guard

        async def guarded_receive() -> Message:
            nonlocal seen, body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise too_slow(self.read_timeout_s, seen) from None
            if message["type"] == "http.disconnect":
                raise gone(seen)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large(self.max_bytes)
            body_done = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)


async def _send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
