"""Admission: how much work the service takes on at once, so that what it accepts is answered in good time and
memory stays bounded. Past a bound the answer is 503 with Retry-After, before any decoding."""

from __future__ import annotations

import asyncio
from collections import deque

from prometheus_client import Gauge

from app.cores import available_cores
from app.errors import overloaded


def default_max_in_flight(kind: str, max_batch_size: int) -> int:
    """Images admitted at once when COLORIZER_MAX_IN_FLIGHT is 0. Latency under overload is about in-flight images /
    throughput (Little's law), so the bound is the smallest that keeps the hardware busy. On 2 CPU cores, at 4×
    capacity: 2 in flight gave accepted p99 1.8× the unloaded p99 at 86% of the throughput 4 in flight gave (3.7×);
    hence one per core (at least 2, so a page's two parallel uploads both go through). On a GPU: four full batches,
    so one runs while the next ones decode (not measured: no GPU was lent)."""
    if kind == "cuda":
        return 4 * max_batch_size
    return max(2, available_cores())


class InFlight:
    """Counts admitted images from admission to answer. A single request is refused at the limit (503); an image of
    a batch request, accepted as a whole, waits in line instead, and while any waits single requests are refused so
    the batch is not starved. A freed slot goes straight to the oldest waiter."""

    def __init__(self, limit: int, gauge: Gauge | None = None) -> None:
        self.limit, self._count, self._gauge = limit, 0, gauge
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def count(self) -> int:
        return self._count

    @count.setter
    def count(self, value: int) -> None:
        self._count = value
        if self._gauge is not None:
            self._gauge.set(value)

    def enter(self) -> None:
        if self.count >= self.limit or self._waiters:
            raise overloaded(f"the server is busy: {self.count} images are being colourised (COLORIZER_MAX_IN_FLIGHT)")
        self.count += 1

    async def wait_and_enter(self) -> None:
        if self.count < self.limit and not self._waiters:
            self.count += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:  # the deadline passed while waiting
            if turn.cancelled():
                self._waiters.remove(turn)  # so only live waiters stay in line
            else:
                self.leave()  # the slot was handed over just as we were cancelled: pass it on
            raise

    def leave(self) -> None:
        if self._waiters:
            self._waiters.popleft().set_result(None)  # the slot changes hands; count stays
        else:
            self.count -= 1


class PixelBudget:
    """Bounds the full-resolution pixels held at once across requests, so memory stays bounded."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def acquire(self, pixels: int) -> None:
        if self.used and self.used + pixels > self.limit:
            raise overloaded(f"the server is busy with {self.used / 1e6:.0f} Mpx of images; try again shortly")
        self.used += pixels

    def release(self, pixels: int) -> None:
        self.used -= pixels
