"""The admission gate on its own, with a fake clock and fake service times: admit while the estimated wait is within
the budget, shed past it with an honest Retry-After, recover as the line drains, and hold the pixel cap."""

from __future__ import annotations

import asyncio
import math

import pytest

from app.admission import MARGIN_MAX, SIZE_CLASSES, Admission, Place
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
    assert metrics.queue_wait_estimate._value.get() == pytest.approx(admission.expected_wait())
    await stop(held)
    assert metrics.in_flight._value.get() == 0


async def test_the_margin_learns_how_far_real_waits_overrun_the_estimate_and_sheds_earlier() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=1.0)
    await teach(admission, clock, SMALL, 0.2)
    assert admission.margin == 1.0
    first, second = admission.admit([SMALL], shed=False) + admission.admit([SMALL], shed=False)
    assert second.estimated == pytest.approx(0.2)  # what is left of the image in flight, over one place
    async with first:
        clock.advance(0.4)  # the machine slowed down: the second image waits twice its estimate
    async with second:
        pass
    assert admission.margin == pytest.approx(2.0)
    # Fill the line until the plain estimate is within the budget but twice it is not: refused, and the sentence and
    # the Retry-After carry the corrected wait.
    held = await turns(admission.admit([SMALL]))
    while admission.estimate() <= 0.5:
        held += await turns(admission.admit([SMALL]))
    estimate = admission.estimate()
    assert 0.5 < estimate <= admission.budget_s
    with pytest.raises(ColorizerError) as refused:
        admission.admit([SMALL])
    assert f"about {2 * estimate:.1f} s" in refused.value.detail
    assert refused.value.retry_after_s == math.ceil(2 * estimate)
    await stop(held)


async def test_the_margin_ignores_short_waits_and_is_bounded() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=10.0)
    await teach(admission, clock, SMALL, 0.2)
    first, second = admission.admit([SMALL], shed=False) + admission.admit([SMALL], shed=False)
    async with first:
        clock.advance(5.0)  # a stall: 25 × the 0.2 s estimate, but 0.2 s is under a tenth of the 10 s budget
    async with second:
        pass
    assert admission.margin == 1.0
    admission = gate(clock, concurrency=1, budget_s=1.0)
    await teach(admission, clock, SMALL, 0.2)
    first, second = admission.admit([SMALL], shed=False) + admission.admit([SMALL], shed=False)
    async with first:
        clock.advance(5.0)
    async with second:
        pass
    assert admission.margin == MARGIN_MAX


async def test_video_chunks_wait_behind_images_and_leave_one_place_free() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=2, budget_s=1000)
    held = await turns(admission.admit([SMALL]) + admission.admit([SMALL]))  # both places taken by images
    chunk_a, chunk_b = admission.admit_bulk(16), admission.admit_bulk(16)
    chunks = await turns([chunk_a, chunk_b])
    image = admission.admit([SMALL])[0]
    images = await turns([image])
    assert (admission.running, admission.waiting, admission.bulk_waiting) == (2, 1, 2)
    await stop(held[:1])  # a place frees: the image that came after the chunks goes first
    assert image.in_flight
    assert not chunk_a.in_flight
    await stop(held[1:])  # the next place goes to a chunk; the other chunk waits, keeping a place for images
    assert chunk_a.in_flight
    assert not chunk_b.in_flight
    assert (admission.running, admission.bulk_waiting) == (2, 1)
    await stop(images)
    assert (admission.running, admission.bulk_waiting) == (1, 1)  # one chunk at a time on two places
    await stop(chunks)
    assert (admission.running, admission.waiting, admission.bulk_waiting, admission.active_pixels) == (0, 0, 0, 0)


async def test_a_video_chunk_is_never_refused_and_goes_next_once_it_has_waited_past_the_budget() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=0.5)
    await teach(admission, clock, SMALL, 0.2)
    held = await turns(admission.admit([SMALL]) + admission.admit([SMALL]))
    chunk = admission.admit_bulk(8)  # never refused, even with the line past the budget
    chunks = await turns([chunk])
    clock.advance(0.6)  # the chunk has now waited longer than the budget
    late = admission.admit([SMALL], shed=False)[0]
    lates = await turns([late])
    await stop(held[:1])
    assert chunk.in_flight  # ahead of the images still in line: a film moves under a stream of images
    await stop(chunks)
    await stop(held[1:] + lates)
    assert (admission.running, admission.waiting, admission.bulk_waiting) == (0, 0, 0)


async def test_the_estimate_counts_video_chunks_in_flight_but_not_those_in_line() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=1000)
    async with admission.admit_bulk(10):
        clock.advance(0.5)  # measured: 0.05 s per frame
    assert admission.frame_estimate() == pytest.approx(0.05)
    running = admission.admit_bulk(10)
    chunks = await turns([running, admission.admit_bulk(10)])
    assert admission.estimate() == pytest.approx(10 * 0.05)  # the one in flight; the one in line is overtaken
    clock.advance(0.1)
    assert admission.estimate() == pytest.approx(10 * 0.05 - 0.1)
    await stop(chunks)


async def test_the_budget_also_covers_how_much_slower_images_run_than_at_their_fastest() -> None:
    clock = Clock()
    admission = gate(clock, concurrency=1, budget_s=0.7)
    await teach(admission, clock, SMALL, 0.2)
    assert admission.slowdown(SMALL) == 0.0
    for _ in range(10):  # the machine got busy: images now take 0.5 s
        await teach(admission, clock, SMALL, 0.5)
    slower = admission.slowdown(SMALL)
    assert slower == pytest.approx(admission.service_estimate(SMALL) - 0.2)
    assert slower > 0.25
    assert admission.slowdown(BIG) == 0.0  # another size class, not measured
    tiny = gate(clock, concurrency=1, budget_s=0.001)
    await teach(tiny, clock, SMALL, 0.2)
    await teach(tiny, clock, SMALL, 0.5)
    assert tiny.slowdown(SMALL) > tiny.budget_s
    tiny.admit([SMALL])[0].abandon()  # idle: a free place is never refused, however slow the machine has become
    held = await turns(admission.admit([SMALL]))  # a wait of one image in flight: under 0.5 s, within the budget
    assert admission.expected_wait() <= admission.budget_s
    with pytest.raises(ColorizerError) as refused:
        admission.admit([SMALL])  # but that wait + over 0.25 s slower than idle is past it
    assert "slower than on an idle server" in refused.value.detail
    assert refused.value.retry_after_s == 1  # Retry-After is the wait for the line ahead, rounded up
    await stop(held)
