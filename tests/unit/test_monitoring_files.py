"""The shipped Grafana dashboard and Prometheus alert rules (monitoring/) use only metrics
the monitor serves, the rules pass promtool (check and their own unit tests), and every
dashboard query parses in promtool and returns data from a scrape of the monitor's registry."""

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sliceops_monitor.metrics import Exporter
from sliceops_monitor.config import parse
from tests.unit.test_monitor_metrics import CONFIG, RAW, batch

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "prometheus" / "sliceops-alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "sliceops-alerts.test.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "sliceops-fleet.json"
METRIC = re.compile(r"\bsliceops_[a-z_]+\b")


def served_names() -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "backups.json"  # the backup agent's results, one copy off the host recorded
        state.write_text(json.dumps({"slices": {"1": {"last_good": {"at": "2026-12-01T03:00:00Z"},
                                                      "copy": {"ok": True}}}}))
        ex = Exporter(0)
        b = batch()
        ex.collector.observe(b, parse({**RAW, "backup_state": str(state)}), 0.1, 0)
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
    (["check", "rules", str(RULES)], "SUCCESS: 9 rules found"),
    (["test", "rules", str(RULE_TESTS)], "SUCCESS"),
])
def test_promtool_accepts_the_rules_and_their_tests_pass(args, expect):
    out = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert expect in out.stdout


# Grafana's values for the dashboard's variables when "All" is picked: a regex of every value.
GRAFANA_VARIABLES = {"$instance": "(monitor:9187)", "$slice": "(1|2|3)"}
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([a-z_]+)\)$")


def scraped_series() -> list[tuple[str, float]]:
    """Every sample the monitor's real registry exposes after a cycle, as Prometheus stores it
    once scraped (its target labels added), for promtool's input series."""
    ex = Exporter(0)
    b = batch()
    ex.collector.observe(b, CONFIG, 0.1, 0)
    ex.collector.written(b, (), 1, 3)
    out = []
    for family in text_string_to_metric_families(generate_latest(ex.registry).decode()):
        for s in family.samples:
            lab = {**s.labels, "instance": "monitor:9187", "job": "sliceops-monitor"}
            text = ",".join(f'{k}="{v}"' for k, v in sorted(lab.items()))
            out.append((f"{s.name}{{{text}}}", s.value))
    return out


def panel_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and variable query, interpolated as Grafana would."""
    doc = json.loads(DASHBOARD.read_text())
    found = [(f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]) for p in doc["panels"]
             for t in p.get("targets", [])]
    for v in doc["templating"]["list"]:
        if "definition" in v:
            m = LABEL_VALUES.match(v["definition"])
            assert m, v["definition"]  # label_values(selector, label) is all the dashboard uses
            found.append((f"variable {v['name']}", f"count by ({m[2]}) ({m[1]})"))
    out = []
    for where, expr in found:
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"{where}: a variable the test does not know: {expr}"
        out.append((where, expr))
    return out


@pytest.mark.skipif(promtool() is None, reason="promtool not installed (make test-deps)")
def test_every_dashboard_query_parses_in_promtool_and_returns_data_from_the_monitor_s_metrics(tmp_path):
    """Grafana itself is not packaged for Debian 12, so the dashboard's queries are checked by
    Prometheus' own tool: each becomes an alert that fires only when the query returns at
    least one series, evaluated by `promtool test rules` over the series a real scrape of the
    monitor's registry gives. A misspelt metric or label, a wrong type (a range vector where
    an instant one belongs) or a selector that matches nothing fails here."""
    queries = panel_queries()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"alert": f"Query{i}", "expr": f"count(({expr})) > 0", "labels": {"query": where}}
        for i, (where, expr) in enumerate(queries)]}]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(rules))
    check = subprocess.run([promtool(), "check", "rules", str(tmp_path / "dashboard-rules.yml")],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    series = []
    for name, value in scraped_series():
        step = value if name.split("{")[0].endswith("_total") else 0  # counters climb
        series.append({"series": name, "values": f"{value:f}+{step:f}x15"})
    tests = {"rule_files": ["dashboard-rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": "10m", "alertname": f"Query{i}", "exp_alerts": [{"exp_labels": {"query": where}}]}
                            for i, (where, _) in enumerate(queries)]}]}
    (tmp_path / "dashboard-test.yml").write_text(yaml.safe_dump(tests))
    run = subprocess.run([promtool(), "test", "rules", str(tmp_path / "dashboard-test.yml")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert len(queries) >= 20  # every panel's query was among them
