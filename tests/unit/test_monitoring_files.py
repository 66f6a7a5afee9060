"""The shipped Grafana dashboard and Prometheus alert rules (monitoring/) use only metrics
the monitor serves, and the rules pass promtool (check and their own unit tests)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sliceops_monitor.metrics import Exporter
from tests.unit.test_monitor_metrics import CONFIG, batch

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "prometheus" / "sliceops-alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "sliceops-alerts.test.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "sliceops-fleet.json"
METRIC = re.compile(r"\bsliceops_[a-z_]+\b")


def served_names() -> set[str]:
    ex = Exporter(0)
    b = batch()
    ex.collector.observe(b, CONFIG, 0.1, 0)
    ex.collector.written(b, (), 1, 3)
    text = generate_latest(ex.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if "definition" in v]
    return exprs


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_metric_named_is_one_the_monitor_serves(source):
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    named = {m for e in exprs for m in METRIC.findall(e)}
    assert named, "no sliceops metric found: the pattern or the file is wrong"
    assert named <= served_names(), named - served_names()


def test_the_rules_cover_the_four_required_alerts():
    alerts = {r["alert"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert "sliceops_slice_down_cycles >= 3" in alerts["SliceUnhealthy"]
    assert "> 0.9" in alerts["SliceMemoryNearLimit"] and "> 0.9" in alerts["SliceDiskNearQuota"]
    assert "sliceops_slice_last_telemetry_timestamp_seconds" in alerts["SliceTelemetryStale"]


def test_the_dashboard_is_laid_out_on_grafanas_grid_with_unique_ids():
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", p["title"]


def promtool() -> str | None:
    return shutil.which("promtool") or next(
        (str(p) for p in [ROOT / ".venv" / "bin" / "promtool"] if p.exists()), None)


@pytest.mark.skipif(promtool() is None, reason="promtool not installed (make test-deps)")
@pytest.mark.parametrize("args, expect", [
    (["check", "rules", str(RULES)], "SUCCESS: 6 rules found"),
    (["test", "rules", str(RULE_TESTS)], "SUCCESS"),
])
def test_promtool_accepts_the_rules_and_their_tests_pass(args, expect):
    out = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert expect in out.stdout
