"""The monitor's config file: defaults, every problem reported at once, one line each at the CLI."""

import json
import sys
from pathlib import Path

import pytest

# The monitor is its own package (monitor/); make it importable without installing it.

from sliceops_monitor import cli, config  # noqa: E402
from sliceops_monitor.errors import ConfigError  # noqa: E402


def write(tmp_path, doc) -> str:
    path = tmp_path / "monitor.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return str(path)


CG = "sliceops.slice/sliceops-main.slice/sliceops-main-s{}.slice"
SLICE = {"id": 1, "port": 5001, "container": "wa-slice-1", "cgroup": CG.format(1),
         "data_dir": "/srv/sliceops/main/slices/1"}


def test_minimal_config_takes_the_documented_defaults(tmp_path):
    cfg = config.load(write(tmp_path, {"slices": [SLICE]}))
    assert (cfg.instance, cfg.interval, cfg.retention_days, cfg.prune_interval) == ("main", 60, 7, 3600)
    assert (cfg.health_timeout, cfg.cgroup_root) == (2.0, "/sys/fs/cgroup")
    assert cfg.slices[0].cgroup == CG.format(1)
    assert cfg.database.dbname == "wank_saas"
    assert cfg.database.password_file is None  # peer authentication
    assert cfg.database.application_name == "sliceops-monitor-main"
    assert cfg.slices[0].status == "active" and cfg.in_service == cfg.slices


def test_only_active_slices_are_in_service(tmp_path):
    doc = {"slices": [SLICE, {**SLICE, "id": 2, "port": 5003, "container": "wa-slice-2", "cgroup": CG.format(2),
                                "status": "suspended"}]}
    cfg = config.load(write(tmp_path, doc))
    assert [s.id for s in cfg.in_service] == [1]


def test_the_readme_example_is_valid():
    readme = (Path(__file__).resolve().parents[2] / "monitor" / "README.md").read_text()
    example = readme.split("```json", 1)[1].split("```", 1)[0]
    cfg = config.parse(json.loads(example), "README.md")
    assert cfg.database.password_file is None and len(cfg.slices) == 2


def test_every_problem_is_reported_at_once(tmp_path):
    doc = {
        "interval": 0,
        "intervall": 60,
        "health_timeout": "2",
        "database": {"port": 70000, "password_file": "relative/path"},
        "slices": [
            SLICE,
            {**SLICE, "container": "wa-slice-2"},          # same id, port and cgroup as slices[0]
            {"id": 3, "port": 5005, "cgroup": "../../etc", "data_dir": "/srv/3", "status": "paused"},
            "nonsense",
        ],
    }
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, doc))
    problems = info.value.problems
    expected = [
        "interval: must be greater than 0",
        "intervall: unknown key",
        "health_timeout: must be a number",
        "database.port: must be at most 65535",
        "database.password_file: must be an absolute path",
        "slices[1].id: 1 is also used by slices[0]",
        "slices[1].port: 5001 is also used by slices[0]",
        "slices[1].cgroup: 'sliceops.slice/sliceops-main.slice/sliceops-main-s1.slice' is also used by slices[0]",
        "slices[2].container: is required",
        "slices[2].cgroup: '../../etc' does not match",
        "slices[2].status: must be one of active, suspended",
        "slices[3]: must be an object",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == len(expected)


def test_problems_name_their_line(tmp_path):
    text = """{
  "interval": 60,
  "slices": [
    {"id": 1, "port": 5001, "container": "wa-slice-1", "cgroup": "s1.slice", "data_dir": "/srv/1"},
    {
      "id": 2,
      "port": 5001,
      "container": "wa-slice-2",
      "cgroup": "s2.slice"
    }
  ]
}"""
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert info.value.problems == [
        "line 5: slices[1].data_dir: is required",       # reported at the object that lacks it
        "line 7: slices[1].port: 5001 is also used by slices[0]",
    ]


def test_true_is_not_a_number(tmp_path):
    with pytest.raises(ConfigError, match="interval: must be a number, got true"):
        config.load(write(tmp_path, {"interval": True}))


def test_health_timeout_must_fit_in_the_beat(tmp_path):
    with pytest.raises(ConfigError, match="health_timeout: must be shorter than interval"):
        config.load(write(tmp_path, {"interval": 2, "health_timeout": 2}))


def test_invalid_json_names_the_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, '{\n  "interval": 60,\n  "slices": [,]\n}'))
    assert info.value.problems[0].startswith("line 3 column")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        config.load(str(tmp_path / "absent.json"))


def test_cli_prints_one_line_per_problem_and_no_traceback(tmp_path, capsys):
    path = write(tmp_path, {"interval": -1, "slices": [{"id": 0}]})
    assert cli.main(["--config", path, "once"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith(f"sliceops-monitor: {path}: ") for line in err)
    assert any("line 2: interval: must be greater than 0" in line for line in err)
    assert any("slices[0].id: must be at least 1" in line for line in err)
    assert not any("Traceback" in line for line in err)


def test_a_slices_disk_quota_is_read_and_shown_beside_its_usage(tmp_path):
    from datetime import datetime, timezone

    from sliceops_monitor.samples import CycleBatch, SliceSample

    doc = {"slices": [{**SLICE, "disk_quota_bytes": 20 * 1024 * 1024},
                      {**SLICE, "id": 2, "port": 5003, "container": "wa-slice-2", "cgroup": CG.format(2)}]}
    cfg = config.load(write(tmp_path, doc))
    quotas = {s.id: s.disk_quota_bytes for s in cfg.slices}
    assert quotas == {1: 20 * 1024 * 1024, 2: None}
    batch = CycleBatch(1, datetime.now(timezone.utc), [
        SliceSample(1, "CONNECTED", disk_bytes=5 * 1024 * 1024), SliceSample(2, "CONNECTED", disk_bytes=4096)])
    table = cli.batch_table(batch, {1: "wa-slice-1", 2: "wa-slice-2"}, quotas)
    assert "5.0 MiB / 20.0 MiB" in table and "4.0 KiB /" not in table
    doc = json.loads(cli.batch_json(batch, "ok", 0, 0, quotas))
    assert [s["disk_quota_bytes"] for s in doc["slices"]] == [20 * 1024 * 1024, None]


@pytest.mark.parametrize("bad", [0, -1, "20m", 1.5, True])
def test_a_disk_quota_that_is_not_a_positive_byte_count_is_refused(tmp_path, bad):
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, {"slices": [{**SLICE, "disk_quota_bytes": bad}]}))
    assert any("slices[0].disk_quota_bytes" in p for p in info.value.problems)


def test_the_host_label_is_read_and_checked_like_an_inventory_host_name(tmp_path):
    assert config.load(write(tmp_path, {"slices": [SLICE]})).host is None  # a configuration from before fleets
    assert config.load(write(tmp_path, {"host": "app1", "slices": [SLICE]})).host == "app1"
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, {"host": "App 1; drop", "slices": [SLICE]}))
    assert any(p.startswith("line 2: host: 'App 1; drop' does not match") for p in caught.value.problems)


def test_a_slice_hosts_monitor_verifies_the_database_hosts_certificate(tmp_path):
    from sliceops_monitor.config import load
    from sliceops_monitor.database import Database

    path = tmp_path / "monitor.json"
    path.write_text(json.dumps({"instance": "main", "database": {
        "host": "10.0.0.10", "sslmode": "verify-full", "sslrootcert": "/etc/sliceops/main/postgresql-ca.crt"}}))
    kwargs = Database(load(str(path)).database).connection_kwargs()
    assert (kwargs["sslmode"], kwargs["sslrootcert"]) == ("verify-full", "/etc/sliceops/main/postgresql-ca.crt")
    path.write_text(json.dumps({"instance": "main", "database": {"sslmode": "sometimes"}}))
    with pytest.raises(ConfigError, match="database.sslmode"):
        load(str(path))


def test_a_monitor_that_does_not_prune_never_schedules_one(tmp_path):
    from sliceops_monitor.config import load
    from sliceops_monitor.cycle import Monitor

    path = tmp_path / "monitor.json"
    path.write_text(json.dumps({"instance": "main", "prune": False}))
    cfg = load(str(path))
    assert cfg.prune is False
    assert Monitor(cfg, collector=object(), database=object(), clock=lambda: 5.0).next_prune == float("inf")
    path.write_text(json.dumps({"instance": "main", "prune": "no"}))
    with pytest.raises(ConfigError, match="prune"):
        load(str(path))
