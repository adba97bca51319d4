"""The alerting and SLO rules in deploy/prometheus: promtool checks and unit-tests them, and every alert carries
what an operator needs (a `for`, a severity, a runbook section that exists and points at real dashboard panels).

The same rules are evaluated against a real server in tests/test_monitoring_live.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted(PROMETHEUS_DIR.glob("*.rules.yml"))
UNIT_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "colorizer.json"
SEVERITIES = {"critical", "warning"}


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not installed: `make system-deps` (Debian package `prometheus`)")
    return found


def rules() -> list[dict[str, Any]]:
    return [
        rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def runbook_sections() -> dict[str, str]:
    """Second-level heading -> its text, up to the next such heading."""
    parts = re.split(r"(?m)^## (.+)$", RUNBOOK.read_text())
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_rule_files_are_found() -> None:
    assert [p.name for p in RULE_FILES] == ["alerts.rules.yml", "slo.rules.yml"]
    assert len(alerts()) >= 15


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired = {
        check["alertname"] for case in cases for check in case.get("alert_rule_test", []) if check.get("exp_alerts")
    }
    assert not set(alerts()) - fired, f"no unit test sees these fire: {sorted(set(alerts()) - fired)}"
    assert not fired - set(alerts()), f"unit tests for alerts that do not exist: {sorted(fired - set(alerts()))}"


@pytest.mark.parametrize("name", sorted(alerts()))
def test_alert_has_a_for_a_severity_and_a_runbook_section(name: str) -> None:
    rule = alerts()[name]
    assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: needs a `for`"
    assert rule["labels"]["severity"] in SEVERITIES, name
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
    assert rule["annotations"]["runbook_url"] == f"docs/RUNBOOK.md#{name.lower()}"
    sections = runbook_sections()
    assert name in sections, f"docs/RUNBOOK.md has no section `## {name}`"
    text = sections[name]
    for part in ("**Means**", "**Look at**", "**Do**"):
        assert part in text, f"RUNBOOK {name}: no {part} paragraph"
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"}
    look_at = text.split("**Look at**")[1].split("**Do**")[0]
    named = {" ".join(n.split()) for n in re.findall(r"\*([^*]+)\*", look_at)}
    assert named, f"RUNBOOK {name}: name the dashboard panels to open, in *italics*"
    assert named <= titles, f"RUNBOOK {name} names panels the dashboard lacks: {sorted(named - titles)}"


def test_the_burn_rate_alerts_use_the_recorded_objectives() -> None:
    """The burn thresholds are written as factor x budget; the budget must be 1 - the recorded objective."""
    recorded = {r["record"]: r["expr"] for r in rules() if "record" in r}
    budgets = {
        "availability": 1 - float(recorded["colorizer:slo_availability:objective"].removeprefix("vector(")[:-1]),
        "latency": 1 - float(recorded["colorizer:slo_latency:objective"].removeprefix("vector(")[:-1]),
    }
    threshold = recorded["colorizer:slo_latency:threshold_seconds"].removeprefix("vector(")[:-1]
    for sli, budget in budgets.items():
        for speed, factors in (("Fast", {"14.4", "6"}), ("Slow", {"3", "1"})):
            expr = alerts()[f"Colorizer{sli.capitalize()}BudgetBurn{speed}"]["expr"]
            found = re.findall(r"\((\d+(?:\.\d+)?) \* (\d+(?:\.\d+)?)\)", expr)
            assert {f for f, _ in found} == factors, expr
            assert [float(b) for _, b in found] == pytest.approx([budget] * 4), expr
    slow = [expr for name, expr in recorded.items() if name.startswith("colorizer:slo_latency_slow:")]
    assert all(f'le="{float(threshold)}"' in expr for expr in slow), "the latency SLI must use the threshold bucket"
