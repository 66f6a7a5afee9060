"""A disposable, production-like Debian 12 host for end-to-end tests.

The session fixture `systemd_host` boots `sliceops/systemd-host:bookworm`
(images/systemd-host/build.sh) with systemd as PID 1 and sshd on a loopback
port, so a deploy converges it with pyinfra over SSH and testinfra verifies it
over SSH, as in production. The host shares this machine's network and Docker
engine (`--network host`, `/var/run/docker.sock`): it cannot run its own.

Environment:
  SLICEOPS_KEEP_E2E_HOST=1     keep the container (and key) after the run
  SLICEOPS_E2E_SSH_PORT=N      sshd port (default 2222 if free, else any free one)
  SLICEOPS_E2E_BOOT_TIMEOUT=S  seconds to wait for boot and sshd (default 120)
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "images" / "systemd-host" / "build.sh"
IMAGE = "sliceops/systemd-host:bookworm"
CONTAINER = "sliceops-e2e-host"
HOSTNAME = "sliceops-e2e"
ADDRESS = "127.0.0.1"
DEFAULT_SSH_PORT = 2222

# What a container needs to run systemd as PID 1 on this engine (cgroup v1,
# --privileged refused), plus the two things it borrows from this machine.
SHARED_ETC = "/etc/sliceops/e2e"  # the e2e instance's folder, the same files on both sides

DOCKER_RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN",
    # The deploy firewalls the slice network with iptables; with --network host these are
    # this machine's rules, where the borrowed engine's slice traffic really flows.
    "--cap-add", "NET_ADMIN",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--network", "host",
    "-v", "/var/run/docker.sock:/var/run/docker.sock",
    # The borrowed engine resolves bind mounts on this machine: the e2e instance's slice
    # data directories must be the same files on both sides.
    "-v", "/srv/sliceops/e2e:/srv/sliceops/e2e",
    # ... and so must the files a slice container mounts from the instance's /etc folder (the
    # PostgreSQL CA named by PGSSLROOTCERT): a path missing on this machine is made a directory.
    "-v", f"{SHARED_ETC}:{SHARED_ETC}",
    "--hostname", HOSTNAME,
    "--label", "org.sliceops.role=e2e-host",
]

# `systemctl is-system-running`: "running" = every unit came up, "degraded" =
# booted but some unit failed; anything else (initializing, starting, ...) is
# not there yet.
BOOTED_STATES = {"running", "degraded"}


@dataclass
class SystemdHost:
    """The booted host: how to reach it over SSH, and helpers.

    ssh_target / ssh_config_path (`ssh -F <it> sliceops-e2e`) / key_path /
    known_hosts_path (the host's own keys, read out of band) / port;
    ssh_data and pyinfra_args() for pyinfra; testinfra_host for checks;
    run() for out-of-band commands through `docker exec`.
    """

    container: str
    port: int
    key_path: Path
    known_hosts_path: Path
    ssh_config_path: Path
    address: str = ADDRESS
    user: str = "root"
    ssh_alias: str = HOSTNAME  # the `Host` entry in ssh_config_path

    @property
    def ssh_target(self) -> str:
        return f"ssh://{self.user}@{self.address}:{self.port}"

    @property
    def ssh_data(self) -> dict[str, object]:
        """pyinfra host data (inventory) that reaches this host with strict host key checks."""
        return {
            "ssh_hostname": self.address,
            "ssh_port": self.port,
            "ssh_user": self.user,
            "ssh_key": str(self.key_path),
            "ssh_known_hosts_file": str(self.known_hosts_path),
            "ssh_strict_host_key_checking": "yes",
        }

    def pyinfra_args(self) -> list[str]:
        """`pyinfra` command-line arguments: connection options, then the inventory."""
        return [
            "--ssh-port", str(self.port),
            "--ssh-user", self.user,
            "--ssh-key", str(self.key_path),
            "--data", f"ssh_known_hosts_file={self.known_hosts_path}",
            "--data", "ssh_strict_host_key_checking=yes",
            self.address,
        ]

    def run(self, cmd: str | list[str], check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run a command inside the host through `docker exec` (out of band, not SSH)."""
        return _docker_exec(self.container, cmd, check=check, timeout=timeout)

    @functools.cached_property
    def testinfra_host(self):
        """A testinfra host connected over SSH (paramiko) with the throwaway key."""
        import testinfra

        host = testinfra.get_host(f"paramiko://{self.ssh_alias}", ssh_config=str(self.ssh_config_path))
        # testinfra's paramiko backend accepts any host key (with a warning);
        # hand it a connection checked against known_hosts instead.
        host.backend.client = self.ssh_client()
        return host

    def ssh_client(self) -> paramiko.SSHClient:
        """A paramiko connection as root, the host key checked against known_hosts."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts_path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(self.address, port=self.port, username=self.user, key_filename=str(self.key_path),
                           timeout=10, allow_agent=False, look_for_keys=False)
        except BaseException:
            client.close()
            raise
        return client


@pytest.fixture(scope="session")
def systemd_host() -> Iterator[SystemdHost]:
    """A freshly booted host for the whole session, removed at the end."""
    _require_docker()
    built_in = _ensure_image()
    keep = os.environ.get("SLICEOPS_KEEP_E2E_HOST") == "1"
    workdir = Path(tempfile.mkdtemp(prefix="sliceops-e2e-host-"))
    port = _pick_port()
    host = SystemdHost(
        container=CONTAINER,
        port=port,
        key_path=workdir / "id_ed25519",
        known_hosts_path=workdir / "known_hosts",
        ssh_config_path=workdir / "ssh_config",
    )
    try:
        public_key = _write_key_pair(host.key_path)
        _docker("rm", "--force", CONTAINER, check=False)  # a stale host from an interrupted run
        shutil.rmtree(SHARED_ETC, ignore_errors=True)  # and its files (only the e2e instance's)
        os.makedirs(SHARED_ETC)
        os.chmod(SHARED_ETC, 0o755)  # as the deploy leaves it: PostgreSQL reads its key below it
        started = time.monotonic()
        _docker("create", "--name", CONTAINER, *DOCKER_RUN_FLAGS, IMAGE)
        # Before the first boot, so sshd starts with the right port and key.
        _docker_cp_files(CONTAINER, {
            "root/.ssh/authorized_keys": (public_key, 0o600),
            "etc/ssh/sshd_config.d/10-listen.conf": (f"ListenAddress {ADDRESS}\nPort {port}\n", 0o644),
        })
        _docker("start", CONTAINER)
        _wait_until_booted(host, _boot_timeout())
        _write_ssh_client_files(host)
        _wait_for_ssh(host, _boot_timeout())
        booted_in = time.monotonic() - started
    except BaseException:
        if not keep:
            _docker("rm", "--force", CONTAINER, check=False)
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(SHARED_ETC, ignore_errors=True)
        raise
    _say(f"{CONTAINER}: image ready in {built_in:.1f}s, booted with sshd on {ADDRESS}:{port} in {booted_in:.1f}s")

    yield host

    if keep:
        _say(f"{CONTAINER} kept (SLICEOPS_KEEP_E2E_HOST=1): ssh -F {host.ssh_config_path} {host.ssh_alias}")
        return
    if "testinfra_host" in host.__dict__:  # connected at least once
        host.testinfra_host.backend.client.close()
    _docker("rm", "--force", CONTAINER, check=False)
    shutil.rmtree(workdir, ignore_errors=True)
    # The e2e instance's secrets (root-only) lived here on this machine's disk too: not left
    # behind for the next run to wipe.
    shutil.rmtree(SHARED_ETC, ignore_errors=True)


# --- docker -----------------------------------------------------------------------------

def _docker(*args: str, check: bool = True, timeout: float = 120, input: bytes | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.decode(errors='replace').strip()}")
    return result


def _docker_exec(container: str, cmd: str | list[str], check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    return subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, timeout=timeout, check=check)


def _docker_cp_files(container: str, files: dict[str, tuple[str, int]]) -> None:
    """Copy small text files into a (created, not yet started) container, owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 0, 0
            tar.addfile(info, io.BytesIO(data))
    _docker("cp", "-", f"{container}:/", input=buffer.getvalue())


def _require_docker() -> None:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.exit(f"e2e tests need a Docker engine: 'docker info' failed: {exc}")
    if result.returncode != 0:
        pytest.exit(f"e2e tests need a Docker engine: 'docker info' failed: {result.stderr.strip()}")


def _ensure_image() -> float:
    """Run build.sh (instant when the image is current); return the seconds it took."""
    started = time.monotonic()
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        pytest.exit(f"could not build {IMAGE} with {BUILD_SCRIPT}:\n{tail}")
    return time.monotonic() - started


# --- boot and ssh -----------------------------------------------------------------------

def _boot_timeout() -> float:
    return float(os.environ.get("SLICEOPS_E2E_BOOT_TIMEOUT", "120"))


def _pick_port() -> int:
    wanted = os.environ.get("SLICEOPS_E2E_SSH_PORT")
    if wanted:
        if not _port_is_free(int(wanted)):
            pytest.exit(f"SLICEOPS_E2E_SSH_PORT={wanted} is already in use on {ADDRESS}")
        return int(wanted)
    if _port_is_free(DEFAULT_SSH_PORT):
        return DEFAULT_SSH_PORT
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # SO_REUSEADDR: a port left in TIME_WAIT is free; one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ADDRESS, port))
        except OSError:
            return False
    return True


def _write_key_pair(key_path: Path) -> str:
    """Write a throwaway ed25519 key pair (OpenSSH format); return the public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    key_path.write_bytes(private)
    key_path.chmod(0o600)
    public_line = public.decode() + " sliceops-e2e\n"
    key_path.with_suffix(".pub").write_text(public_line)
    return public_line


def _wait_until_booted(host: SystemdHost, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        running = _docker("inspect", "--format", "{{.State.Running}}", host.container, check=False)
        if running.stdout.decode().strip() != "true":
            logs = _docker("logs", "--tail", "60", host.container, check=False)
            _fail(host, f"container {host.container} stopped while booting:\n"
                        f"{(logs.stdout + logs.stderr).decode(errors='replace')}")
        state = _docker_exec(host.container, ["systemctl", "is-system-running"], timeout=30).stdout.strip()
        if state in BOOTED_STATES:
            if state == "degraded":
                failed = _docker_exec(host.container, ["systemctl", "--failed", "--no-pager"]).stdout
                _say(f"{host.container} booted degraded:\n{failed}")
            return
        time.sleep(0.5)
    _fail(host, f"systemd in {host.container} did not finish booting within {timeout:.0f}s "
                f"(is-system-running: {state or 'no answer'})")


def _write_ssh_client_files(host: SystemdHost) -> None:
    """known_hosts from the keys the host generated at boot (read out of band), and an ssh_config."""
    keys = _docker_exec(host.container, "cat /etc/ssh/ssh_host_*_key.pub", check=True).stdout.splitlines()
    host.known_hosts_path.write_text(
        "".join(f"[{host.address}]:{host.port} {' '.join(line.split()[:2])}\n" for line in keys if line.strip())
    )
    host.ssh_config_path.write_text(
        f"Host {host.ssh_alias}\n"
        f"    HostName {host.address}\n"
        f"    Port {host.port}\n"
        f"    User {host.user}\n"
        f"    IdentityFile {host.key_path}\n"
        f"    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {host.known_hosts_path}\n"
        f"    StrictHostKeyChecking yes\n"
    )


def _wait_for_ssh(host: SystemdHost, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with host.ssh_client() as client:
                _, stdout, _ = client.exec_command("true")
                if stdout.channel.recv_exit_status() == 0:
                    return
        except (OSError, paramiko.SSHException) as exc:
            last_error = exc
        time.sleep(0.5)
    _fail(host, f"sshd in {host.container} did not accept the key on {host.address}:{host.port} "
                f"within {timeout:.0f}s (last error: {last_error!r})")


def _fail(host: SystemdHost, message: str) -> None:
    """Stop with the reason and what systemd inside says about it."""
    sections = [message]
    for title, cmd in [
        ("systemctl is-system-running", ["systemctl", "is-system-running"]),
        ("systemctl --failed", ["systemctl", "--failed", "--no-pager"]),
        ("systemctl status ssh", ["systemctl", "status", "--no-pager", "ssh"]),
        ("journalctl -b (last 80 lines)", ["journalctl", "-b", "--no-pager", "-n", "80"]),
    ]:
        try:
            out = _docker_exec(host.container, cmd, timeout=20)
            sections.append(f"--- {title}\n{(out.stdout + out.stderr).strip()}")
        except subprocess.TimeoutExpired:
            sections.append(f"--- {title}\n(no answer within 20s)")
    pytest.fail("\n".join(sections), pytrace=False)


def _say(message: str) -> None:
    print(f"\n[fix_systemd_host] {message}", file=sys.stderr)
