"""The monitor's systemd unit and sysv init script render to what a host needs."""

import configparser
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "monitor"
VARS = {
    "instance": "main",
    "venv": "/opt/sliceops/main/monitor-venv",
    "config_path": "/etc/sliceops/main/monitor.json",
    "run_user": "sliceops-monitor",
    "log_dir": "/var/log/sliceops/sliceops-monitor-main",
    "interval": 60,
}


def render(name: str, **overrides) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template(name).render(**{**VARS, **overrides})


def unit(**overrides) -> dict:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(render("sliceops-monitor.service.j2", **overrides))
    return {section: dict(parser[section]) for section in parser.sections()}


def test_unit_runs_the_venv_console_script_as_a_notify_service():
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"] == ("/opt/sliceops/main/monitor-venv/bin/sliceops-monitor "
                                    "--config /etc/sliceops/main/monitor.json run")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "sliceops-monitor"
    # No docker group: the engine's API would show every slice's DATABASE_URL.
    assert "SupplementaryGroups" not in service


@pytest.mark.parametrize("interval, watchdog", [(60, "180"), (1, "3"), (2.5, "8")])
def test_watchdog_is_three_beats(interval, watchdog):
    assert unit(interval=interval)["Service"]["WatchdogSec"] == watchdog


def test_unit_is_sandboxed():
    service = unit()["Service"]
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "ProtectControlGroups": "yes"}.items():
        assert service[key] == value, key
    assert "/sys/fs/cgroup" in service["ReadOnlyPaths"].split()
    assert service["CapabilityBoundingSet"] == ""  # none: not even to read others' files


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path):
    path = tmp_path / "sliceops-monitor-main.service"
    path.write_text(render("sliceops-monitor.service.j2"))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True)
    # The venv does not exist here; anything else is a real problem.
    problems = [line for line in out.stderr.splitlines()
                if line.strip() and "Command /opt/sliceops" not in line and "is not executable" not in line
                and "No such file" not in line and "Failed to" not in line
                and "docker.service" not in line and "postgresql.service" not in line]
    assert not [p for p in problems if "Unknown key" in p or "Invalid" in p or "Failed to parse" in p], problems


def test_init_script_is_valid_sh_with_an_lsb_header(tmp_path):
    text = render("sliceops-monitor.init.j2")
    assert text.startswith("#!/bin/sh\n")
    assert "### BEGIN INIT INFO" in text and "# Provides:          sliceops-monitor-main" in text
    path = tmp_path / "init"
    path.write_text(text)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0


def test_init_script_runs_the_monitor_as_its_user_with_a_log_and_waits_on_stop():
    text = render("sliceops-monitor.init.j2")
    assert 'DAEMON=/opt/sliceops/main/monitor-venv/bin/sliceops-monitor' in text
    assert 'LOGDIR=/var/log/sliceops/sliceops-monitor-main' in text and "LOGFILE=$LOGDIR/monitor.log" in text
    assert "--background --make-pidfile" in text
    assert '--chuid "$RUN_USER:$RUN_USER"' in text
    assert '--retry "TERM/$STOP_TIMEOUT/KILL/5"' in text
    assert "STOP_TIMEOUT=60" in text


def test_init_script_usage_exit_code(tmp_path):
    path = tmp_path / "init"
    path.write_text(render("sliceops-monitor.init.j2"))
    out = subprocess.run(["sh", str(path), "bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and "Usage:" in out.stderr


def test_init_script_status_of_a_stopped_service_is_3(tmp_path):
    path = tmp_path / "init"
    text = render("sliceops-monitor.init.j2", instance="unit-test-absent")
    path.write_text(text)
    out = subprocess.run(["sh", str(path), "status"], capture_output=True, text=True)
    assert out.returncode == 3 and "is not running" in out.stdout
