"""The admission gate on its own, with a fake clock and fake service times: admit while the estimated wait is within
the budget, shed past it with an honest Retry-After, recover as the line drains, and hold the pixel cap."""

from __future__ import annotations

import asyncio
import math

import pytest

from app.admission import SIZE_CLASSES, Admission, Place
from app.errors import ColorizerError
from app.metrics import Metrics

SMALL = 512 * 512  # a 512² upload
BIG = 12_000_000  # a 12 MP photo


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gate(
    clock: Clock, *, concurrency: int = 2, budget_s: float = 0.55, max_queue: int = 100, pixels: int = 10**9
) -> Admission:
    return Admission(concurrency, budget_s, max_queue, pixels, Metrics(), clock)


async def teach(admission: Admission, clock: Clock, pixels: int, seconds: float) -> None:
    """One image that holds its place for ``seconds`` (fake time), so the gate has measured that size."""
    (place,) = admission.admit([pixels])
    async with place:
        clock.advance(seconds)


async def turns(places: list[Place]) -> list[asyncio.Task[None]]:
    """Each place entered by its own task, which then holds it until cancelled; returns once all are in line."""

    async def hold(place: Place) -> None:
        async with place:
            await asyncio.Event().wait()

    tasks = [asyncio.create_task(hold(p)) for p in places]
    await asyncio.sleep(0)
    return tasks


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_admits_while_the_estimated_wait_is_within_the_budget_and_sheds_past_it() -> None:
    clock = Clock()
    admission = gate(clock)
    assert admission.estimate() == 0.0  # idle: no wait
    await teach(admission, clock, SMALL, 0.2)
    assert admission.service_estimate(SMALL) == pytest.approx(0.2)
    held = await turns(admission.admit([SMALL]) + admission.admit([SMALL]))  # both places in flight
    assert admission.running == 2
    estimates = []
    for _ in range(4):  # the wait grows by one service time over the concurrency per image in line
        estimates.append(admission.estimate())
        held += await turns(admission.admit([SMALL]))
    assert estimates == pytest.approx([0.2, 0.3, 0.4, 0.5])
    assert admission.waiting == 4
    with pytest.raises(ColorizerError) as refused:
        admission.admit([SMALL])
    assert refused.value.code == "overloaded"
    assert "COLORIZER_MAX_QUEUE_WAIT_MS" in refused.value.detail
    assert refused.value.retry_after_s == math.ceil(admission.estimate()) == 1
    assert admission.waiting == 4  # a refused request takes no place
    await stop(held)
    assert (admission.running, admission.waiting, admission.active_pixels) == (0, 0, 0)


async def test_retry_after_is_the_estimated_wait_rounded_up() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=2, budget_s=0.5)
    await teach(admission, clock, SMALL, 1.5)
    held = await turns(admission.admit([SMALL] * 2, shed=False) + admission.admit([SMALL] * 6, shed=False))
    # In flight: 2 × 1.5 s left; in line: 6 × 1.5 s; over 2 at once: 6 s.
    assert admission.estimate() == pytest.approx(6.0)
    with pytest.raises(ColorizerError) as refused:
        admission.admit([SMALL])
    assert refused.value.retry_after_s == 6
    clock.advance(1.2)  # what is in flight is 1.2 s further on
    with pytest.raises(ColorizerError) as refused:
        admission.admit([SMALL])
    assert refused.value.retry_after_s == math.ceil(6.0 - 1.2) == 5
    await stop(held)


async def test_the_estimate_recovers_as_the_line_drains_and_admission_resumes() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=0.25)
    await teach(admission, clock, SMALL, 0.1)
    first, *rest = admission.admit([SMALL] * 4, shed=False)
    served: list[int] = []

    async def serve(i: int, place: Place) -> None:
        async with place:
            served.append(i)
            clock.advance(0.1)

    with pytest.raises(ColorizerError):
        admission.admit([SMALL])  # 0.1 left in flight + 3 × 0.1 in line = 0.4 s > 0.25 s
    seen = [admission.estimate()]
    for i, place in enumerate([first, *rest]):
        await serve(i, place)
        seen.append(admission.estimate())
    assert served == [0, 1, 2, 3]  # first come, first served
    assert seen == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.0])  # falls as each image leaves
    assert admission.estimate() <= admission.budget_s
    (place,) = admission.admit([SMALL])  # admitted again
    place.abandon()


async def test_the_estimate_rises_at_once_when_images_in_flight_overrun_it() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=2, budget_s=1000)
    await teach(admission, clock, SMALL, 0.1)
    held = await turns(admission.admit([SMALL] * 2) + admission.admit([SMALL] * 4))
    assert admission.estimate() == pytest.approx((2 * 0.1 + 4 * 0.1) / 2)
    clock.advance(0.5)  # the two in flight have taken five times their estimate and are not done
    # As if one had finished now: the EWMA would be 0.1 + 0.2 × (0.5 - 0.1) = 0.18 s, for each image in line and
    # for what is left of those in flight (0.18 - 0.5 < 0: none).
    assert admission.estimate() == pytest.approx(4 * 0.18 / 2)
    await stop(held)


async def test_service_time_is_learnt_per_size_class() -> None:
    clock = Clock()
    admission = gate(clock)
    prior_big = admission.service_estimate(BIG)
    await teach(admission, clock, SMALL, 0.2)
    # A class not measured yet follows the prior, scaled by how the measured classes compare with it.
    assert admission.service_estimate(BIG) > admission.service_estimate(SMALL)
    assert admission.service_estimate(BIG) != prior_big
    await teach(admission, clock, BIG, 2.0)
    assert admission.service_estimate(BIG) == pytest.approx(2.0)
    await teach(admission, clock, BIG, 1.0)
    assert admission.service_estimate(BIG) == pytest.approx(1.8)  # EWMA: 2.0 + 0.2 × (1.0 - 2.0)
    assert admission.service_estimate(SMALL) == pytest.approx(0.2)
    labels = {label for _, label in SIZE_CLASSES}
    assert len(labels) == len(SIZE_CLASSES)


async def test_pixel_cap_holds_images_in_line_in_arrival_order() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=4, pixels=10_000_000)
    big = admission.admit([8_000_000])[0]
    held = await turns([big])
    assert admission.active_pixels == 8_000_000
    second, small = admission.admit([4_000_000]) + admission.admit([SMALL])
    tasks = await turns([second, small])
    # Places are free, but 8 + 4 Mpx is past the cap: the 4 Mpx waits, and the small one does not overtake it.
    assert (admission.running, admission.waiting) == (1, 2)
    await stop(held)
    await asyncio.sleep(0)
    assert (admission.running, admission.waiting) == (2, 0)
    assert admission.active_pixels == 4_000_000 + SMALL
    await stop(tasks)
    huge = admission.admit([50_000_000])[0]  # a lone image past the cap still runs (nothing else is in flight)
    assert admission.running == 1
    huge.abandon()
    assert admission.active_pixels == 0


async def test_queue_cap_refuses_past_max_queue() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=1000, max_queue=2)
    held = await turns(admission.admit([SMALL]) + admission.admit([SMALL]) + admission.admit([SMALL]))
    with pytest.raises(ColorizerError) as refused:
        admission.admit([SMALL])
    assert "COLORIZER_MAX_QUEUE" in refused.value.detail
    assert refused.value.retry_after_s is not None
    assert refused.value.retry_after_s >= 1
    await stop(held)


async def test_a_batch_is_admitted_as_a_whole_on_its_first_images_wait() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=0.5)
    await teach(admission, clock, SMALL, 0.3)
    places = admission.admit([SMALL] * 8)  # idle: the first starts now, the rest wait their turn
    assert (admission.running, admission.waiting) == (1, 7)
    with pytest.raises(ColorizerError):
        admission.admit([SMALL])  # a single arriving now would wait behind all eight
    for place in places:
        place.abandon()
    assert (admission.running, admission.waiting) == (0, 0)


async def test_a_request_that_would_miss_its_deadline_is_refused() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=10)
    await teach(admission, clock, SMALL, 2.0)
    held = await turns(admission.admit([SMALL]))
    with pytest.raises(ColorizerError) as refused:
        admission.admit([SMALL], deadline=clock() + 1.0)
    assert "COLORIZER_REQUEST_TIMEOUT_S" in refused.value.detail
    await stop(held)


async def test_a_waiter_that_times_out_leaks_no_place() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=1000)
    held = await turns(admission.admit([SMALL]))
    (late,) = admission.admit([SMALL])
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01), late:
            pass
    assert (admission.running, admission.waiting) == (1, 0)  # out of line, and the place in flight untouched
    await stop(held)
    assert (admission.running, admission.waiting, admission.active_pixels) == (0, 0, 0)


async def test_gauges_follow_the_gate() -> None:
    clock = Clock()
    metrics = Metrics()
    admission = Admission(1, 0.5, 10, 10**9, metrics, clock)
    held = await turns(admission.admit([SMALL]) + admission.admit([SMALL]))
    assert metrics.in_flight._value.get() == 1
    assert metrics.waiting._value.get() == 1
    assert metrics.queue_wait_budget._value.get() == 0.5
    assert metrics.queue_wait_estimate._value.get() == pytest.approx(admission.estimate())
    await stop(held)
    assert metrics.in_flight._value.get() == 0
