"""The monitoring path for real: Debian's `prometheus` on loopback scrapes a live Colorizer server, with the project's
own scrape config (only the targets, the intervals and the rule paths rewritten) and the shipped rules.

After a burst of real requests (good ones, bad ones and an overload flood) every dashboard query and every rule
expression must evaluate in Prometheus; the dashboard's must return series; and the alerts the burst calls for must
fire: shedding, the client-error ratio, the wrong execution provider (the compose config expects CUDA, the test
server runs on the CPU), and the target being down once the server is stopped. The `for:` of each alert is set to
0 s in the test copy of the rules; every expression is the shipped one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Server, free_port, gray_png, launch

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "colorizer.json"
RULE_FILES = sorted(PROMETHEUS_DIR.glob("*.rules.yml"))
WAIT_S = 90  # the longest any condition may take to become true; generous, as the test machine is shared
VIDEO_DIR_OF: dict[str, Path] = {}  # server url -> its COLORIZER_VIDEO_DIR

pytestmark = pytest.mark.slow


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll until ``condition()`` is truthy and return it; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"within {timeout:.0f} s: {what}")


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.url, self.process, self.log_path = url, process, log_path

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query (``status``, ``data`` or ``error``)."""
        answer: dict[str, Any] = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        return answer

    def series(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def firing(self) -> set[str]:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def scrape_config(colorizer: str, prometheus: str, rules: list[Path]) -> dict[str, Any]:
    """The compose config with only the targets, the intervals and the rule paths changed."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in rules]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    del jobs["colorizer"]["dns_sd_configs"]
    jobs["colorizer"]["static_configs"] = [{"targets": [colorizer]}]
    jobs["prometheus"]["static_configs"] = [{"targets": [prometheus]}]
    return config


def rules_without_waiting(tmp: Path) -> list[Path]:
    """Copies of the shipped rule files with every alert's `for` set to 0 s; expressions untouched."""
    copies = []
    for path in RULE_FILES:
        groups = yaml.safe_load(path.read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = "0s"
        copy = tmp / path.name
        copy.write_text(yaml.safe_dump(groups, sort_keys=False))
        copies.append(copy)
    return copies


def rule_exprs() -> dict[str, str]:
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    }


def dashboard_exprs() -> dict[str, str]:
    """Panel title (and refId) -> query, with Grafana's variables filled in as Grafana would."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        for panel in panels
        for target in panel.get("targets", [])
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A server that sheds deterministically: one image at a time, one in line, a 1 ms wait budget."""
    env = {
        "COLORIZER_MAX_IN_FLIGHT": "1",
        "COLORIZER_MAX_QUEUE": "1",
        "COLORIZER_MAX_QUEUE_WAIT_MS": "1",
        "COLORIZER_VIDEO_DIR": str(tmp_path / "videos"),
    }
    server = launch(tmp_path, env, ready_timeout=120)
    (tmp_path / "videos").mkdir(exist_ok=True)
    VIDEO_DIR_OF[server.url] = tmp_path / "videos"
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def prometheus(tmp_path: Path, server: Server) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus is not installed: `make system-deps` (Debian package `prometheus`)")
    port = free_port()
    config = scrape_config(server.url.removeprefix("http://"), f"127.0.0.1:{port}", rules_without_waiting(tmp_path))
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", process, log_path)

    def ready() -> bool:
        assert process.poll() is None, f"prometheus exited:\n{log_path.read_text()}"
        try:
            return httpx.get(f"{prom.url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, "Prometheus is ready")
    yield prom
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def post_many(url: str, body: bytes, count: int) -> list[int]:
    """``count`` POST /colorize at once; their status codes."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        answers = await asyncio.gather(
            *(client.post("/colorize", files={"file": ("x.png", body, "image/png")}) for _ in range(count))
        )
    return [a.status_code for a in answers]


class Traffic:
    """Real requests to the server, tallied by status as the client saw them."""

    def __init__(self, server: Server) -> None:
        self.url = server.url
        self.small, self.large = gray_png(48, 64), gray_png(960, 1280)
        self.broken = self.small[:80]  # a PNG whose header says 64 x 48 and whose pixels are cut off: 400
        self.statuses: list[int] = []

    def good(self, n: int) -> None:
        for _ in range(n):
            r = httpx.post(f"{self.url}/colorize", files={"file": ("g.png", self.small, "image/png")}, timeout=120)
            assert r.status_code == 200, r.text
            self.statuses.append(200)

    def bad(self, n: int) -> None:
        for _ in range(n):
            r = httpx.post(f"{self.url}/colorize", files={"file": ("b.png", self.broken, "image/png")}, timeout=60)
            assert r.status_code == 400, r.text
            self.statuses.append(400)

    def flood(self, size: int = 24) -> None:
        """Floods of large images until a fifth of the flooded requests were refused: a condition, not a speed."""
        sent = refused = 0

        def enough() -> bool:
            nonlocal sent, refused
            got = asyncio.run(post_many(self.url, self.large, size))
            assert set(got) <= {200, 503}, got
            self.statuses += got
            sent, refused = sent + len(got), refused + got.count(503)
            return refused >= 0.2 * sent

        wait_until(enough, "a flood is shed (503) in part")

    def count(self, status: int) -> int:
        return self.statuses.count(status)


def scraped_everything(prom: Prometheus, server: Server) -> bool:
    """Prometheus' latest sample of every /colorize series equals the server's own counters right now."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    here = {
        line.split("{", 1)[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('colorizer_request_duration_seconds_count{route="/colorize"')
    }
    there = {
        f'route="/colorize",status="{s["metric"]["status"]}"': float(s["value"][1])
        for s in prom.series('colorizer_request_duration_seconds_count{route="/colorize"}')
    }
    return bool(here) and here == there


def test_prometheus_answers_every_query_and_fires_the_alerts_the_traffic_calls_for(
    server: Server, prometheus: Prometheus
) -> None:
    prom = prometheus
    wait_until(lambda: prom.series('up{job="colorizer"} == 1'), "Prometheus scrapes the server")
    # The scrape-time gauges read the live state: the video store's bytes, and the admission bounds set above.
    (VIDEO_DIR_OF[server.url] / "left-over.bin").write_bytes(b"x" * 12345)
    wait_until(lambda: prom.series("colorizer_video_store_used_bytes == 12345"), "the store's usage is scraped")
    for metric, value in (
        ("colorizer_video_store_quota_bytes", 5 * 1024**3),
        ("colorizer_images_waiting_limit", 1),
        ("colorizer_images_in_flight_limit", 1),
        ("colorizer_ready", 1),
    ):
        assert [float(s["value"][1]) for s in prom.series(metric)] == [value], metric
    traffic = Traffic(server)

    # Round 1 creates every series the burst touches (status 200, 400 and 503), and Prometheus scrapes them:
    # rate() sees only increases after a series' first sample, so round 2 is what the ratios are made of.
    traffic.good(2)
    traffic.bad(1)
    traffic.flood()
    wait_until(lambda: scraped_everything(prom, server), "Prometheus holds the server's current counters")
    before = {s: traffic.count(s) for s in (200, 400, 503)}

    # Round 2: the burst. Bad requests outnumber all the others, so 4xx is over half the requests (> 25 %); a
    # fifth or more of the flood is refused, so 503s are at least ~10 % of the requests (> 5 %).
    traffic.good(4)
    traffic.flood()
    sent = len(traffic.statuses) - sum(before.values())
    traffic.bad(sent + 1)
    burst = {s: traffic.count(s) - before[s] for s in (200, 400, 503)}
    assert burst[400] / sum(burst.values()) > 0.25, burst
    assert burst[503] / sum(burst.values()) > 0.05, burst
    wait_until(lambda: scraped_everything(prom, server), "Prometheus scrapes the burst")

    expected = {"ColorizerShedding", "ColorizerClientErrors", "ColorizerWrongExecutionProvider"}
    firing = wait_until(lambda: (f := prom.firing()) >= expected and f, f"{sorted(expected)} fire")
    # Nothing failed on the server's side: no 500/504, no model failure, and it stayed up and ready.
    quiet = {"ColorizerServerErrors", "ColorizerImageFailures", "ColorizerTargetDown", "ColorizerNotReady"}
    assert not firing & quiet, f"fired without cause: {sorted(firing & quiet)}"

    for name, expr in {**dashboard_exprs(), **rule_exprs()}.items():
        answer = prom.query(expr)
        assert answer["status"] == "success", f"{name}: {expr}\n{answer.get('error')}"
    for name, expr in dashboard_exprs().items():
        assert prom.series(expr), f"dashboard panel {name} has no data after the burst: {expr}"
    for record in ("colorizer:slo_availability_errors:ratio_rate5m", "colorizer:slo_latency_slow:ratio_rate5m"):
        assert prom.series(record), f"{record} was not recorded"

    server.terminate()
    wait_until(lambda: "ColorizerTargetDown" in prom.firing(), "ColorizerTargetDown fires once the server stops")
