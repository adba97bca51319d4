"""The running service: the model, its tuning and the colouriser, started and drained together by the app's
lifespan. Routes reach the colouriser through ``Service.colorizer`` (503 not_ready until the model is warm)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType

from app.colorize import Colorizer
from app.config import Settings
from app.cores import available_cores
from app.errors import not_ready
from app.metrics import Metrics
from app.runtime import ModelRuntime
from app.tuning import Tuning

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.ready = False
        self.draining = False
        self.tuning: Tuning | None = None
        self._colorizer: Colorizer | None = None
        self.background: list[Callable[[], Awaitable[None]]] = []  # extra shutdown hooks (video jobs)

    @property
    def colorizer(self) -> Colorizer:
        if self._colorizer is None:
            raise not_ready()
        return self._colorizer

    async def start(self) -> None:
        s = self.settings
        cores = available_cores()
        runtime = await asyncio.to_thread(ModelRuntime.from_settings, s, cores)
        self.tuning = tuning = Tuning.resolve(s, runtime.kind, cores)
        colorizer = Colorizer(runtime, tuning, self.metrics, s.max_pixels)
        await colorizer.start()
        self._colorizer = colorizer
        info = runtime.info
        self.metrics.model_info.labels(info.version, info.provider, info.precision).set(1)
        self._chain_sigterm()
        self.ready = True
        log.info("ready: %s", tuning)

    def _chain_sigterm(self) -> None:
        """On SIGTERM turn /readyz to 503 at once, then let uvicorn's own handler drain and exit: after
        COLORIZER_DRAIN_DELAY_S of serving on (so a load balancer sees the 503 and stops sending before the listener
        closes), or at once on a second SIGTERM."""
        try:
            previous = signal.getsignal(signal.SIGTERM)
        except ValueError:  # not the main thread (e.g. an in-process test client)
            return
        delayed: list[threading.Timer] = []

        def drain(signum: int, frame: FrameType | None) -> None:
            log.info("SIGTERM: draining")
            if callable(previous):
                previous(signum, frame)  # uvicorn's handler only sets a flag its loop polls: safe from a timer thread

        def on_term(signum: int, frame: FrameType | None) -> None:
            self.draining = True
            delay = self.settings.drain_delay_s
            if delay > 0 and not delayed:
                log.info("SIGTERM: /readyz is 503; serving on for %g s (COLORIZER_DRAIN_DELAY_S), then draining", delay)
                timer = threading.Timer(delay, drain, (signum, frame))
                timer.daemon = True
                delayed.append(timer)
                timer.start()
                return
            for timer in delayed:
                timer.cancel()  # a second SIGTERM: drain now
            drain(signum, frame)

        try:
            signal.signal(signal.SIGTERM, on_term)
        except ValueError:
            return

    async def stop(self) -> None:
        self.draining = True
        for hook in self.background:
            await hook()
        if self._colorizer is not None:
            await self._colorizer.stop(self.settings.drain_timeout_s or None)
