"""Upload limits enforced while bytes arrive, so no body past COLORIZER_MAX_UPLOAD_BYTES is ever held."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError


def too_large(limit: int, seen: int | None = None) -> ApiError:
    amount = f"{seen / 1e6:.1f} MB" if seen is not None else "more than that"
    return ApiError(
        413,
        "upload_too_large",
        f"the upload is {amount}; the limit is {limit / 1e6:.1f} MB (COLORIZER_MAX_UPLOAD_BYTES)",
    )


class BodyLimitMiddleware:
    """Refuses a declared Content-Length over the limit at once, and counts streamed bytes otherwise."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, too_large(self.max_bytes, int(declared)))
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


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
