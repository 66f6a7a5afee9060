"""A converged instance on the real host, tried as a tenant inside its container and as the
monitor's user: the monitor cannot read a DATABASE_URL (no Docker API, no secrets), a slice
reaches PostgreSQL and no other host port, no private range, and the internet only while
`docker.egress` allows it; telemetry still flows without the Docker API."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.fix_deploy import remove_firewall, run_deploy, teardown_instance

pytestmark = pytest.mark.integration

INSTANCE = "hsec1"
PG_PORT = 5477
SUBNET = "172.30.77.0/24"
GATEWAY = "172.30.77.1"
BASE = 6771
NAME = lambda sid: f"{INSTANCE}-wa-slice-{sid}"  # noqa: E731
SECRETS = Path(f"/etc/sliceops/{INSTANCE}/secrets")
MONITOR_USER = "sliceops-monitor"
# Addresses that live in a network namespace on this machine, routed through it: one in a
# private range, one that is not (a documentation range standing in for the internet).
NETNS, VETH_HOST, VETH_NS = "hsecns", "hsec-h", "hsec-n"
NS_PRIVATE, NS_PUBLIC, HOST_SIDE = "10.213.77.2", "198.51.100.77", "10.213.77.1"


def sh(*cmd: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def write_inventory(path: Path, egress: str) -> Path:
    path.write_text(yaml.safe_dump({
        "target": "@local", "instance": INSTANCE, "postgres": {"port": PG_PORT},
        "docker": {"subnet": SUBNET, "egress": egress}, "slice_defaults": {"port_base": BASE},
        "monitor": {"interval": 3}, "slices": [{"id": 1}, {"id": 2}],
    }, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    path = write_inventory(tmp_path_factory.mktemp("hsec") / f"{INSTANCE}.yaml", "allow")
    result = run_deploy(path)
    assert result.returncode == 0, result.output[-4000:]
    yield path
    teardown_instance(INSTANCE)
    remove_firewall(INSTANCE)


def connects(host: str, port: int, timeout: float = 3) -> str:
    """'ok' when a TCP connection from inside slice 1's container succeeds, else the error."""
    code = ("import socket,sys\n"
            "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close(); print('ok')\n"
            "except OSError as e:\n print(type(e).__name__, e)\n")
    out = sh("docker", "exec", NAME(1), "python3", "-c", code, host, str(port), str(timeout), timeout=timeout + 30)
    return out.stdout.strip() or out.stderr.strip()


class Listener:
    """A TCP listener on all addresses of the host (or of a namespace): records who connected."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.peers.append(peer[0])
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def host_listener():
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def netns():
    """A namespace holding NS_PRIVATE and NS_PUBLIC with a listener on port 8080, reached through a
    veth pair: destinations the slices' traffic is forwarded to, without leaving this machine."""
    setup = [
        ["ip", "netns", "add", NETNS],
        ["ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS],
        ["ip", "link", "set", VETH_NS, "netns", NETNS],
        ["ip", "addr", "add", f"{HOST_SIDE}/30", "dev", VETH_HOST],
        ["ip", "link", "set", VETH_HOST, "up"],
        ["ip", "route", "add", f"{NS_PUBLIC}/32", "via", NS_PRIVATE, "dev", VETH_HOST],
        ["ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{NS_PRIVATE}/30", "dev", VETH_NS],
        ["ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{NS_PUBLIC}/32", "dev", "lo"],
        ["ip", "netns", "exec", NETNS, "ip", "link", "set", VETH_NS, "up"],
        ["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"],
        ["ip", "netns", "exec", NETNS, "ip", "route", "add", "default", "via", HOST_SIDE],
    ]
    server = None
    try:
        for cmd in setup:
            sh(*cmd, check=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "python3", "-c",
             "import socket\ns=socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(8)\n"
             "while True:\n c, _ = s.accept(); c.close()\n"])
        time.sleep(0.5)
        yield
    finally:
        if server is not None:
            server.kill()
            server.wait()
        sh("ip", "route", "del", f"{NS_PUBLIC}/32")
        sh("ip", "link", "del", VETH_HOST)
        sh("ip", "netns", "del", NETNS)


def test_the_monitors_user_is_not_in_the_docker_group_and_cannot_inspect_a_slice(deployed):
    assert "docker" not in sh("id", "-nG", MONITOR_USER, check=True).stdout.split()
    secret = (SECRETS / "wa_slice_1.env").read_text()
    assert "DATABASE_URL=" in secret
    out = sh("runuser", "-u", MONITOR_USER, "--", "docker", "inspect", NAME(1))
    assert out.returncode != 0 and "permission denied" in out.stderr.lower(), out
    assert "DATABASE_URL" not in out.stdout
    # The socket itself, without the CLI.
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect('/var/run/docker.sock'); print('connected')\nexcept OSError as e:\n print(e)\n")
    out = sh("runuser", "-u", MONITOR_USER, "--", "python3", "-c", probe)
    assert "Permission denied" in out.stdout, out


def test_the_monitors_user_cannot_read_the_secrets(deployed):
    for cmd in (["ls", str(SECRETS)], ["cat", str(SECRETS / "wa_slice_1.env")]):
        out = sh("runuser", "-u", MONITOR_USER, "--", *cmd)
        assert out.returncode != 0 and "Permission denied" in out.stderr, (cmd, out)


def test_telemetry_still_flows_from_cgroups(deployed):
    query = ("SELECT count(*) FROM gateway.telemetry WHERE slice_id = 1 AND rss_bytes > 0 "
             "AND cpu_percent IS NOT NULL AND wa_state NOT LIKE 'CONTAINER_%'")
    deadline = time.monotonic() + 60
    while True:
        out = sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(PG_PORT), "-d", "wank_saas", "-c", query)
        if out.stdout.strip() not in ("", "0"):
            break
        assert time.monotonic() < deadline, f"no measured telemetry row for slice 1: {out.stdout}{out.stderr}"
        time.sleep(2)


def test_a_slice_reaches_postgres_and_no_other_host_port(deployed, host_listener):
    with socket.create_connection(("127.0.0.1", host_listener.port), timeout=2):
        pass  # the listener answers the host itself
    assert connects(GATEWAY, PG_PORT) == "ok"
    answer = connects(GATEWAY, host_listener.port)
    assert answer != "ok" and "timed out" in answer, answer
    # Every address of the host is the host: docker0's too.
    assert connects("172.17.0.1", host_listener.port) != "ok"
    assert not [p for p in host_listener.peers if p.startswith("172.30.77.")]


def test_private_ranges_are_dropped_and_the_rest_goes_out(deployed, netns):
    assert connects(NS_PUBLIC, 8080) == "ok"  # "the internet": the route works
    assert connects(NS_PRIVATE, 8080) != "ok"  # same namespace, private address: dropped


def test_the_rules_come_back_from_the_boot_script(deployed):
    remove_firewall(INSTANCE, unit=False)  # the rules gone, as after a reboot
    assert f"SLICEOPS-IN-{INSTANCE}" not in sh("iptables", "-w", "-S", "INPUT").stdout
    # What the boot runs (the LSB script here; the systemd unit runs the same script).
    out = sh(f"/etc/init.d/sliceops-firewall-{INSTANCE}", "start")
    assert out.returncode == 0, out.stderr
    assert sh(f"/etc/init.d/sliceops-firewall-{INSTANCE}", "status").returncode == 0
    assert f"-A INPUT -s {SUBNET} -j SLICEOPS-IN-{INSTANCE}" in sh("iptables", "-w", "-S", "INPUT").stdout


def test_egress_deny_keeps_postgres_and_drops_the_rest(deployed, netns):
    write_inventory(deployed, "deny")
    result = run_deploy(deployed)
    assert result.returncode == 0, result.output[-4000:]
    assert any(op.startswith("Firewall the slice network") for op in result.changed_ops), result.changed_ops
    assert connects(NS_PUBLIC, 8080) != "ok"
    assert connects(GATEWAY, PG_PORT) == "ok"
