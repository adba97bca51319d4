"""Every metric the Grafana dashboard and the alerting rules query is one the running service exports, or one the
rules record.

A renamed metric does not break the service or its unit tests; it silently empties a dashboard panel, or silences
an alert. This reads the metric names out of the PromQL and looks for each in a real server's /metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import httpx
import numpy as np
import yaml

from tests.conftest import Server

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards" / "colorizer.json"
RULE_FILES = sorted((DASHBOARD.parents[2] / "prometheus").glob("*.rules.yml"))
# The series names a histogram or summary family adds to its own name, and the one a counter adds.
FAMILY_SUFFIXES = {"_bucket": {"histogram"}, "_sum": {"histogram", "summary"}, "_count": {"histogram", "summary"}}
COUNTER_SUFFIX = "_total"
# Families whose TYPE name is itself a series name a query can select.
SELF_NAMED = {"gauge", "untyped", "unknown"}


def dashboard_metric_names() -> set[str]:
    """Metric names in the dashboard's queries: every `colorizer_*` identifier (labels and functions never are)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return {name for expr in exprs for name in re.findall(r"\bcolorizer_[a-zA-Z0-9_:]*", expr)}


def rules() -> list[dict[str, str]]:
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"]]


def rule_metric_names() -> set[str]:
    """Service metric names in the alerting and recording rules' PromQL."""
    return {name for rule in rules() for name in re.findall(r"\bcolorizer_[a-zA-Z0-9_]*", rule["expr"])}


def recorded_names_used() -> set[str]:
    """Recording-rule names (`colorizer:...`) that the dashboard and the alerts query."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [rule["expr"] for rule in rules()]
    return {name for expr in exprs for name in re.findall(r"\bcolorizer:[a-zA-Z0-9_:]*", expr)}


def test_every_recorded_series_queried_is_recorded() -> None:
    used = recorded_names_used()
    assert len(used) >= 10, f"found only {sorted(used)}: the extraction is broken"
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert not used - recorded, f"queried but recorded by no rule: {sorted(used - recorded)}"


def exposition(text: str) -> tuple[set[str], dict[str, str]]:
    """Sample names, and family name -> type from `# TYPE` lines.

    Both are needed: a labelled family with no observations yet prints only its HELP and TYPE lines.
    """
    samples = {re.split(r"[{\s]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}
    types = dict(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", text))
    return samples, types


def exported(name: str, samples: set[str], types: dict[str, str]) -> bool:
    """Whether a query for `name` can find series: a sample, or a declared family that would produce it."""
    if name in samples or types.get(name) in SELF_NAMED:
        return True
    if name.endswith(COUNTER_SUFFIX) and types.get(name) == "counter":  # prometheus_client's TYPE keeps _total
        return True
    for suffix, kinds in FAMILY_SUFFIXES.items():
        if name.endswith(suffix) and types.get(name.removesuffix(suffix)) in kinds:
            return True
    return name.endswith(COUNTER_SUFFIX) and types.get(name.removesuffix(COUNTER_SUFFIX)) == "counter"


def small_gray_png() -> bytes:
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))  # (48, 64) gray
    ok, png = cv2.imencode(".png", gradient)
    assert ok
    return png.tobytes()


def test_exported_understands_the_exposition_format() -> None:
    """The matcher itself, on a hand-written exposition: families with and without samples."""
    text = "\n".join(
        [
            "# TYPE colorizer_request_duration_seconds histogram",
            'colorizer_request_duration_seconds_bucket{route="/colorize",le="0.1"} 1.0',
            "# TYPE colorizer_errors counter",
            "# TYPE colorizer_images_total counter",
            "# TYPE colorizer_video_jobs gauge",
            "# TYPE colorizer_queue_depth gauge",
            "colorizer_queue_depth 0.0",
        ]
    )
    samples, types = exposition(text)
    for name in [
        "colorizer_request_duration_seconds_bucket",
        "colorizer_request_duration_seconds_count",
        "colorizer_errors_total",
        "colorizer_images_total",
        "colorizer_video_jobs",
        "colorizer_queue_depth",
    ]:
        assert exported(name, samples, types), name
    for name in [
        "colorizer_queue_depth_bucket",  # a gauge has no buckets
        "colorizer_errors",  # a counter's series end in _total
        "colorizer_request_duration_seconds",  # a histogram's series end in _bucket/_sum/_count
        "colorizer_nonexistent",
    ]:
        assert not exported(name, samples, types), name


def test_every_dashboard_metric_is_exported(live_server: Server) -> None:
    names = dashboard_metric_names()
    assert len(names) >= 5, f"found only {sorted(names)} in the dashboard: the extraction is broken"
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        # One real image first, so the labelled histograms (route, status) have series to show.
        r = client.post("/colorize", files={"file": ("gray.png", small_gray_png(), "image/png")})
        assert r.status_code == 200, r.text
        scrape = client.get("/metrics")
    assert scrape.status_code == 200
    samples, types = exposition(scrape.text)
    missing = sorted(n for n in names if not exported(n, samples, types))
    assert not missing, f"the dashboard queries metrics the service does not export: {missing}"
    in_rules = rule_metric_names()
    assert len(in_rules) >= 10, f"found only {sorted(in_rules)} in the rules: the extraction is broken"
    missing = sorted(n for n in in_rules if not exported(n, samples, types))
    assert not missing, f"the alerting rules query metrics the service does not export: {missing}"
    assert any(line.startswith("colorizer_request_duration_seconds_bucket{") for line in scrape.text.splitlines())
