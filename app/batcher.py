"""Dynamic batching: many waiting requests, one model run.

Contract: every submitted item gets exactly one answer (its ab, or the batch's exception); outputs are
checked against inputs one-for-one; a failed batch is logged once with its request ids. Interactive
images go first; video frames (bulk) fill what room is left, so a film never starves a photo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from app.cores import IMAGE_WORK_NICE, lower_thread_priority
from app.errors import model_failed, overloaded
from app.guidance import ModelHints
from app.metrics import Metrics

log = logging.getLogger(__name__)


class Priority(Enum):
    INTERACTIVE = 0
    BULK = 1


@dataclass
class _Item:
    lightness: np.ndarray  # (1, S, S) float32
    request_id: str
    future: asyncio.Future[np.ndarray]
    hints: ModelHints | None = None  # travels with its image into the same row of the batch
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    def __init__(
        self,
        run_batch: Callable[[np.ndarray, list[ModelHints | None]], np.ndarray],
        metrics: Metrics,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        concurrent_runs: int = 1,
    ) -> None:
        self._run_batch = run_batch
        self._metrics = metrics
        self.max_batch_size, self.max_delay_s, self.max_queue = max_batch_size, max_delay_s, max_queue
        self._queues: dict[Priority, deque[_Item]] = {p: deque() for p in Priority}
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # One thread per concurrent run: ONNX Runtime sessions take concurrent run() calls (how many: app/tuning.py).
        self.concurrent_runs = concurrent_runs
        self._executor = ThreadPoolExecutor(
            max_workers=concurrent_runs,
            thread_name_prefix="inference",
            initializer=lower_thread_priority,
            initargs=(IMAGE_WORK_NICE,),
        )

    @property
    def depth(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name=f"batcher-{i}") for i in range(self.concurrent_runs)]

    async def stop(self) -> None:
        """Finish everything queued, then stop."""
        while self.depth:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def submit(
        self,
        lightness: np.ndarray,
        request_id: str,
        priority: Priority = Priority.INTERACTIVE,
        hints: ModelHints | None = None,
    ) -> asyncio.Future[np.ndarray]:
        """Queue one (1, S, S) L, with its colour hints if any; the future resolves to its (2, h, w) ab.

        Admission (app/admission.py) bounds what reaches here to the images in flight, so ``max_queue`` is only a
        defensive cap on interactive items: past it the batcher refuses (overloaded) rather than grow."""
        if priority is Priority.INTERACTIVE and len(self._queues[priority]) >= self.max_queue:
            raise overloaded(f"the server is busy: {self.max_queue} images are already waiting for the model")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queues[priority].append(_Item(lightness, request_id, future, hints=hints))
        self._metrics.queue_depth.set(self.depth)
        self._wakeup.set()
        return future

    def _take(self, limit: int) -> list[_Item]:
        """Up to ``limit`` live items, interactive first; items whose caller gave up are dropped."""
        taken: list[_Item] = []
        for priority in Priority:
            queue = self._queues[priority]
            while queue and len(taken) < limit:
                item = queue.popleft()
                if not item.future.done():
                    taken.append(item)
        return taken

    async def _collect(self) -> list[_Item]:
        while not self.depth:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = time.monotonic() + self.max_delay_s
        while self.depth < self.max_batch_size and (remaining := deadline - time.monotonic()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return self._take(self.max_batch_size)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._metrics.queue_depth.set(self.depth)
            if not batch:
                continue
            started = time.monotonic()
            for item in batch:
                self._metrics.stage_duration.labels("queue").observe(started - item.enqueued)
            self._metrics.batch_size.observe(len(batch))
            inputs = np.stack([item.lightness for item in batch])  # (N, 1, S, S)
            try:
                hints = [item.hints for item in batch]
                outputs = await loop.run_in_executor(self._executor, self._run_batch, inputs, hints)
                if len(outputs) != len(batch):
                    raise RuntimeError(f"model returned {len(outputs)} results for {len(batch)} inputs")
            except Exception as exc:
                log.exception(
                    "model run failed for a batch of %d (requests %s)", len(batch), [i.request_id for i in batch]
                )
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(model_failed(exc))
                continue
            self._metrics.stage_duration.labels("inference").observe(time.monotonic() - started)
            for item, ab in zip(batch, outputs, strict=True):
                if not item.future.done():
                    item.future.set_result(ab)
