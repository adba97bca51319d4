"""Optional API keys: ``Authorization: Bearer <key>``, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from app.http_errors import ApiError


async def check_api_key(request: Request) -> None:
    """FastAPI dependency: open when no keys are configured; 401 without a key, 403 with a wrong one.

    Async although it never awaits: FastAPI runs a plain function dependency in a worker thread, a thread hop
    per request for a few microseconds of work."""
    keys: list[str] = request.app.state.service.settings.api_key_list
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "missing_api_key",
            "this server needs an API key: send Authorization: Bearer <key>",
            {"WWW-Authenticate": "Bearer"},
        )
    # Compare digests (equal lengths, so not even a key's length leaks) against every key without stopping early,
    # so timing says nothing about which key matched or how close a guess came.
    given = hashlib.sha256(token.encode()).digest()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, hashlib.sha256(key.encode()).digest())
    if not matched:
        raise ApiError(403, "invalid_api_key", "the API key is not valid for this server")
