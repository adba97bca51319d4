"""The in-flight bound on its own: single requests refused at the limit, batch images served in arrival order,
and no slot leaked by a waiter whose deadline passes."""

from __future__ import annotations

import asyncio

import pytest

from app.admission import InFlight
from app.errors import ApiError


def test_single_requests_are_refused_at_the_limit_and_admitted_again_once_a_slot_frees() -> None:
    slots = InFlight(2)
    slots.enter()
    slots.enter()
    with pytest.raises(ApiError) as refused:
        slots.enter()
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "1"}
    slots.leave()
    slots.enter()
    assert slots.count == 2


def test_a_freed_slot_goes_to_the_oldest_waiter_and_singles_are_refused_while_any_wait() -> None:
    async def scenario() -> list[int]:
        slots = InFlight(1)
        slots.enter()
        order: list[int] = []

        async def batch_image(i: int) -> None:
            await slots.wait_and_enter()
            order.append(i)

        waiters = [asyncio.create_task(batch_image(i)) for i in range(3)]
        await asyncio.sleep(0)
        assert order == []
        slots.leave()  # the slot is handed over, not returned: a single arriving now must not take it
        with pytest.raises(ApiError):
            slots.enter()
        await asyncio.sleep(0)
        assert order == [0]
        assert slots.count == 1
        slots.leave()
        slots.leave()
        await asyncio.gather(*waiters)
        slots.leave()
        assert slots.count == 0
        slots.enter()  # nobody waits any more: singles are admitted again
        return order

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_waiter_that_times_out_leaks_no_slot() -> None:
    async def scenario() -> int:
        slots = InFlight(1)
        slots.enter()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await slots.wait_and_enter()
        slots.leave()
        slots.enter()  # the cancelled waiter neither holds the slot nor blocks singles
        return slots.count

    assert asyncio.run(scenario()) == 1
