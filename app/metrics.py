"""Prometheus metrics, names fixed by the design contract. One registry per app, so tests can build many."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only double the exposition; dashboards never use them

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0)  # fine about the 2 s budget
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "colorizer_request_duration_seconds",
            "Request latency by route and status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "colorizer_stage_duration_seconds",
            "Time per pipeline stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram("colorizer_batch_size", "Images per model run.", buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("colorizer_queue_depth", "Images waiting for the model.", registry=r)
        self.in_flight = Gauge(
            "colorizer_images_in_flight",
            "Images being decoded, coloured or encoded (COLORIZER_MAX_IN_FLIGHT).",
            registry=r,
        )
        self.waiting = Gauge(
            "colorizer_images_waiting", "Admitted images waiting for their turn (COLORIZER_MAX_QUEUE).", registry=r
        )
        self.active_pixels = Gauge(
            "colorizer_active_pixels", "Full-resolution pixels in flight (COLORIZER_MAX_ACTIVE_PIXELS).", registry=r
        )
        self.queue_wait_estimate = Gauge(
            "colorizer_queue_wait_estimate_seconds",
            "Estimated wait a request arriving now would face (the estimate × the margin; admitted within the budget).",
            registry=r,
        )
        self.queue_wait_budget = Gauge(
            "colorizer_queue_wait_budget_seconds",
            "Longest estimated wait admitted (COLORIZER_MAX_QUEUE_WAIT_MS).",
            registry=r,
        )
        self.queue_wait_margin = Gauge(
            "colorizer_queue_wait_margin",
            "Factor the wait estimate is multiplied by before it meets the budget: the 99.5th percentile of real "
            "wait over estimate, for recently admitted images (1 until learnt).",
            registry=r,
        )
        self.queue_wait_margin.set(1.0)
        self.admission_wait = Histogram(
            "colorizer_admission_wait_seconds",
            "Time admitted images waited in line for their turn (to set against the estimate).",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.service_estimate = Gauge(
            "colorizer_service_time_estimate_seconds",
            "Estimated time an image holds its place in flight (EWMA; 0 until measured), by size class.",
            ["size_class"],
            registry=r,
        )
        self.images = Counter("colorizer_images", "Images by outcome.", ["outcome"], registry=r)
        self.guided_requests = Counter(
            "colorizer_guided_requests",
            "Colourisation requests by the guidance they carry: none, points, global (palette or reference), both.",
            ["guidance"],
            registry=r,
        )
        self.errors = Counter("colorizer_errors", "Error answers by status and code.", ["status", "code"], registry=r)
        self.model_info = Gauge(
            "colorizer_model_info", "The loaded model (value 1).", ["version", "provider", "precision"], registry=r
        )
        self.video_jobs = Gauge("colorizer_video_jobs", "Video jobs by status.", ["status"], registry=r)
        # Read at scrape time (Gauge.set_function, wired in app/main.py), for the alerts in deploy/prometheus/rules.
        self.ready = Gauge("colorizer_ready", "1 while /readyz answers 200 (model warm, not draining).", registry=r)
        self.in_flight_limit = Gauge(
            "colorizer_images_in_flight_limit", "COLORIZER_MAX_IN_FLIGHT as resolved (0 until ready).", registry=r
        )
        self.waiting_limit = Gauge(
            "colorizer_images_waiting_limit", "COLORIZER_MAX_QUEUE as resolved (0 until ready).", registry=r
        )
        self.video_store_used = Gauge(
            "colorizer_video_store_used_bytes", "Bytes under COLORIZER_VIDEO_DIR (uploads and results).", registry=r
        )
        self.video_store_quota = Gauge("colorizer_video_store_quota_bytes", "COLORIZER_VIDEO_QUOTA_BYTES.", registry=r)
        self.video_frames = Counter("colorizer_video_frames", "Video frames colourised.", registry=r)
        for stage in ("decode", "preprocess", "queue", "inference", "postprocess", "encode"):
            self.stage_duration.labels(stage)  # export every stage series from the start
        for outcome in ("ok", "error", "rejected"):
            self.images.labels(outcome)
        for kind in ("none", "points", "global", "both"):
            self.guided_requests.labels(kind)
