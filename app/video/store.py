"""Video job state as files, so every replica that shares ``video_dir`` can answer for every job.

    <video_dir>/<id>/status.json   the public state, replaced atomically (write a temp file, then rename)
    <video_dir>/<id>/input<.ext>   the upload
    <video_dir>/<id>/hints.npz     a palette's or reference's global hint, when given (the output kind is in
                                   status.json): what a replica that resumes the job needs beside the upload
    <video_dir>/<id>/segments/     one file per finished chunk (000000.seg, ...), each written whole or not at all
    <video_dir>/<id>/checkpoint.json  how many segments and frames are finished, and smoother-<n>.npz the
                                   temporal smoothing state after them: a restarted job resumes from here
    <video_dir>/<id>/result.mp4    the colourised video (result.mkv for FFV1), renamed into place only when complete
    <video_dir>/<id>/cancel        written by a DELETE that reached a replica not running the job
    <video_dir>/<id>/claim-<n>     created (exclusively) by the replica that took the job over for its n-th run

Directories are 0700 and files 0600: uploads are other people's videos.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import numpy as np

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "done", "failed"]
STATUSES: tuple[Status, ...] = ("queued", "running", "done", "failed")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
STATUS_FILE, CANCEL_FILE, CHECKPOINT_FILE = "status.json", "cancel", "checkpoint.json"
HINTS_FILE, SEGMENTS_DIR = "hints.npz", "segments"
COPY_CHUNK = 1024 * 1024


class QuotaExceeded(Exception):
    """Writing would take the store past its quota; ``room`` is the bytes that were free."""

    def __init__(self, room: int) -> None:
        super().__init__(f"{room} bytes free")
        self.room = room


@dataclass
class JobState:
    id: str
    status: Status = "queued"
    frames_total: int = 0
    frames_done: int = 0
    error: str | None = None
    owner: str = ""  # the replica running the job
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    finished: float | None = None
    output: str = "mp4"  # "mp4" (H.264) or "ffv1" (lossless, in Matroska)
    warnings: list[str] = field(default_factory=list)  # sentences: what was skipped, filled or re-encoded
    frames_filled: int = 0  # frames that did not decode and repeat the one before
    resumed_from: int | None = None  # the frame a restarted job went on from (its last run's)
    attempt: int = 1  # runs so far: a replica that takes the job over claims the next one

    @property
    def progress(self) -> float:
        if self.status == "done":
            return 1.0
        return min(1.0, self.frames_done / self.frames_total) if self.frames_total else 0.0

    def public(self) -> dict[str, Any]:
        """The contract's fields (docs/VIDEO.md), nothing internal."""
        return {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "frames_done": self.frames_done,
            "frames_total": self.frames_total,
            "error": self.error,
            "warnings": self.warnings,
            "frames_filled": self.frames_filled,
            "output": self.output,
            "resumed_from": self.resumed_from,
        }


@dataclass
class Checkpoint:
    """The finished part of a job: segments 0 .. segments-1, holding the first ``frames`` frames."""

    segments: int = 0
    frames: int = 0


def valid_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


def _private_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class JobStore:
    """Blocking file operations; callers run them off the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def create(self) -> str:
        """A new job directory (0700) with a fresh id."""
        self.ensure_root()
        job_id = uuid.uuid4().hex
        (self.root / job_id).mkdir(mode=0o700)
        return job_id

    def dir(self, job_id: str) -> Path:
        if not valid_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def input_path(self, job_id: str) -> Path | None:
        found = sorted(self.dir(job_id).glob("input*"))
        return found[0] if found else None

    def result_path(self, job_id: str, suffix: str = ".mp4") -> Path:
        return self.dir(job_id) / f"result{suffix}"

    def partial_path(self, job_id: str, suffix: str = ".mp4") -> Path:
        return self.dir(job_id) / f"result.partial{suffix}"

    def find_result(self, job_id: str) -> Path | None:
        found = [p for p in self.dir(job_id).glob("result.*") if ".partial" not in p.name]
        return found[0] if found else None

    # -- what a resumed run needs ----------------------------------------------------------------------

    def write_hints(self, job_id: str, hints: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **cast(dict[str, Any], hints))
        _private_write(self.dir(job_id) / HINTS_FILE, buffer.getvalue())

    def read_hints(self, job_id: str) -> dict[str, np.ndarray] | None:
        path = self.dir(job_id) / HINTS_FILE
        if not path.is_file():
            return None
        with np.load(path) as saved:
            return {k: saved[k] for k in saved.files}

    def segment_path(self, job_id: str, index: int) -> Path:
        folder = self.dir(job_id) / SEGMENTS_DIR
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder / f"{index:06d}.seg"

    def segments(self, job_id: str, count: int) -> list[Path]:
        return [self.segment_path(job_id, i) for i in range(count)]

    def checkpoint(self, job_id: str, done: Checkpoint, smoother: dict[str, np.ndarray]) -> None:
        """Record a finished segment: first the smoothing state after it, then (atomically) the checkpoint."""
        job = self.dir(job_id)
        state_path = job / f"smoother-{done.segments}.npz"
        with state_path.open("wb") as f:
            np.savez(f, **cast(dict[str, Any], smoother))
        os.chmod(state_path, 0o600)
        temp = job / f".{CHECKPOINT_FILE}.{uuid.uuid4().hex[:8]}"
        _private_write(temp, json.dumps(asdict(done)).encode())
        os.replace(temp, job / CHECKPOINT_FILE)
        (job / f"smoother-{done.segments - 1}.npz").unlink(missing_ok=True)

    def read_checkpoint(self, job_id: str) -> tuple[Checkpoint, dict[str, np.ndarray] | None]:
        """The last checkpoint and its smoothing state; segments past it (a crash mid-write) are removed."""
        job = self.dir(job_id)
        try:
            done = Checkpoint(**json.loads((job / CHECKPOINT_FILE).read_bytes()))
        except (FileNotFoundError, ValueError, TypeError):
            done = Checkpoint()
        smoother = None
        if done.segments:
            with np.load(job / f"smoother-{done.segments}.npz") as saved:
                smoother = {k: saved[k] for k in saved.files}
        folder = job / SEGMENTS_DIR
        if folder.is_dir():
            for path in folder.iterdir():
                if not (path.suffix == ".seg" and path.stem.isdigit() and int(path.stem) < done.segments):
                    path.unlink(missing_ok=True)
        return done, smoother

    def discard_work(self, job_id: str, keep_result: bool = False) -> None:
        """Everything but status.json (and the result, if asked): the upload, segments, checkpoints."""
        job = self.dir(job_id)
        shutil.rmtree(job / SEGMENTS_DIR, ignore_errors=True)
        keep = {STATUS_FILE}
        if keep_result and (result := self.find_result(job_id)) is not None:
            keep.add(result.name)
        for path in job.iterdir() if job.is_dir() else []:
            if path.name not in keep and path.is_file():
                path.unlink(missing_ok=True)

    def claim(self, job_id: str, attempt: int) -> bool:
        """True for the one replica that creates claim-<attempt> first: it runs the job's attempt-th run."""
        try:
            _private_write(self.dir(job_id) / f"claim-{attempt}", b"")
        except FileExistsError:
            return False
        except FileNotFoundError:
            return False
        return True

    def save_upload(self, job_id: str, source: BinaryIO, suffix: str, quota: int) -> tuple[Path, int]:
        """Copy the upload into the job (0600): its path and size. Past the quota it is removed and
        QuotaExceeded says how much room there was."""
        room = quota - self.usage()
        target = self.dir(job_id) / f"input{suffix}"
        written = 0
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            while block := source.read(COPY_CHUNK):
                written += len(block)
                if written > room:
                    break
                out.write(block)
        if written > room:
            target.unlink(missing_ok=True)
            raise QuotaExceeded(max(room, 0))
        return target, written

    def write(self, state: JobState) -> None:
        """Replace status.json atomically: readers see the old state or the new one, never half of one."""
        state.updated = time.time()
        final = self.dir(state.id) / STATUS_FILE
        temp = final.with_name(f".{STATUS_FILE}.{uuid.uuid4().hex[:8]}")
        try:
            _private_write(temp, json.dumps(asdict(state)).encode())
            os.replace(temp, final)
        except FileNotFoundError:
            log.debug("job %s was removed while its status was being written", state.id)
        finally:
            temp.unlink(missing_ok=True)

    def read(self, job_id: str, include_cancelled: bool = False) -> JobState | None:
        """The job's state, or None when it is unknown, removed, or (unless asked for) being cancelled."""
        if not valid_id(job_id):
            return None
        job = self.dir(job_id)
        try:
            if not include_cancelled and (job / CANCEL_FILE).exists():
                return None
            raw = json.loads((job / STATUS_FILE).read_bytes())
            return JobState(**raw)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (ValueError, TypeError):
            log.warning("job %s has an unreadable status file", job_id)
            return None

    def request_cancel(self, job_id: str) -> None:
        with contextlib.suppress(FileExistsError):
            _private_write(self.dir(job_id) / CANCEL_FILE, b"")

    def cancel_requested(self, job_id: str) -> bool:
        return (self.dir(job_id) / CANCEL_FILE).exists()

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.dir(job_id), ignore_errors=True)

    def job_ids(self) -> list[str]:
        try:
            return [p.name for p in self.root.iterdir() if valid_id(p.name)]
        except FileNotFoundError:
            return []

    def usage(self) -> int:
        """Bytes of everything under the store (uploads, results, partial results)."""
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:
                    continue
        return total

    def age(self, job_id: str) -> float:
        """Seconds since the job directory (or its cancel marker) last changed."""
        try:
            return time.time() - self.dir(job_id).stat().st_mtime
        except FileNotFoundError:
            return 0.0
