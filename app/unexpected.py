"""The last line for errors no handler took: a 500 in the service's JSON shape, answered inside our middleware.

Starlette sends unhandled exceptions to its ServerErrorMiddleware, which sits outside every middleware we add and
re-raises after answering. Such a 500 would carry no X-Request-ID (the one thing a user can quote to support) and
no CORS headers, and uvicorn would log the exception a second time. Installed innermost, this answers it first.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

log = logging.getLogger(__name__)


class UnexpectedErrorMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error("unexpected error on %s %s: %r", scope["method"], scope["path"], exc, exc_info=exc)
            self.metrics.errors.labels("500", "internal_error").inc()
            if started:  # part of an answer is already out: uvicorn closes the connection when we return
                return
            answer = {"detail": "the server failed on this request; it has been logged", "code": "internal_error"}
            await JSONResponse(answer, 500)(scope, receive, send)
