"""Video jobs: admitted by POST /videos, run as asyncio tasks owned by the JobManager (never by a request),
their state kept in files (app/video/store.py) so that any replica sharing ``video_dir`` can answer for them.

Each finished chunk is a segment file and a checkpoint, so a job outlives its process: after a restart the same
replica resumes its jobs from their last checkpoint, and a replica sharing the store takes over a job whose owner
stopped refreshing it. The result is muxed from the segments (with the source's sound) at the end.

Frames go through the service's batcher at Priority.BULK, one chunk (up to 16 frames) in flight per job, so
interactive images are served first in every batch. Decoding and encoding run on the manager's own threads;
the next chunk is decoded while the model works on the current one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, BinaryIO, TypeVar

import numpy as np

from app.cores import VIDEO_WORK_NICE, lower_thread_priority
from app.errors import ColorizerError, overloaded
from app.guidance import NO_GUIDANCE, Guidance, ModelHints
from app.http_errors import ApiError
from app.observability import request_id_var
from app.service import Service
from app.video.media import (
    OUTPUTS,
    VIDEO_SUFFIXES,
    Encoding,
    InvalidMedia,
    MediaError,
    OutputSpec,
    Timeline,
    UnsupportedMedia,
    VideoInfo,
    VideoReader,
    finish,
    probe,
)
from app.video.process import Chunk, chunk_frames, loss_error, read_chunk, reader_warnings, write_chunk
from app.video.store import STATUSES, Checkpoint, JobState, JobStore, QuotaExceeded
from app.video.temporal import TemporalSmoother

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_WORKERS = 1  # jobs decoding/encoding at once per replica; the others wait as "queued"
HOUSEKEEPING_S = 1.0  # how often cancel markers of this replica's jobs are polled
HEARTBEAT_S = 30.0  # a running or queued job's status.json is refreshed at least this often
STALE_S = 300.0  # an active job not refreshed for this long belongs to a replica that died: another takes it over
UPLOAD_GRACE_S = 900.0  # a job directory without status.json this old is an abandoned upload
DELETE_WAIT_S = 30.0  # a DELETE waits this long for its job to stop before answering


class JobCancelled(Exception):
    """The job was deleted, or the server is shutting down."""


@dataclass
class _Job:
    state: JobState
    info: VideoInfo
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""  # "deleted" or "shutdown", once cancelled
    task: asyncio.Task[None] | None = None
    hints: ModelHints | None = None  # a palette's or reference's global hint, the same for every frame
    output: OutputSpec = OUTPUTS["mp4"]

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()


def _not_found(job_id: str) -> ApiError:
    return ApiError(
        404, "video_not_found", f"there is no video job {job_id[:64]!r}; it may have expired or been deleted"
    )


class JobManager:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = service.settings
        self.store = JobStore(service.settings.video_dir)
        self.smoothing = service.settings.video_smoothing
        self.scene_cut = service.settings.video_scene_cut
        workers = service.settings.video_workers
        TemporalSmoother(self.smoothing, self.scene_cut)  # fail at start-up on bad values, not in the first job
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._jobs: dict[str, _Job] = {}
        self._admitting = 0
        self._slots = asyncio.Semaphore(workers)
        # Own threads, so video decode/encode never queues image requests behind it in the pipeline pool.
        self._executor = ThreadPoolExecutor(
            max_workers=2 * workers,
            thread_name_prefix="video",
            initializer=lower_thread_priority,
            initargs=(VIDEO_WORK_NICE,),
        )
        self._housekeeping: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.store.ensure_root)
        await self._take_over()  # this host's jobs of an earlier process: resume them now
        self._publish()
        self._housekeeping = asyncio.create_task(self._housekeep(), name="video-housekeeping")

    async def stop(self) -> None:
        """Stop every job this replica runs at its next chunk (it stays queued, to be resumed from its last
        checkpoint by the next process here or by another replica), then the housekeeping."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        running = [job for job in self._jobs.values() if job.active]
        for job in running:
            job.reason = job.reason or "shutdown"
            job.cancel.set()
        await asyncio.gather(*(job.task for job in running if job.task), return_exceptions=True)
        self._executor.shutdown(wait=True)

    # -- the routes' operations -----------------------------------------------------------------------

    async def submit(
        self,
        source: BinaryIO,
        filename: str | None,
        size: int | None,
        guidance: Guidance = NO_GUIDANCE,
        output: str = "mp4",
    ) -> JobState:
        """Admit an upload: limits, quota, probe; then queue it, to be coloured following ``guidance`` (a palette or
        a reference photo's colours) into ``output`` ("mp4" or "ffv1"). Raises ApiError with a sentence."""
        s = self.settings
        if self.service.draining:
            raise ApiError(503, "draining", "the server is shutting down; send the video again", {"Retry-After": "5"})
        _ = self.service.colorizer  # 503 while the model is still loading
        active = sum(job.active for job in self._jobs.values()) + self._admitting
        if active >= s.max_video_jobs:
            raise overloaded(
                f"{active} videos are already queued or running here; the limit is {s.max_video_jobs} "
                "(COLORIZER_MAX_VIDEO_JOBS); try again when one has finished",
                retry_after_s=30,
            )
        if size is not None and size > s.video_quota_bytes:
            raise _too_big_for_store(size, s.video_quota_bytes)
        self._admitting += 1
        try:
            job_id = await asyncio.to_thread(self.store.create)
            try:
                info = await self._admit(job_id, source, _suffix(filename))
            except BaseException:
                await asyncio.to_thread(self.store.remove, job_id)
                raise
            state = JobState(job_id, "queued", frames_total=info.frames, owner=self.owner, output=output)
            hints = self.service.colorizer.hints_for(guidance, info.width, info.height)
            if hints is not None:  # kept for a replica that resumes the job (the output kind is in the state)
                await asyncio.to_thread(self.store.write_hints, job_id, dataclasses.asdict(hints))
            await asyncio.to_thread(self.store.write, state)
            job = _Job(state, info, hints=hints, output=OUTPUTS[output])
            self._jobs[job_id] = job
            job.task = asyncio.create_task(self._run(job), name=f"video-{job_id}")
        finally:
            self._admitting -= 1
        self._publish()
        log.info(
            "video job %s queued: %d frames of %dx%d at %s fps, audio %s",
            job_id,
            info.frames,
            info.width,
            info.height,
            info.fps,
            info.audio_codec or "none",
        )
        return state

    async def _admit(self, job_id: str, source: BinaryIO, suffix: str) -> VideoInfo:
        s = self.settings
        try:
            path, written = await asyncio.to_thread(self.store.save_upload, job_id, source, suffix, s.video_quota_bytes)
        except QuotaExceeded as exc:
            raise ApiError(
                507,
                "insufficient_storage",
                f"the video store is full: {exc.room / 1e6:.1f} MB of its {s.video_quota_bytes / 1e6:.1f} MB "
                "are free and this upload is larger (COLORIZER_VIDEO_QUOTA_BYTES); "
                "try again once finished videos have expired",
                {"Retry-After": "60"},
            ) from exc
        if written == 0:
            raise ApiError(400, "empty_upload", "the uploaded file is empty")
        try:
            info = await asyncio.to_thread(probe, path)
        except InvalidMedia as exc:
            raise ApiError(400, "invalid_video", f"{exc}; send an MP4, MOV, MKV, AVI or WebM video") from exc
        except UnsupportedMedia as exc:
            raise ApiError(415, "unsupported_video", str(exc)) from exc
        if info.frames > s.max_video_frames:
            raise ApiError(
                413,
                "too_many_frames",
                f"the video has {info.frames} frames; the limit is {s.max_video_frames} (COLORIZER_MAX_VIDEO_FRAMES)",
            )
        if info.width * info.height > s.max_pixels:
            raise ApiError(
                413,
                "too_many_pixels",
                f"video frames are {info.width}×{info.height}; the limit is {s.max_pixels / 1e6:.1f} Mpx a frame "
                "(COLORIZER_MAX_PIXELS)",
            )
        return info

    async def status(self, job_id: str) -> JobState:
        state = await asyncio.to_thread(self.store.read, job_id)
        if state is None:
            raise _not_found(job_id)
        return state

    async def result(self, job_id: str) -> tuple[str, OutputSpec]:
        """The path of a finished result and its kind; 409 while the job is not done."""
        state = await self.status(job_id)
        if state.status == "failed":
            raise ApiError(409, "video_failed", f"the video job failed, so there is no result: {state.error}")
        if state.status != "done":
            raise ApiError(
                409,
                "video_not_ready",
                f"the video is still {state.status} ({state.progress:.0%} done); "
                f"poll /videos/{job_id} until its status is done",
                {"Retry-After": "2"},
            )
        spec = OUTPUTS.get(state.output, OUTPUTS["mp4"])
        path = self.store.result_path(job_id, spec.suffix)
        if not await asyncio.to_thread(path.is_file):
            raise _not_found(job_id)
        return str(path), spec

    async def delete(self, job_id: str) -> None:
        """Cancel the job if it runs, and remove its files (or have its owner remove them)."""
        state = await self.status(job_id)
        job = self._jobs.get(job_id)
        if job is not None and job.active and job.task is not None:
            job.reason = "deleted"
            job.cancel.set()
            await asyncio.to_thread(self.store.request_cancel, job_id)  # answer 404 at once, everywhere
            await asyncio.wait([job.task], timeout=DELETE_WAIT_S)
        elif state.status in ("queued", "running") and time.time() - state.updated < STALE_S:
            await asyncio.to_thread(self.store.request_cancel, job_id)  # its owner polls for this
            log.info("video job %s runs on %s; asked it to cancel", job_id, state.owner)
            return
        await asyncio.to_thread(self.store.remove, job_id)
        self._jobs.pop(job_id, None)
        self._publish()
        log.info("video job %s deleted", job_id)

    # -- running a job --------------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        job_id, state = job.state.id, job.state
        request_id_var.set(f"video-{job_id[:12]}")  # this task's own context: its log lines name the job
        try:
            await self._interruptible(job, self._slots.acquire())
            try:
                self._check_cancel(job)
                state.status = "running"
                await asyncio.to_thread(self.store.write, state)
                self._publish()
                started = time.monotonic()
                await self._process(job)
            finally:
                self._slots.release()
            state.status, state.finished = "done", time.time()
            state.frames_total = state.frames_done
            await asyncio.to_thread(self.store.write, state)
            await asyncio.to_thread(self.store.discard_work, job_id, keep_result=True)
            log.info("video job %s done: %d frames in %.1f s", job_id, state.frames_done, time.monotonic() - started)
            for warning in state.warnings:
                log.warning("video job %s: %s", job_id, warning)
        except JobCancelled:
            if job.reason == "deleted":
                await asyncio.to_thread(self.store.remove, job_id)
                self._jobs.pop(job_id, None)
                log.info("video job %s cancelled and removed", job_id)
            else:
                state.status = "queued"  # kept with its segments: the next process (or another replica) resumes it
                await asyncio.to_thread(self.store.write, state)
                log.info("video job %s stopped at frame %d for shutdown; it will resume", job_id, state.frames_done)
        except MediaError as exc:
            await self._fail(job, f"{exc}")
        except (ApiError, ColorizerError) as exc:
            await self._fail(job, exc.detail)
        except Exception:
            log.exception("video job %s failed", job_id)
            await self._fail(job, "the video could not be colourised because of a server error; it has been logged")
        finally:
            self._publish()

    async def _fail(self, job: _Job, error: str) -> None:
        """A failed job keeps only its status.json (for GET) until the TTL sweep."""
        state = job.state
        state.status, state.error, state.finished = "failed", error, time.time()
        log.warning("video job %s failed: %s", state.id, error)
        await asyncio.to_thread(self.store.discard_work, state.id)
        await asyncio.to_thread(self.store.write, state)

    async def _process(self, job: _Job) -> None:
        """Three stages overlap: decode chunk k+1 and encode chunk k-1 (threads) while the model runs chunk k.
        Each encoded chunk is a segment plus a checkpoint; a resumed job skips the frames its segments hold."""
        info, state, spec = job.info, job.state, job.output
        source = self.store.input_path(state.id)
        if source is None:
            raise InvalidMedia("the uploaded file is gone")
        size = self.service.colorizer.input_size
        count = chunk_frames(info.width, info.height)
        max_lost = self.settings.video_max_lost_frames
        in_flight = self.service.colorizer.tuning.video_in_flight  # frames at the model at once
        reader = await self._io(VideoReader, source, spec.name == "ffv1" and info.bit_depth > 8)
        threads: list[asyncio.Future[Any]] = []  # thread work to finish before the files are closed

        def in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
            future = asyncio.ensure_future(self._io(fn, *args))
            threads[:] = [f for f in threads if not f.done()] + [future]
            return future

        try:
            encoding = Encoding.choose(spec, info, reader.video.time_base)
            timeline = Timeline(info.fps, encoding.time_base)
            smoother = TemporalSmoother(self.smoothing, self.scene_cut)
            done, saved = await asyncio.to_thread(self.store.read_checkpoint, state.id)
            if done.frames:
                for pts in await self._io(reader.skip, done.frames):
                    timeline.next(pts)
                if saved is not None:
                    smoother.restore(saved)
                state.resumed_from = done.frames
                log.info("video job %s resumes at frame %d (segment %d)", state.id, done.frames, done.segments)
            state.frames_done = done.frames
            reading = in_thread(read_chunk, reader, count, size, info.rotation)
            writing: asyncio.Future[None] | None = None
            being_written = 0
            while True:
                chunk = await reading
                if error := loss_error(reader, info.frames, max_lost):
                    raise InvalidMedia(error)
                if len(chunk):
                    reading = in_thread(read_chunk, reader, count, size, info.rotation)
                    frames = self.service.colorizer.infer_frames(chunk.model_l, in_flight, job.hints)
                    ab = await self._interruptible(job, frames)
                if writing is not None:
                    await writing
                    await self._advance(job, being_written)
                if not len(chunk):
                    break
                done = Checkpoint(done.segments + 1, done.frames + len(chunk))
                args = (state.id, done, encoding, timeline, chunk, ab, smoother, info.rotation)
                writing, being_written = in_thread(self._write_segment, *args), len(chunk)
            state.frames_filled = reader.filled
            warnings = reader_warnings(reader, info.frames)
            partial = self.store.partial_path(state.id, spec.suffix)
            segments = self.store.segments(state.id, done.segments)
            warnings += await self._io(finish, partial, segments, source, info, encoding)
            state.warnings = warnings
            await asyncio.to_thread(partial.replace, self.store.result_path(state.id, spec.suffix))
        finally:
            await asyncio.gather(*threads, return_exceptions=True)  # PyAV objects are closed only when idle
            await self._io(reader.close)
        if smoother.cuts:
            log.info("video job %s: %d scene cuts", state.id, smoother.cuts)

    def _write_segment(
        self,
        job_id: str,
        done: Checkpoint,
        encoding: Encoding,
        timeline: Timeline,
        chunk: Chunk,
        ab: np.ndarray,
        smoother: TemporalSmoother,
        rotation: int,
    ) -> None:
        """Colour and encode one chunk as segment ``done.segments - 1``, then record the checkpoint after it."""
        path = self.store.segment_path(job_id, done.segments - 1)
        write_chunk(path, encoding, timeline, chunk, ab, smoother, rotation)
        self.store.checkpoint(job_id, done, smoother.state())

    async def _advance(self, job: _Job, frames: int) -> None:
        state = job.state
        state.frames_done += frames
        state.frames_total = max(state.frames_total, state.frames_done)
        self.service.metrics.video_frames.inc(frames)
        await self._checkpoint(job)

    async def _checkpoint(self, job: _Job) -> None:
        """Between chunks: publish progress, honour a DELETE from another replica, keep within limits."""
        s, state = self.settings, job.state
        if state.frames_done > s.max_video_frames:
            raise InvalidMedia(f"the video has more than {s.max_video_frames} frames (COLORIZER_MAX_VIDEO_FRAMES)")
        cancel, usage = await asyncio.to_thread(self._write_progress, state)
        if cancel:
            job.reason = "deleted"
            job.cancel.set()
        self._check_cancel(job)
        if usage > s.video_quota_bytes:
            raise InvalidMedia(
                "the video store ran out of room while writing the result (COLORIZER_VIDEO_QUOTA_BYTES); "
                "try again later"
            )

    def _write_progress(self, state: JobState) -> tuple[bool, int]:
        self.store.write(state)
        return self.store.cancel_requested(state.id), self.store.usage()

    @staticmethod
    def _check_cancel(job: _Job) -> None:
        if job.cancel.is_set():
            raise JobCancelled(job.reason)

    async def _interruptible(self, job: _Job, awaitable: Awaitable[T]) -> T:
        """Await, but give up (cancelling the awaitable) as soon as the job is cancelled."""
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(job.cancel.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise JobCancelled(job.reason)
        return task.result()

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- housekeeping ---------------------------------------------------------------------------------

    async def _housekeep(self) -> None:
        """Poll cancel markers of this replica's jobs every second; sweep expired and orphaned jobs."""
        ttl = self.settings.video_ttl_s
        sweep_every = min(60.0, max(HOUSEKEEPING_S, ttl / 2))
        last_sweep = last_beat = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                active = [job for job in self._jobs.values() if job.active and not job.cancel.is_set()]
                for job in active:
                    if await asyncio.to_thread(self.store.cancel_requested, job.state.id):
                        job.reason = "deleted"
                        job.cancel.set()
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT_S:
                    last_beat = now
                    for job in active:
                        await asyncio.to_thread(self.store.write, job.state)
                if now - last_sweep >= sweep_every:
                    last_sweep = now
                    removed = await asyncio.to_thread(self._sweep, {job.state.id for job in active}, ttl)
                    for job_id in removed:
                        self._jobs.pop(job_id, None)
                    await self._take_over()
                    self._publish()
            except Exception:
                log.exception("video housekeeping failed; retrying")

    async def _take_over(self) -> None:
        """Resume jobs whose owner is gone: at start-up those of an earlier process on this host, at once; later
        also any whose owner stopped refreshing them for STALE_S (a replica that died, with shared storage)."""
        for state in await asyncio.to_thread(self._orphans):
            if not await asyncio.to_thread(self.store.claim, state.id, state.attempt + 1):
                continue  # another replica was quicker
            job_id = state.id
            try:
                source = await asyncio.to_thread(self.store.input_path, job_id)
                if source is None:
                    raise InvalidMedia("the uploaded file is gone")
                hints = await asyncio.to_thread(self.store.read_hints, job_id)
                info = await asyncio.to_thread(probe, source)
            except (OSError, ValueError, KeyError, MediaError) as exc:
                state.status, state.finished = "failed", time.time()
                state.error = f"the server processing this video stopped and the job could not be resumed ({exc})"
                await asyncio.to_thread(self.store.discard_work, job_id)
                await asyncio.to_thread(self.store.write, state)
                log.warning("video job %s of %s could not be resumed: %s", job_id, state.owner, exc)
                continue
            log.info("video job %s of %s (gone) resumes here, run %d", job_id, state.owner, state.attempt + 1)
            state.attempt += 1
            state.owner, state.status = self.owner, "queued"
            await asyncio.to_thread(self.store.write, state)
            model_hints = ModelHints(**hints) if hints is not None else None
            job = _Job(state, info, hints=model_hints, output=OUTPUTS.get(state.output, OUTPUTS["mp4"]))
            self._jobs[job_id] = job
            job.task = asyncio.create_task(self._run(job), name=f"video-{job_id}")
        self._publish()

    def _orphans(self) -> list[JobState]:
        found = []
        for job_id in self.store.job_ids():
            if job_id in self._jobs:
                continue
            state = self.store.read(job_id)
            if state is not None and state.status in ("queued", "running") and self._owner_gone(state):
                found.append(state)
        return found

    @staticmethod
    def _owner_gone(state: JobState) -> bool:
        """A process of this host that no longer runs, or any owner silent for STALE_S."""
        if time.time() - state.updated > STALE_S:
            return True
        host, _, rest = state.owner.partition(":")
        pid_text = rest.partition(":")[0]
        if host != socket.gethostname() or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            return True  # this pid is this process, which never ran the job: the owner was an earlier one
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _sweep(self, active: set[str], ttl: float) -> list[str]:
        """Remove results past their TTL, cancelled jobs whose owner is gone, and abandoned uploads (jobs whose
        owner is gone are taken over by _take_over). Returns the ids removed."""
        now = time.time()
        removed: list[str] = []
        for job_id in self.store.job_ids():
            if job_id in active:
                continue
            state = self.store.read(job_id, include_cancelled=True)
            cancelled = self.store.cancel_requested(job_id)
            if state is None:
                if self.store.age(job_id) > UPLOAD_GRACE_S:
                    removed.append(self._forget(job_id, "abandoned upload"))
                continue
            fresh = now - state.updated < STALE_S
            if state.status in ("queued", "running"):
                if cancelled and not fresh:
                    removed.append(self._forget(job_id, "cancelled, its replica gone"))
            elif cancelled or now - (state.finished or state.updated) > ttl:
                removed.append(self._forget(job_id, "deleted" if cancelled else "expired"))
        return removed

    def _forget(self, job_id: str, why: str) -> str:
        self.store.remove(job_id)
        log.info("video job %s removed: %s", job_id, why)
        return job_id

    def _publish(self) -> None:
        """This replica's jobs by status, for /metrics (sum over replicas for the whole fleet)."""
        counts = dict.fromkeys(STATUSES, 0)
        for job in list(self._jobs.values()):
            counts[job.state.status] += 1
        for status, n in counts.items():
            self.service.metrics.video_jobs.labels(status).set(n)


def _suffix(filename: str | None) -> str:
    suffix = PurePath((filename or "").replace("\\", "/")).suffix.lower()
    return suffix if suffix in VIDEO_SUFFIXES else ".bin"


def _too_big_for_store(size: int, quota: int) -> ApiError:
    return ApiError(
        413,
        "video_too_large",
        f"the video is {size / 1e6:.1f} MB; the video store holds at most {quota / 1e6:.1f} MB "
        "(COLORIZER_VIDEO_QUOTA_BYTES)",
    )
