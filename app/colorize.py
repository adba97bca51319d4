"""One image's way through the service, for every entry point (the single and batch routes, the CLI, video frames):

    header → admit → prepare (decode to L, on the pipeline threads) → infer (batcher → ONNX Runtime)
           → finish (join ab with the full-resolution L, encode) → bytes, with the outcome counted once.

The routes read the upload, call this and stream the answer; the CLI calls the same object on its own event loop.
Errors are ColorizerError (app/errors.py); the HTTP edge maps them to statuses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np

from app.admission import Admission, Place
from app.batcher import DynamicBatcher, Priority
from app.errors import ColorizerError
from app.image_header import Header, checked_header
from app.metrics import Metrics
from app.observability import request_id_var
from app.pipeline import finish, prepare
from app.runtime import ModelRuntime
from app.tuning import Tuning

log = logging.getLogger(__name__)
T = TypeVar("T")

# Outcomes the service counts as its own failure; every other ColorizerError is a refusal of the request.
FAILURE_CODES = {"model_failed", "deadline_exceeded"}


class Colorizer:
    """The model session, the batcher, the admission gate and the pipeline threads, and the path through them."""

    def __init__(self, runtime: ModelRuntime, tuning: Tuning, metrics: Metrics, max_pixels: int) -> None:
        self.runtime, self.tuning, self.metrics, self.max_pixels = runtime, tuning, metrics, max_pixels
        self.input_size = runtime.info.input_size
        # Admission lets at most max_in_flight interactive images reach the batcher, so its own cap is defensive.
        self.batcher = DynamicBatcher(
            runtime.run,
            metrics,
            tuning.max_batch_size,
            tuning.max_batch_delay_ms / 1000,
            tuning.max_in_flight,
            tuning.model_concurrency,
        )
        self.admission = Admission(
            tuning.max_in_flight,
            tuning.max_queue_wait_ms / 1000,
            tuning.max_queue,
            tuning.max_active_pixels,
            metrics,
        )
        self.executor = ThreadPoolExecutor(max_workers=tuning.pipeline_threads, thread_name_prefix="pipeline")

    async def start(self) -> None:
        size = self.input_size
        warm = np.full((self.tuning.max_batch_size, 1, size, size), 50.0, np.float32)  # (N, 1, S, S)
        await asyncio.to_thread(self.runtime.run, warm)  # the first run allocates arenas and picks kernels
        self.batcher.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        """Finish what is queued for the model, then stop the threads."""
        await asyncio.wait_for(self.batcher.stop(), timeout_s)
        self.executor.shutdown(wait=True)

    # -- entry points ------------------------------------------------------------------------------------------

    async def colorize(self, data: bytes, fmt: str = "png", *, shed: bool = True) -> bytes:
        """One upload -> encoded image of the same size. ``shed`` false (offline work) waits for its turn, however
        long, instead of being refused or timed out."""
        async with self._outcome():
            header = checked_header(data, self.max_pixels)  # cheap, on the loop: refuses bombs before any work
            async with asyncio.timeout(self.tuning.request_timeout_s if shed else None):
                (place,) = self.admission.admit([header.pixels], self._deadline(), shed=shed)
                return await self._run(place, data, header, fmt)

    async def colorize_all(self, blobs: Sequence[bytes], fmt: str = "png") -> list[bytes | BaseException]:
        """Several uploads admitted as one request: refused whole (overloaded) or accepted whole, each image then
        waiting its turn in the line. One result per upload, in order: the bytes, or that image's error."""
        headers: list[Header | BaseException] = []
        for data in blobs:
            try:
                headers.append(checked_header(data, self.max_pixels))
            except ColorizerError as exc:
                self._count(exc)
                headers.append(exc)
        valid = [h for h in headers if isinstance(h, Header)]
        try:
            places = iter(self.admission.admit([h.pixels for h in valid], self._deadline()))
        except ColorizerError as exc:
            for _ in valid:
                self._count(exc)
            raise
        placed = [(data, h, next(places)) for data, h in zip(blobs, headers, strict=True) if isinstance(h, Header)]
        try:
            results = await asyncio.gather(
                *(self._one_of_many(data, header, place) for data, header, place in placed), return_exceptions=True
            )
        finally:
            for _, _, place in placed:
                place.abandon()  # a no-op for the ones that ran; frees the line if the request was cancelled
        answers = iter(results)
        return [next(answers) if isinstance(h, Header) else h for h in headers]

    async def infer(self, small_l: np.ndarray, priority: Priority = Priority.INTERACTIVE) -> np.ndarray:
        """(1, S, S) L -> (2, h, w) ab through the batcher, shared with every other request's images.

        Guided colourisation plugs in here: hint arrays at model resolution travel beside ``small_l`` through the
        batcher to the runtime, so every entry point gets them by passing them to ``colorize``."""
        return await self.batcher.submit(small_l, request_id_var.get(), priority)

    # -- the path ----------------------------------------------------------------------------------------------

    async def _one_of_many(self, data: bytes, header: Header, place: Place) -> bytes:
        async with self._outcome(), asyncio.timeout(self.tuning.request_timeout_s):
            return await self._run(place, data, header, "png")

    async def _run(self, place: Place, data: bytes, header: Header, fmt: str) -> bytes:
        """Wait for the image's turn, then prepare → infer → finish while holding it."""
        try:
            async with place:
                prepared = await self._in_thread(prepare, data, self.input_size, self.max_pixels, self.metrics, header)
                ab = await self.infer(prepared.small_l)  # (2, h, w)
                return await self._in_thread(finish, prepared, ab, fmt, self.tuning.png_compression, self.metrics)
        finally:
            place.abandon()  # a no-op once the place was entered and left

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """CPU work (decode, Lab, resize, encode) off the event loop, on the bounded pipeline pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _deadline(self) -> float:
        return self.admission.clock() + self.tuning.request_timeout_s

    @asynccontextmanager
    async def _outcome(self) -> AsyncIterator[None]:
        """Counts the image once (ok, rejected or error) and turns the deadline into deadline_exceeded."""
        try:
            yield
        except TimeoutError as exc:
            error = ColorizerError(
                "deadline_exceeded",
                f"the image took longer than {self.tuning.request_timeout_s:g} s (COLORIZER_REQUEST_TIMEOUT_S)",
            )
            self._count(error)
            raise error from exc
        except ColorizerError as exc:
            self._count(exc)
            raise
        except Exception:
            self.metrics.images.labels("error").inc()
            raise
        self.metrics.images.labels("ok").inc()

    def _count(self, error: ColorizerError) -> None:
        self.metrics.images.labels("error" if error.code in FAILURE_CODES else "rejected").inc()
