"""Admission: the one gate every image passes, deciding by the wait a request would face.

A request is admitted while its estimated queueing delay is within the budget (COLORIZER_MAX_QUEUE_WAIT_MS), and
refused with 503 past it, with a Retry-After of that estimate. Admitted images wait in one FIFO line for a place
among the images in flight (COLORIZER_MAX_IN_FLIGHT, sized for throughput); an image starts only while the
full-resolution pixels in flight stay within COLORIZER_MAX_ACTIVE_PIXELS, so memory is bounded whatever the
estimate says. COLORIZER_MAX_QUEUE is a hard cap on the line's length.

Why an estimate rather than CoDel. CoDel (the oldest waiter's age) only learns of a backlog after requests have
already waited past its target, says nothing about how long to come back after, and treats a 12 MP photo like a
thumbnail. The estimate decides at arrival, before a byte is decoded; it counts what is actually ahead (images and
their sizes); and the same number is the honest Retry-After. It needs a service time per image, measured here as
an EWMA per size class of the time an image holds its place (decode to encode, under the concurrency it runs at,
so ``backlog / concurrency`` is the drain time by Little's law).

Why a margin. Under sustained overload the line sits at the budget, so every admitted request is one whose
estimate was just under it, and an unbiased estimate is short for about half of them (measured: accepted p99 1.5 ×
the budget). The gate therefore keeps the ratio of each admitted image's real wait to its estimate, and admits only
while estimate × (the MARGIN_QUANTILE of that ratio, over the last MARGIN_WINDOW images) is within the budget. The
same corrected wait is the Retry-After: the time by which the work now ahead has been served.

The budget is the latency a request may face beyond what an idle server gives, so it also covers the image's own
slowdown: how much longer its size class now holds a place than at its fastest (a busy CPU spends part of itself on
answering refusals). Admitted: corrected wait + slowdown within the budget.

Video frames (``admit_bulk``) pass the same gate as bulk work: never refused, they wait behind every image in line,
take at most all but one of the places (so an image never waits behind a video chunk for a free place), and a chunk
that has waited longer than the budget goes next so that a film still moves under a steady stream of images.
A chunk holds its place while its frames are at the model; its frames' pixels are bounded by the video job's own
chunk size, so they do not count against COLORIZER_MAX_ACTIVE_PIXELS.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from enum import Enum
from types import TracebackType

from app.errors import overloaded
from app.metrics import Metrics

# Size classes for the service-time estimate: (upper bound in pixels, label). A 512² upload, a phone photo and a
# 12 MP camera photo each land in their own.
SIZE_CLASSES = ((500_000, "le_0.5mpx"), (2_000_000, "le_2mpx"), (8_000_000, "le_8mpx"), (math.inf, "gt_8mpx"))
EWMA_WEIGHT = 0.2  # weight of the newest service time in each class's estimate
# Until a class has a measurement: the prior line (seconds = base + per Mpx), scaled by how the classes measured so
# far compare with it. From docs/PERFORMANCE.md on 2 CPU cores: a 512² image holds its place about 40 ms, a 12 MP
# one about 0.5 s (decode, Lab and PNG encode grow with pixels; the model does not).
PRIOR_BASE_S = 0.03
PRIOR_PER_MPX_S = 0.04
PRIOR_FRAME_S = 0.02  # seconds per video frame at the model, until a chunk has been measured
MARGIN_WINDOW = 400  # admitted images whose real wait ÷ estimate sets the margin
MARGIN_QUANTILE = 0.995
MARGIN_MAX = 3.0  # a margin past this says the machine stalled, not that the estimate is biased
# Estimates shorter than this share of the budget are left out of the margin: a short wait stretched by a
# momentary stall gives a large ratio that says nothing about the waits near the budget, where admission decides.
MARGIN_MIN_SHARE = 0.1


def size_class(pixels: int) -> int:
    return next(i for i, (bound, _) in enumerate(SIZE_CLASSES) if pixels <= bound)


class _State(Enum):
    WAITING = 0
    RUNNING = 1
    DONE = 2


class Place:
    """One admitted image's place: in line, then in flight (``async with``), then gone. Leaving the ``async with``
    gives the place back; ``abandon()`` does so for a place that is never entered."""

    def __init__(self, gate: Admission, pixels: int, estimated: float = 0.0, frames: int = 0) -> None:
        self._gate, self.pixels, self.frames = gate, pixels, frames  # frames > 0: a video chunk (bulk)
        self.estimated = estimated  # the wait estimated at arrival, to learn the margin from
        self.state = _State.WAITING
        self.arrived = gate.clock()
        self.started = 0.0
        self.turn: asyncio.Future[None] | None = None

    @property
    def in_flight(self) -> bool:
        return self.state is _State.RUNNING

    async def __aenter__(self) -> Place:
        await self._gate._wait_for(self)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._gate._release(self, measured=kind is None)

    def abandon(self) -> None:
        self._gate._release(self, measured=False)


class Admission:
    def __init__(
        self,
        concurrency: int,
        budget_s: float,
        max_queue: int,
        max_active_pixels: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.concurrency, self.budget_s, self.max_queue = concurrency, budget_s, max_queue
        self.max_active_pixels = max_active_pixels
        self.clock, self._metrics = clock, metrics
        self._waiting: deque[Place] = deque()  # images, first come first served
        self._bulk_waiting: deque[Place] = deque()  # video chunks, behind every image
        self._running: set[Place] = set()
        self.active_pixels = 0
        self._service_s: list[float | None] = [None] * len(SIZE_CLASSES)  # EWMA seconds per image, per class
        self._fastest_s: list[float | None] = [None] * len(SIZE_CLASSES)  # the lowest each EWMA has been
        self._frame_s: float | None = None  # EWMA seconds per video frame held at the model
        self._calibration = 1.0  # measured ÷ prior, for classes not yet measured
        self._ratios: deque[float] = deque()  # real wait ÷ estimate, admitted images, oldest first
        self._ratios_sorted: list[float] = []  # the same, in order, kept so (not sorted per admission)
        self.margin = 1.0
        if metrics is not None:
            metrics.queue_wait_budget.set(budget_s)
            for _, label in SIZE_CLASSES:
                metrics.service_estimate.labels(label).set(0.0)  # 0 until the class is measured
        self._publish()

    # -- what callers use --------------------------------------------------------------------------------------

    @asynccontextmanager
    async def image(self, pixels: int, deadline: float | None = None) -> AsyncIterator[Place]:
        """Admit one image (503 past the budget, the queue cap or the deadline), wait for its turn, hold it."""
        (place,) = self.admit([pixels], deadline)
        try:
            async with place:
                yield place
        finally:
            place.abandon()  # a no-op once the place was entered and left

    def admit(self, pixels: list[int], deadline: float | None = None, *, shed: bool = True) -> list[Place]:
        """Places in line for these images, decided as one arrival (a batch request is accepted as a whole, on the
        wait its first image faces). With ``shed`` false (offline work) nothing is refused: the caller waits."""
        wait = self.estimate()
        if shed:
            self._check(wait, deadline, pixels[0] if pixels else 0)
        places = []
        for p in pixels:  # each image of a batch is expected to wait also for those ahead of it in the batch
            places.append(Place(self, p, wait))
            wait += self.service_estimate(p) / self.concurrency
        self._waiting.extend(places)
        self._dispatch()
        return places

    def admit_bulk(self, frames: int) -> Place:
        """A place in line for a video chunk of ``frames`` frames: never refused, behind every image."""
        place = Place(self, 0, frames=frames)
        self._bulk_waiting.append(place)
        self._dispatch()
        return place

    def expected_wait(self) -> float:
        """The estimate corrected by the margin: the wait an arrival now is admitted or refused on."""
        return self.estimate() * self.margin

    def estimate(self) -> float:
        """Seconds a request arriving now would wait for its turn: the work ahead of it (the estimated service time
        of each waiting image, and what is left of each image or video chunk in flight) over the places."""
        if not self._waiting and len(self._running) < self.concurrency:
            return 0.0
        now = self.clock()
        # The EWMA learns only from images that have finished, so it lags when the machine slows down. An image in
        # flight for longer than its class's estimate counts at once as if it finished now: the estimate becomes
        # what the EWMA would say then (not its whole age, so a momentary stall does not refuse a full line).
        floor = [0.0] * len(SIZE_CLASSES)
        for p in self._running:
            if p.frames:
                continue
            k, age = size_class(p.pixels), now - p.started
            usual = self.service_estimate(p.pixels)
            if age > usual:
                floor[k] = max(floor[k], usual + EWMA_WEIGHT * (age - usual))

        def service(p: Place) -> float:
            if p.frames:
                return p.frames * self.frame_estimate()
            return max(self.service_estimate(p.pixels), floor[size_class(p.pixels)])

        ahead = sum(service(p) for p in self._waiting)
        ahead += sum(max(0.0, service(p) - (now - p.started)) for p in self._running)
        return ahead / self.concurrency

    def service_estimate(self, pixels: int) -> float:
        """Seconds an image of this size holds its place: its class's EWMA, or the calibrated prior."""
        measured = self._service_s[size_class(pixels)]
        if measured is not None:
            return measured
        return self._calibration * _prior(pixels)

    def slowdown(self, pixels: int) -> float:
        """How much longer an image of this size now holds its place than it did at its fastest (the EWMA's lowest):
        the part of a busy server's latency that is not waiting in line. The budget covers both, so an admitted
        request's latency stays within what an idle server gives plus the budget."""
        k = size_class(pixels)
        measured, fastest = self._service_s[k], self._fastest_s[k]
        return 0.0 if measured is None or fastest is None else max(0.0, measured - fastest)

    def frame_estimate(self) -> float:
        """Seconds a video frame holds its chunk's place."""
        return PRIOR_FRAME_S if self._frame_s is None else self._frame_s

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def bulk_waiting(self) -> int:
        return len(self._bulk_waiting)

    # -- the line ----------------------------------------------------------------------------------------------

    def _check(self, estimate: float, deadline: float | None, pixels: int) -> None:
        wait = estimate * self.margin
        if len(self._waiting) >= self.max_queue:
            raise overloaded(
                f"the server is busy: {len(self._waiting)} images are already waiting (COLORIZER_MAX_QUEUE)",
                max(wait, 1.0),
            )
        slower = self.slowdown(pixels) if wait > 0 else 0.0  # a free place now is never refused
        if wait + slower > self.budget_s:
            also = f", and the image {slower:.1f} s slower than on an idle server" if slower >= 0.05 else ""
            raise overloaded(
                f"the server is busy: the wait would be about {wait:.1f} s{also}, over the "
                f"{self.budget_s * 1000:.0f} ms budget (COLORIZER_MAX_QUEUE_WAIT_MS), with "
                f"{len(self._waiting) + len(self._running)} images ahead",
                wait,
            )
        if wait > 0 and deadline is not None and self.clock() + wait > deadline:  # idle: the deadline is the caller's
            raise overloaded(
                f"the server is busy: the wait would be about {wait:.1f} s, past the request's deadline "
                "(COLORIZER_REQUEST_TIMEOUT_S)",
                wait,
            )

    async def _wait_for(self, place: Place) -> None:
        if place.state is _State.RUNNING:
            return
        if place.state is _State.DONE:
            raise RuntimeError("a place is entered once")
        place.turn = asyncio.get_running_loop().create_future()
        try:
            await place.turn
        except asyncio.CancelledError:  # the deadline passed, or the client left, while in line
            self._release(place, measured=False)  # out of line, or the place handed over just now passed on
            raise

    def _dispatch(self) -> None:
        """Start waiting work while places and pixels allow: a video chunk that has waited past the budget, then
        images in arrival order (the head waits for pixel room rather than being overtaken, so a 12 MP photo is
        never starved by small ones), then video chunks while no image waits and one place stays free."""
        now = self.clock()
        while self._bulk_waiting and now - self._bulk_waiting[0].arrived > self.budget_s and self._bulk_may_start():
            self._start(self._bulk_waiting.popleft())
        while self._waiting and len(self._running) < self.concurrency:
            head = self._waiting[0]
            if self.active_pixels and self.active_pixels + head.pixels > self.max_active_pixels:
                break
            self._start(self._waiting.popleft())
        while self._bulk_waiting and not self._waiting and self._bulk_may_start():
            self._start(self._bulk_waiting.popleft())
        self._publish()

    def _bulk_may_start(self) -> bool:
        bulk_running = sum(1 for p in self._running if p.frames)
        return len(self._running) < self.concurrency and bulk_running < max(1, self.concurrency - 1)

    def _start(self, place: Place) -> None:
        place.state, place.started = _State.RUNNING, self.clock()
        if not place.frames:
            waited = place.started - place.arrived
            if self._metrics is not None:  # the wait that happened, beside the estimate made at arrival
                self._metrics.admission_wait.observe(waited)
            if place.estimated >= MARGIN_MIN_SHARE * self.budget_s:
                self._learn_margin(waited / place.estimated)
        self._running.add(place)
        self.active_pixels += place.pixels
        if place.turn is not None and not place.turn.done():
            place.turn.set_result(None)

    def _learn_margin(self, ratio: float) -> None:
        if len(self._ratios) == MARGIN_WINDOW:
            oldest = self._ratios.popleft()
            del self._ratios_sorted[bisect.bisect_left(self._ratios_sorted, oldest)]
        self._ratios.append(ratio)
        bisect.insort(self._ratios_sorted, ratio)
        ordered = self._ratios_sorted
        quantile = ordered[min(len(ordered) - 1, int(MARGIN_QUANTILE * len(ordered)))]
        self.margin = min(MARGIN_MAX, max(1.0, quantile))
        if self._metrics is not None:
            self._metrics.queue_wait_margin.set(self.margin)

    def _release(self, place: Place, measured: bool) -> None:
        if place.state is _State.WAITING:
            (self._bulk_waiting if place.frames else self._waiting).remove(place)
        elif place.state is _State.RUNNING:
            self._running.discard(place)
            self.active_pixels -= place.pixels
            if measured:
                self._observe(place, self.clock() - place.started)
        else:
            return
        place.state = _State.DONE
        self._dispatch()

    def _observe(self, place: Place, seconds: float) -> None:
        if place.frames:
            per_frame = seconds / place.frames
            old_frame = per_frame if self._frame_s is None else self._frame_s
            self._frame_s = old_frame + EWMA_WEIGHT * (per_frame - old_frame)
            return
        k = size_class(place.pixels)
        old = self._service_s[k]
        self._service_s[k] = now = seconds if old is None else old + EWMA_WEIGHT * (seconds - old)
        fastest = self._fastest_s[k]
        self._fastest_s[k] = now if fastest is None else min(fastest, now)
        self._calibration += EWMA_WEIGHT * (seconds / _prior(place.pixels) - self._calibration)
        if self._metrics is not None:
            self._metrics.service_estimate.labels(SIZE_CLASSES[k][1]).set(self._service_s[k] or 0.0)

    def _publish(self) -> None:
        if self._metrics is None:
            return
        m = self._metrics
        m.in_flight.set(len(self._running))
        m.waiting.set(len(self._waiting))
        m.active_pixels.set(self.active_pixels)
        m.queue_wait_estimate.set(self.expected_wait())


def _prior(pixels: int) -> float:
    return PRIOR_BASE_S + PRIOR_PER_MPX_S * pixels / 1e6
