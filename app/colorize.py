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
from app.cores import IMAGE_WORK_NICE, lower_thread_priority
from app.errors import ColorizerError
from app.guidance import NO_GUIDANCE, Guidance, ModelHints, hints_unsupported, reference_colours
from app.image_header import Header, checked_header
from app.metrics import Metrics
from app.observability import request_id_var
from app.pipeline import finish, prepare
from app.point_follow import follow_points
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
        self.executor = ThreadPoolExecutor(
            max_workers=tuning.pipeline_threads,
            thread_name_prefix="pipeline",
            initializer=lower_thread_priority,
            initargs=(IMAGE_WORK_NICE,),
        )

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

    async def colorize(
        self, data: bytes, fmt: str = "png", *, shed: bool = True, guidance: Guidance = NO_GUIDANCE
    ) -> bytes:
        """One upload -> encoded image of the same size, following ``guidance`` (the user's colour hints) if any.
        ``shed`` false (offline work) waits for its turn, however long, instead of being refused or timed out."""
        self.check_guidance(guidance)
        async with self._outcome():
            header = checked_header(data, self.max_pixels)  # cheap, on the loop: refuses bombs before any work
            async with asyncio.timeout(self.tuning.request_timeout_s if shed else None):
                (place,) = self.admission.admit([header.pixels], self._deadline(), shed=shed)
                return await self._run(place, data, header, fmt, guidance)

    async def colorize_all(
        self, blobs: Sequence[bytes], fmt: str = "png", guidance: Guidance = NO_GUIDANCE
    ) -> list[bytes | BaseException]:
        """Several uploads admitted as one request: refused whole (overloaded) or accepted whole, each image then
        waiting its turn in the line. One result per upload, in order: the bytes, or that image's error."""
        self.check_guidance(guidance)
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
                *(self._one_of_many(data, header, place, guidance) for data, header, place in placed),
                return_exceptions=True,
            )
        finally:
            for _, _, place in placed:
                place.abandon()  # a no-op for the ones that ran; frees the line if the request was cancelled
        answers = iter(results)
        return [next(answers) if isinstance(h, Header) else h for h in headers]

    async def infer(
        self, small_l: np.ndarray, priority: Priority = Priority.INTERACTIVE, hints: ModelHints | None = None
    ) -> np.ndarray:
        """(1, S, S) L (and its hints at model resolution) -> (2, h, w) ab through the batcher, shared with every
        other request's images; then moved towards the point hints, if any, the same for every entry point."""
        ab = await self.batcher.submit(small_l, request_id_var.get(), priority, hints)
        if hints is None or not hints.has_points:  # a palette or a reference only: nothing to follow
            return ab
        return await self._in_thread(follow_points, ab, small_l[0], hints.hint_ab, hints.hint_mask)  # ms: off the loop

    async def infer_frames(self, frames: np.ndarray, in_flight: int, hints: ModelHints | None = None) -> np.ndarray:
        """A video chunk's (N, 1, S, S) frames -> (N, 2, h, w) ab, through the batcher as BULK work, at most
        ``in_flight`` of them waiting at once. The chunk takes its place in the admission line first, behind every
        image, so image requests overtake video frames at the gate as well as in the batcher."""
        gate = asyncio.Semaphore(in_flight)

        async def one(small: np.ndarray) -> np.ndarray:
            async with gate:
                return await self.infer(small, Priority.BULK, hints)

        place = self.admission.admit_bulk(len(frames))  # behind every image in line, never refused
        try:
            async with place:
                return np.stack(await asyncio.gather(*(one(small) for small in frames)))
        finally:
            place.abandon()  # a no-op once the place was entered and left

    # -- guidance ----------------------------------------------------------------------------------------------

    def check_guidance(self, guidance: Guidance) -> None:
        """Counts the request by its guidance, and refuses hints a model without hint inputs cannot follow."""
        self.metrics.guided_requests.labels(guidance.kind).inc()
        if guidance and not self.runtime.takes_hints:
            raise hints_unsupported(self.runtime.info.version)

    def hints_for(self, guidance: Guidance, width: int, height: int) -> ModelHints | None:
        """The model's hint inputs for one image of width × height, or None for automatic colour."""
        if not guidance or self.runtime.ab_bins is None:
            return None
        return guidance.for_image(width, height, self.input_size, self.runtime.ab_bins)

    async def reference(self, data: bytes) -> np.ndarray:
        """A reference photo -> its colour distribution over the model's bins. It passes the same header checks
        and admission as any image (a reference is an upload like any other), decoded small."""
        bins = self.runtime.ab_bins
        if bins is None:
            raise hints_unsupported(self.runtime.info.version)
        header = checked_header(data, self.max_pixels)
        async with asyncio.timeout(self.tuning.request_timeout_s):
            (place,) = self.admission.admit([header.pixels], self._deadline())
            try:
                async with place:
                    return await self._in_thread(reference_colours, data, header, bins)  # off the event loop
            finally:
                place.abandon()

    # -- the path ----------------------------------------------------------------------------------------------

    async def _one_of_many(self, data: bytes, header: Header, place: Place, guidance: Guidance) -> bytes:
        async with self._outcome(), asyncio.timeout(self.tuning.request_timeout_s):
            return await self._run(place, data, header, "png", guidance)

    async def _run(self, place: Place, data: bytes, header: Header, fmt: str, guidance: Guidance) -> bytes:
        """Wait for the image's turn, then prepare → infer → finish while holding it."""
        try:
            async with place:
                prepared = await self._in_thread(prepare, data, self.input_size, self.max_pixels, self.metrics, header)
                height, width = prepared.full_l.shape
                hints = self.hints_for(guidance, width, height)  # points are in the orientation-corrected pixels
                ab = await self.infer(prepared.small_l, hints=hints)  # (2, h, w)
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
