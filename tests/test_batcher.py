"""The batcher's contract with a fake runner: one answer per item, caps, priority, failure fan-out."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from app.batcher import DynamicBatcher, Priority
from app.errors import ColorizerError
from app.guidance import ModelHints
from app.http_errors import http_status
from app.metrics import Metrics


class Recorder:
    """Returns each input's mean as its 'ab', and remembers the batches it saw."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[float]] = []
        self.hints: list[list[ModelHints | None]] = []
        self.fail_on = fail_on

    def __call__(self, x: np.ndarray, hints: list[ModelHints | None]) -> np.ndarray:
        values = [float(v) for v in x.mean(axis=(1, 2, 3))]
        self.batches.append(values)
        self.hints.append(hints)
        if self.fail_on is not None and self.fail_on in values:
            raise RuntimeError("model exploded")
        return np.stack([np.full((2, 1, 1), v, np.float32) for v in values])


def item(value: float) -> np.ndarray:
    return np.full((1, 4, 4), value, np.float32)


async def run_batcher(runner: Recorder, max_batch: int = 4, delay: float = 0.05, queue: int = 100) -> DynamicBatcher:
    batcher = DynamicBatcher(runner, Metrics(), max_batch, delay, queue)
    batcher.start()
    return batcher


async def test_every_item_gets_its_own_answer_in_capped_batches() -> None:
    runner = Recorder()
    batcher = await run_batcher(runner)
    futures = [batcher.submit(item(v), f"r{v}") for v in range(10)]
    results = await asyncio.gather(*futures)
    assert [float(r[0, 0, 0]) for r in results] == list(range(10))
    assert all(len(b) <= 4 for b in runner.batches)
    assert sum(len(b) for b in runner.batches) == 10
    assert len(runner.batches) == 3  # 4 + 4 + 2: the delay let the queue fill before each run
    await batcher.stop()


async def test_each_items_hints_travel_in_its_own_row_of_the_batch() -> None:
    runner = Recorder()
    batcher = await run_batcher(runner)
    marks = {
        v: ModelHints(np.full((2, 4, 4), v, np.float32), np.ones((1, 4, 4), np.float32), np.zeros(3)) for v in (1, 3)
    }
    results = await asyncio.gather(*(batcher.submit(item(v), f"r{v}", hints=marks.get(v)) for v in range(5)))
    assert [float(r[0, 0, 0]) for r in results] == list(range(5))
    rows = [
        (value, hints)
        for batch, hint_rows in zip(runner.batches, runner.hints, strict=True)
        for value, hints in zip(batch, hint_rows, strict=True)
    ]
    assert len(rows) == 5
    for value, hints in rows:
        assert (hints is None) == (value not in marks)
        if hints is not None:
            assert float(hints.hint_ab[0, 0, 0]) == value
    await batcher.stop()


async def test_a_failed_batch_fails_only_its_own_items_and_the_batcher_recovers() -> None:
    runner = Recorder(fail_on=5.0)
    batcher = await run_batcher(runner, max_batch=2, delay=0.01)
    futures = [batcher.submit(item(v), f"r{v}") for v in (4.0, 5.0, 6.0, 7.0)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert [isinstance(r, ColorizerError) and http_status(r) == 500 for r in results] == [True, True, False, False]
    later = await batcher.submit(item(8.0), "r8")
    assert float(later[0, 0, 0]) == 8.0
    await batcher.stop()


async def test_interactive_items_go_before_bulk() -> None:
    runner = Recorder()
    batcher = DynamicBatcher(runner, Metrics(), 2, 0.0, 100)
    bulk = [batcher.submit(item(100 + v), "video", Priority.BULK) for v in range(4)]
    images = [batcher.submit(item(v), "image") for v in range(2)]
    batcher.start()  # everything is queued before the first run
    await asyncio.gather(*bulk, *images)
    assert runner.batches[0] == [0.0, 1.0]
    await batcher.stop()


async def test_full_queue_is_refused_and_abandoned_items_are_skipped() -> None:
    runner = Recorder()
    batcher = DynamicBatcher(runner, Metrics(), 8, 0.0, 2)
    kept = batcher.submit(item(1), "a")
    abandoned = batcher.submit(item(2), "b")
    with pytest.raises(ColorizerError) as refused:
        batcher.submit(item(3), "c")
    assert http_status(refused.value) == 503
    assert refused.value.retry_after_s
    abandoned.cancel()  # the caller gave up (deadline or disconnect) before the run
    batcher.start()
    await kept
    assert runner.batches == [[1.0]]
    await batcher.stop()


async def test_concurrent_runs_put_two_batches_on_the_model_at_once() -> None:
    """With two runs allowed, a second batch starts while the first is still running: each fake run waits for the
    other at a barrier, which only two simultaneous runs can pass (one at a time, the barrier times out)."""
    barrier = threading.Barrier(2, timeout=10)

    def runner(x: np.ndarray, hints: list[ModelHints | None]) -> np.ndarray:
        barrier.wait()
        return np.zeros((len(x), 2, 1, 1), np.float32)

    batcher = DynamicBatcher(runner, Metrics(), 1, 0.0, 100, concurrent_runs=2)
    batcher.start()
    answers = await asyncio.gather(batcher.submit(item(1), "a"), batcher.submit(item(2), "b"))
    assert [a.shape for a in answers] == [(2, 1, 1), (2, 1, 1)]
    await batcher.stop()
