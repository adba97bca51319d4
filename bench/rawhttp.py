"""A minimal HTTP/1.1 client for load that must not eat the CPU it is measuring.

The overload run offers four times what the server sustains, from the same two cores the server runs on. httpx
spends a few milliseconds of Python per multipart request, which at 100+ requests per second is most of a core
taken from the server. Here every request is built once as bytes and each send is one connection, one write and
one read: the load generator then costs tens of microseconds per request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit


def multipart_post(url: str, path: str, field: str, filename: str, data: bytes) -> bytes:
    """The bytes of one ``POST path`` with ``data`` as multipart field ``field``; the connection closes after."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    host = urlsplit(url).netloc
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get(url: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\nConnection: close\r\n\r\n".encode()


async def send(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one request on its own connection."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        length = headers.get("content-length")
        body = await (reader.readexactly(int(length)) if length is not None else reader.read())
        return int(status_line.split(" ", 2)[1]), headers, body
    finally:
        writer.close()


async def timed(url: str, request: bytes, timeout: float = 120.0) -> tuple[int, float, dict[str, str]]:
    """(status, seconds, headers) of one request; status 0 when the connection failed, broke off or timed out."""
    started = time.perf_counter()
    try:
        status, headers, _ = await asyncio.wait_for(send(url, request), timeout)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
        return 0, time.perf_counter() - started, {}
    return status, time.perf_counter() - started, headers
