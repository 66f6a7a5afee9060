"""The rendered LSB init script really starts, reloads, stops (and waits) and reports
status with LSB exit codes, for hosts without systemd."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
USER = "sliceops-monitor"  # created by the deploy, which CI runs before the integration tests

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the init script runs as root"),
    pytest.mark.skipif(shutil.which("start-stop-daemon") is None, reason="no start-stop-daemon"),
]


def target_python() -> str | None:
    """The distribution's interpreter with its psycopg and psutil, as on a host (None if absent)."""
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        return None
    probe = subprocess.run([python, "-c", "import psycopg, psutil"], capture_output=True)
    return python if probe.returncode == 0 else None


def user_exists() -> bool:
    try:
        pwd.getpwnam(USER)
        return True
    except KeyError:
        return False


@pytest.fixture
def init_script():
    if not user_exists():
        pytest.skip(f"system user {USER} does not exist (the deploy creates it)")
    # The test venv's interpreter may sit under /root; the monitor's user runs the
    # distribution's, as the deploy's venv (--system-site-packages) does.
    python = target_python()
    if python is None:
        pytest.skip("/usr/bin/python3 with python3-psycopg and python3-psutil is not installed")
    # Readable by the monitor's user: pytest's tmp_path is root-only.
    root = Path(tempfile.mkdtemp(prefix="sliceops-init-"))
    root.chmod(0o755)
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    wrapper = venv / "bin" / "sliceops-monitor"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT / "monitor"} exec {python} -m sliceops_monitor "$@"\n')
    wrapper.chmod(0o755)
    with socket.socket() as s:  # a port nothing listens on: the monitor runs, buffering
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "monitor.json"
    doc = {"instance": "inittest", "interval": 1, "health_timeout": 0.5,
           "database": {"host": "127.0.0.1", "port": port, "retry_deadline": 0}, "slices": []}
    config.write_text(json.dumps(doc))
    config.chmod(0o644)
    instance = f"it{uuid.uuid4().hex[:8]}"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "templates" / "monitor")))
    text = env.get_template("sliceops-monitor.init.j2").render(
        instance=instance, venv=str(venv), config_path=str(config), run_user=USER,
        log_dir=str(root / "log"), interval=1)
    script = root / "init"
    script.write_text(text)
    script.chmod(0o755)

    def run(action: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), action], capture_output=True, text=True, timeout=120)

    run.root, run.config, run.log = root, config, root / "log" / "monitor.log"
    run.pidfile = Path(f"/run/sliceops-monitor-{instance}.pid")
    try:
        yield run
    finally:
        run("stop")
        shutil.rmtree(root, ignore_errors=True)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_start_status_reload_stop_with_lsb_codes(init_script):
    run = init_script
    assert run("status").returncode == 3          # 3: not running

    started = run("start")
    assert started.returncode == 0, started.stderr
    pid = int(run.pidfile.read_text())
    assert pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == USER
    assert run("status").returncode == 0          # 0: running
    assert run("start").returncode == 0           # already running is success
    assert wait_for(lambda: "cycle 1:" in run.log.read_text())

    assert run("reload").returncode == 0
    assert wait_for(lambda: "reloaded" in run.log.read_text())
    assert int(run.pidfile.read_text()) == pid    # a reload is not a restart

    stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not Path(f"/proc/{pid}").exists()      # stop waited for the process to end
    assert "stopped after" in run.log.read_text()  # SIGTERM: a clean exit, not a KILL
    assert run("status").returncode == 3
    assert run("stop").returncode == 0            # stopping a stopped service is success
    assert run("reload").returncode == 7          # 7: not running


def test_start_reports_a_monitor_that_exits_at_once(init_script):
    run = init_script
    run.config.write_text('{"interval": "often"}')
    out = run("start")
    assert out.returncode == 1 and "exited right after starting" in out.stderr
    assert "interval: must be a number" in run.log.read_text()


def test_start_never_follows_a_path_the_monitor_could_plant(init_script):
    run = init_script
    # What a compromised monitor could leave behind: its log directory swapped for a symlink
    # to a directory root owns. Root must not re-own the target, nor write through it.
    victim = run.root / "victim"
    victim.mkdir(mode=0o700)
    (victim / "keep").write_text("root's\n")
    logdir = run.root / "log"
    logdir.symlink_to(victim)
    started = run("start")
    assert started.returncode == 0, started.stderr
    assert wait_for(lambda: run.log.exists() and "cycle 1:" in run.log.read_text())
    st = victim.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o700)       # untouched
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]  # nothing written through the link
    assert not logdir.is_symlink() and logdir.is_dir()
    assert pwd.getpwuid(logdir.stat().st_uid).pw_name == USER
    # The log file is the monitor's own, opened by its shell, not created by root.
    assert pwd.getpwuid(run.log.stat().st_uid).pw_name == USER
