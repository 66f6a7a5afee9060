"""The disposable host is what the deploy will meet in production: systemd as
PID 1, reachable by pyinfra and testinfra over SSH, able to install and run
PostgreSQL from Debian's packages."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# pyinfra from the same environment as pytest (.venv via make, or /tmp/venv).
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


@pytest.fixture(scope="module")
def host(systemd_host):
    return systemd_host.testinfra_host


def test_pid1_is_systemd(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_system_is_up(host):
    # 0: running; 1: degraded (booted, some unit failed) also exits non-zero.
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in {"running", "degraded"}, host.run("systemctl --failed --no-pager").stdout


def test_systemd_runtime_directory_exists(host):
    # What sd_booted() and pyinfra's systemd facts look for.
    assert host.file("/run/systemd/system").is_directory


def test_docker_socket_is_this_machines(host):
    assert host.file("/var/run/docker.sock").is_socket


def test_hostname(host, systemd_host):
    assert host.check_output("hostname") == "sliceops-e2e"


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("permitrootlogin", "without-password"),  # = prohibit-password: key only
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
    ],
)
def test_sshd_allows_root_by_key_only(host, option, expected):
    settings = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line)
    assert settings[option] == expected


def test_sshd_listens_on_loopback_port_not_22(host, systemd_host):
    settings = host.check_output("sshd -T")
    assert f"listenaddress 127.0.0.1:{systemd_host.port}" in settings.splitlines()
    assert host.socket(f"tcp://127.0.0.1:{systemd_host.port}").is_listening


def test_pyinfra_reaches_host_over_ssh(systemd_host, tmp_path):
    # The command that works (pyinfra 3.10), e.g. with the default port:
    #   pyinfra -y --ssh-port 2222 --ssh-user root --ssh-key <dir>/id_ed25519 \
    #       --data ssh_known_hosts_file=<dir>/known_hosts \
    #       --data ssh_strict_host_key_checking=yes 127.0.0.1 exec -- uname -a
    # A deploy's inventory uses the same settings: systemd_host.ssh_data.
    # cwd is an empty directory so no config.py or group_data/ of the repo leaks in.
    cmd = [PYINFRA, "-y", *systemd_host.pyinfra_args(), "exec", "--", "uname", "-a"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # pyinfra reports on stderr, the command's output included.
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    assert "[127.0.0.1] Linux sliceops-e2e " in result.stderr


def test_postgresql_installs_and_runs_under_systemd(host):
    """The path the deploy takes: Debian's package, its cluster run by systemd."""
    started = time.monotonic()
    install = host.run(
        "apt-get update -q && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -q --no-install-recommends postgresql-15"
    )
    installed_in = time.monotonic() - started
    assert install.rc == 0, install.stdout[-3000:] + install.stderr[-3000:]

    start = host.run("systemctl start postgresql@15-main")
    assert start.rc == 0, start.stderr + host.run("journalctl -u postgresql@15-main --no-pager -n 40").stdout
    assert host.service("postgresql@15-main").is_running

    # pg_lsclusters: Ver Cluster Port Status Owner Data-directory Log-file
    clusters = host.check_output("pg_lsclusters --no-header")
    match = re.search(r"^15\s+main\s+(\d+)\s+online\b", clusters, re.MULTILINE)
    assert match, clusters
    print(f"\n[smoke] postgresql-15 installed over SSH in {installed_in:.1f}s; cluster 15/main online on port {match[1]}")
