"""Tuning.resolve: per-provider and per-core defaults in one place, settings win where set."""

from __future__ import annotations

import dataclasses

import pytest

from app.config import Settings
from app.tuning import Tuning, intra_op_threads


def test_cpu_defaults_follow_the_cores() -> None:
    t = Tuning.resolve(Settings(), "cpu", 2)
    assert (t.intra_op_threads, t.model_concurrency) == (1, 2)  # two 1-thread runs on two cores
    assert (t.max_batch_size, t.max_batch_delay_ms) == (4, 0.0)
    assert t.max_in_flight == 2  # one per core
    assert t.pipeline_threads == 3
    assert t.video_in_flight == 1
    big = Tuning.resolve(Settings(), "cpu", 16)
    assert (big.intra_op_threads, big.model_concurrency, big.max_in_flight) == (8, 2, 16)


def test_cuda_defaults() -> None:
    """One image per run, no wait, four in flight: what served best on an H200 (app/tuning.py says why)."""
    t = Tuning.resolve(Settings(), "cuda", 8)
    assert (t.max_batch_size, t.max_batch_delay_ms, t.model_concurrency) == (1, 0.0, 1)
    assert t.max_in_flight == 4
    assert t.video_in_flight == 16
    assert Tuning.resolve(Settings(max_batch_size=8), "cuda", 8).max_in_flight == 4 * 8


def test_settings_win_over_defaults() -> None:
    s = Settings(
        max_batch_size=2,
        max_batch_delay_ms=3,
        model_concurrency=5,
        max_in_flight=7,
        intra_op_threads=3,
        workers_threads=9,
        video_in_flight=4,
        max_queue_wait_ms=250,
    )
    t = Tuning.resolve(s, "cpu", 2)
    assert (t.max_batch_size, t.max_batch_delay_ms, t.model_concurrency, t.max_in_flight) == (2, 3, 5, 7)
    assert (t.intra_op_threads, t.pipeline_threads, t.video_in_flight, t.max_queue_wait_ms) == (3, 9, 4, 250)
    assert intra_op_threads(s, 2) == 3


def test_the_pixel_cap_never_refuses_an_image_within_max_pixels() -> None:
    t = Tuning.resolve(Settings(max_pixels=200_000_000, max_active_pixels=10_000_000), "cpu", 2)
    assert t.max_active_pixels == 200_000_000


def test_the_record_is_frozen_and_reports_every_field() -> None:
    t = Tuning.resolve(Settings(), "cpu", 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.max_in_flight = 1  # type: ignore[misc]
    assert set(t.as_dict()) == {f.name for f in dataclasses.fields(t)}
