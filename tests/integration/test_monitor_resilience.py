"""`sliceops-monitor run` as a real process: PostgreSQL restarted or stopped under it
loses no row, a killed or removed container is recorded, SIGHUP reloads, SIGTERM
finishes the cycle's write, and systemd hears READY and WATCHDOG."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.fix_docker")

from tests.fix_db import BINDIR_ENV, DEFAULT_BINDIR, SUPERUSER  # noqa: E402
from tests.fix_docker import health_command, wait_until  # noqa: E402
from tests.integration.test_monitor_service import (  # noqa: E402,F401  (fixtures)
    CONNECTED, MONITOR_PYTHON, MONITOR_SRC, Env, add_slices, env, monitor_role, start_backend,
)

pytestmark = pytest.mark.integration

STATUS = re.compile(r"cycle (\d+): .*?, (\d+) buffered")


class Daemon:
    """`python -m sliceops_monitor run` with its log in a file."""

    def __init__(self, config_path: str, tmp: Path, extra_env: dict | None = None):
        self.log_path = tmp / "monitor.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [MONITOR_PYTHON, "-m", "sliceops_monitor", "--config", config_path, "run"],
            stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(MONITOR_SRC), **(extra_env or {})},
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def statuses(self) -> list[tuple[int, int, str]]:
        """(cycle, buffered, line) of every status line so far."""
        out = []
        for line in self.log().splitlines():
            m = STATUS.search(line)
            if m and "sliceops_monitor.daemon" in line:
                out.append((int(m.group(1)), int(m.group(2)), line))
        return out

    def wait_cycles(self, n: int, timeout: float = 30) -> list:
        return wait_until(lambda: len(self.statuses()) >= n and self.statuses(), timeout, what=f"{n} cycles")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def start(*args, **kwargs) -> Daemon:
        d = Daemon(*args, **kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def two_slices(env: Env, containers) -> list[dict]:
    c1, p1 = start_backend(env, containers, 1, CONNECTED)
    c2, p2 = start_backend(env, containers, 2, CONNECTED)
    add_slices(env, [(1, p1, "assigned"), (2, p2, "assigned")])
    return [
        env.slice(1, p1),
        env.slice(2, p2),
    ]


class Cluster:
    """pg_ctl on the throwaway cluster behind pg_server, run as its owner."""

    def __init__(self, env: Env):
        with env.server.connect() as conn:
            self.datadir = conn.execute("SHOW data_directory").fetchone()[0]
        self.bindir = os.environ.get(BINDIR_ENV, DEFAULT_BINDIR)
        # `pg_ctl start` would not reuse the port and socket options fix_db started the
        # server with (only `restart` does), and the defaults are the system cluster's:
        # keep the original command line from postmaster.opts.
        argv = shlex.split(Path(self.datadir, "postmaster.opts").read_text())[1:]
        i = argv.index("-D")
        self.options = " ".join(shlex.quote(a) for a in argv[:i] + argv[i + 2:])
        # fix_db keeps the log next to the data dir; without -l the server would hold our pipe.
        self.logfile = str(Path(self.datadir).parent / "postgres.log")

    def pg_ctl(self, *args: str) -> None:
        owner = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
        subprocess.run([*owner, f"{self.bindir}/pg_ctl", "-D", self.datadir, "-l", self.logfile,
                        "-w", "-t", "60", *args], check=True, capture_output=True, timeout=90)

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        self.pg_ctl("-o", self.options, "start")


@pytest.fixture
def local_server(pg_server):
    if os.environ.get("SLICEOPS_TEST_DSN"):
        pytest.skip("restarting PostgreSQL needs the throwaway cluster, not SLICEOPS_TEST_DSN")
    return pg_server


def test_postgres_restarted_and_stopped_under_the_monitor_loses_no_row(env, containers, daemons, local_server):
    slices = two_slices(env, containers)
    d = daemons(env.write_config(slices, buffer_cycles=100, database={"retry_deadline": 0.3}), env.tmp)
    d.wait_cycles(3)
    cluster = Cluster(env)

    cluster.restart()                      # connections are cut; the monitor reconnects
    d.wait_cycles(len(d.statuses()) + 2)
    cluster.stop()                         # a real outage: cycles are buffered ...
    try:
        wait_until(lambda: any(b > 0 for _, b, _ in d.statuses()), 30, what="a buffered cycle")
        time.sleep(2)
        assert d.alive()
    finally:
        cluster.start()                    # ... and written when it is back
    n = len(d.statuses())
    wait_until(lambda: [b for _, b, _ in d.statuses()[n:]].count(0) >= 2, 30, what="the buffer to drain")
    assert d.stop() == 0

    statuses = d.statuses()
    cycles = statuses[-1][0]
    assert [c for c, _, _ in statuses] == list(range(1, cycles + 1))  # one status line per cycle
    assert statuses[-1][1] == 0
    assert max(b for _, b, _ in statuses) >= 2
    log = d.log()
    assert "database unavailable" in log and "PostgreSQL is back" in log
    # Every cycle's rows, each with its own collection time: nothing lost, nothing twice.
    assert env.sql('SELECT count(*), count(DISTINCT "timestamp") FROM gateway.server_telemetry')[0] == (cycles, cycles)
    per_slice = dict(env.sql("SELECT slice_id, count(*) FROM gateway.telemetry GROUP BY slice_id"))
    assert per_slice == {1: cycles, 2: cycles}
    assert "Traceback" not in log


def states(env: Env, sid: int) -> list[str]:
    return [r[0] for r in env.sql('SELECT wa_state FROM gateway.telemetry WHERE slice_id = %s '
                                  'ORDER BY "timestamp"', (sid,))]


def test_a_killed_then_removed_container_is_recorded_and_the_monitor_goes_on(env, containers, daemons):
    slices = two_slices(env, containers)
    d = daemons(env.write_config(slices), env.tmp)
    d.wait_cycles(2)
    victim = containers.started[0]

    victim.kill()
    wait_until(lambda: "CONTAINER_STOPPED" in states(env, 1), 20, what="CONTAINER_STOPPED for slice 1")
    victim.remove(force=True)
    n = len(d.statuses())
    d.wait_cycles(n + 2)
    assert d.alive()
    assert set(states(env, 2)) == {"CONNECTED"}
    # Without the engine's API a removed container reads as stopped: its slice cgroup stays.
    assert states(env, 1)[0] == "CONNECTED" and states(env, 1)[-1] == "CONTAINER_STOPPED"
    assert env.sql("SELECT wa_connected FROM gateway.slices WHERE id = 1")[0][0] is False
    assert "1 CONTAINER_STOPPED" in d.statuses()[-1][2]
    assert d.stop() == 0
    assert "Traceback" not in d.log()


def test_a_recreated_container_is_measured_on_the_next_cycle_without_a_reload(env, containers, daemons):
    # What a deploy does when a slice's spec changes: remove, run again (a new id), same slice cgroup.
    slices = two_slices(env, containers)
    d = daemons(env.write_config(slices), env.tmp)
    d.wait_cycles(2)
    old = containers.started[0]
    old.remove(force=True)
    new = env.run(containers, 1, health_command(CONNECTED), ports={"8080/tcp": ("127.0.0.1", slices[0]["port"])})
    assert new.id != old.id
    n = len(d.statuses())
    d.wait_cycles(n + 2)
    last = env.sql('SELECT wa_state, rss_bytes, cpu_percent FROM gateway.telemetry WHERE slice_id = 1 '
                   'ORDER BY "timestamp" DESC LIMIT 1')[0]
    # Memory from the new container's cgroup, CPU from the slice's counter that spans both.
    assert last[0] == "CONNECTED" and last[1] > 0 and last[2] is not None, last
    assert d.stop() == 0


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    yield path, sock
    sock.close()


def test_systemd_notify_reload_on_sighup_and_a_clean_stop(env, containers, daemons, notify_socket):
    slices = two_slices(env, containers)
    path = env.write_config(slices[:1])
    sock_path, sock = notify_socket
    d = daemons(path, env.tmp, {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "3000000"})
    assert sock.recv(4096).startswith(b"READY=1")
    ping = sock.recv(4096).decode()
    assert ping.startswith("WATCHDOG=1\nSTATUS=cycle 1: 1 slice (1 ok)")

    config = json.loads(Path(path).read_text())
    config["slices"] = slices
    Path(path).write_text(json.dumps(config))
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "2 slices (2 ok)" in d.statuses()[-1][2], 20, what="a cycle with the reloaded slices")
    assert "reloaded" in d.log()

    Path(path).write_text('{"interval": "soon"')
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in d.log(), 20, what="the bad config to be refused")
    n = len(d.statuses())
    d.wait_cycles(n + 1)
    assert "2 slices" in d.statuses()[-1][2] and d.alive()

    assert d.stop() == 0
    messages = []
    sock.settimeout(1)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    assert "RELOADING=1" in messages and messages[-1] == "STOPPING=1"
    assert "monitor it stopped after" in d.log()


def test_sigterm_during_a_cycle_finishes_its_write(env, containers, daemons):
    # A backend that accepts and never answers keeps every cycle busy for health_timeout.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    port = hung.getsockname()[1]
    try:
        add_slices(env, [(1, port, "assigned")])
        # A running slice container whose port is the hung socket: /health is asked and
        # holds each cycle for health_timeout.
        env.run(containers, 1, ["sleep", "3600"])
        path = env.write_config([env.slice(1, port)], interval=3, health_timeout=2)
        d = daemons(path, env.tmp)
        first = d.wait_cycles(1)[0]
        assert "1 BACKEND_TIMEOUT" in first[2]
        # Cycle 1 ended ~2 s into the beat; cycle 2 starts 1 s later and waits 2 s on the
        # backend: 1.8 s from now is in the middle of it.
        time.sleep(1.8)
        d.proc.send_signal(signal.SIGTERM)
        assert d.stop() == 0
        statuses = d.statuses()
        assert statuses[-1][0] == 2, d.log()  # the interrupted cycle ran to its end ...
        assert env.sql("SELECT count(*) FROM gateway.server_telemetry")[0][0] == 2  # ... and wrote
    finally:
        hung.close()
