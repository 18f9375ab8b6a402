"""Monitoring files: alert rules pass `promtool check/test rules`, and the rules and the
Grafana dashboard use only metrics syncd exports (README's Metrics table)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "etc" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "etc" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "etc" / "grafana" / "syncd.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
METRIC = re.compile(r"\bsyncd_[a-z0-9_]+")


def exported_metrics() -> set[str]:
    """Metric names from README.md's Metrics table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(syncd_[a-z0-9_]+)`", line.split("|")[1]))
    assert len(names) > 15
    return names


def base(name: str) -> str:
    """A histogram's series name back to the metric name (info metrics keep _info)."""
    return re.sub(r"_(bucket|sum|count)$", "", name)


def promtool(*args: str) -> str:
    proc = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=RULES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_rules_are_valid() -> None:
    out = promtool("check", "rules", RULES.name)
    assert "SUCCESS: 9 rules found" in out


def test_rules_unit_tests_pass() -> None:
    out = promtool("test", "rules", RULE_TESTS.name)
    assert "SUCCESS" in out


@pytest.mark.parametrize(
    "alert",
    [
        "SyncdDown",
        "SyncdIntegrationError",
        "SyncdNoSuccessfulFlush",
        "SyncdNoSuccessfulPull",
        "SyncdHighErrorRate",
        "SyncdInboundBacklogGrowing",
        "SyncdApiQuotaHigh",
    ],
)
def test_every_alert_the_issue_names_exists_and_is_unit_tested(alert: str) -> None:
    assert f"alert: {alert}\n" in RULES.read_text()
    assert f"alertname: {alert}\n" in RULE_TESTS.read_text()


def test_rules_use_only_exported_metrics() -> None:
    used = {base(m) for m in METRIC.findall(RULES.read_text())}
    assert used <= exported_metrics(), used - exported_metrics()


def test_dashboard_is_valid_and_covers_the_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] == "syncd"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {base(m) for e in exprs for m in METRIC.findall(e)}
    exported = exported_metrics()
    assert used <= exported, used - exported
    assert exported - used == set(), exported - used
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}"
