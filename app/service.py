"""The running service: model session, batcher, worker threads and admission limits, started and drained
together by the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, TypeVar

import numpy as np

from app.admission import InFlight, PixelBudget, default_max_in_flight
from app.batcher import DynamicBatcher, Priority
from app.config import Settings
from app.cores import available_cores
from app.errors import not_ready, overloaded
from app.metrics import Metrics
from app.pipeline import Prepared, prepare
from app.runtime import CUDA, ModelRuntime

log = logging.getLogger(__name__)
T = TypeVar("T")

# From bench/load.py --sweep on a 2-core CPU (docs/PERFORMANCE.md): a CPU does no more work per image in a
# batch, and with one image in flight per core there is rarely a second to wait for, so a CPU batch takes what
# is queued and never waits (a 2 ms wait cost up to 17% of the throughput). On a GPU big batches are the main
# lever (not measured: no GPU was lent).
BATCH_DEFAULTS = {"cuda": (32, 0.005), "cpu": (4, 0.0)}


def default_model_concurrency(kind: str, intra_op_threads: int) -> int:
    """Model runs at once when COLORIZER_MODEL_CONCURRENCY is 0. On a CPU, one run per group of ORT threads, so
    every core has a run to work on: an operator of this small model is too short to split well across threads
    (on 2 cores, two 1-thread runs did 48 img/s, one 2-thread run 35). A GPU takes one run at a time."""
    if kind == "cuda":
        return 1
    return max(1, available_cores() // intra_op_threads)


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.ready = False
        self.draining = False
        self.runtime: ModelRuntime | None = None
        self.batcher: DynamicBatcher | None = None
        self.pixels = PixelBudget(max(settings.max_pixels, 8 * 12_000_000))
        workers = settings.workers_threads or available_cores() + 1
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipeline")
        self.background: list[Callable[[], Any]] = []  # extra shutdown hooks (video jobs)
        self.preparing = 0  # admitted images being decoded, not yet in the batcher's queue
        # Sized per provider in start() when COLORIZER_MAX_IN_FLIGHT is 0.
        self.in_flight = InFlight(settings.max_in_flight or 1, self.metrics.in_flight)

    @property
    def model(self) -> ModelRuntime:
        if self.runtime is None:
            raise not_ready()
        return self.runtime

    async def start(self) -> None:
        s = self.settings
        self.runtime = await asyncio.to_thread(ModelRuntime.from_settings, s)
        kind = "cuda" if self.runtime.info.provider == CUDA else "cpu"
        size, delay = BATCH_DEFAULTS[kind]
        size = s.max_batch_size or size
        delay = s.max_batch_delay_ms / 1000 if s.max_batch_delay_ms >= 0 else delay
        runs = s.model_concurrency or default_model_concurrency(kind, self.runtime.intra_op_threads)
        self.batcher = DynamicBatcher(self.runtime.run, self.metrics, size, delay, s.max_queue, runs)
        self.in_flight.limit = s.max_in_flight or default_max_in_flight(kind, size)
        info = self.runtime.info
        self.metrics.model_info.labels(info.version, info.provider).set(1)
        warm = np.full((size, 1, info.input_size, info.input_size), 50.0, np.float32)
        await asyncio.to_thread(self.runtime.run, warm)  # first run allocates arenas and picks kernels
        self.batcher.start()
        self._chain_sigterm()
        self.ready = True
        log.info(
            "ready: batches of up to %d, waiting up to %.1f ms, %d at once; up to %d images in flight",
            size,
            delay * 1000,
            runs,
            self.in_flight.limit,
        )

    def _chain_sigterm(self) -> None:
        """On SIGTERM turn /readyz to 503 at once, then let uvicorn's own handler drain and exit."""
        try:
            previous = signal.getsignal(signal.SIGTERM)
        except ValueError:  # not the main thread (e.g. an in-process test client)
            return

        def on_term(signum: int, frame: FrameType | None) -> None:
            self.draining = True
            log.info("SIGTERM: draining")
            if callable(previous):
                previous(signum, frame)

        try:
            signal.signal(signal.SIGTERM, on_term)
        except ValueError:
            return

    async def stop(self) -> None:
        self.draining = True
        for hook in self.background:
            await hook()
        if self.batcher:
            await asyncio.wait_for(self.batcher.stop(), self.settings.drain_timeout_s or None)
        self.executor.shutdown(wait=True)

    def admit(self) -> None:
        """Shed before decoding: images being decoded count against COLORIZER_MAX_QUEUE like queued ones, so an
        overloaded server spends no CPU on images it will refuse anyway."""
        waiting = self.preparing + (self.batcher.depth if self.batcher else 0)
        if waiting >= self.settings.max_queue:
            raise overloaded(f"the server is busy: {waiting} images are already waiting (COLORIZER_MAX_QUEUE)")

    async def prepare(self, data: bytes) -> Prepared:
        """Decode an admitted upload to L on the pipeline pool, counted while it runs (see ``admit``)."""
        self.preparing += 1
        try:
            return await self.in_thread(
                prepare, data, self.model.info.input_size, self.settings.max_pixels, self.metrics
            )
        finally:
            self.preparing -= 1

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (decode, Lab, resize, encode) off the event loop, on the bounded pipeline pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def infer(
        self, small_l: np.ndarray, request_id: str, priority: Priority = Priority.INTERACTIVE
    ) -> np.ndarray:
        if self.batcher is None:
            raise not_ready()
        return await self.batcher.submit(small_l, request_id, priority)
