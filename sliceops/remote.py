"""Read a target the way the deploy reaches it, for commands that only look (status, logs).

`@local` runs commands here; `ssh://user@host[:port]` opens one SSH connection (paramiko, the
inventory's `ssh_key`, the host key checked against `ssh_known_hosts` as the deploy checks
it, see sliceops/hostkeys.py) that carries both the commands and the Docker API
(`docker system dial-stdio` on the target), so PostgreSQL and the Docker socket are never
opened to the network.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from urllib.parse import urlencode

from sliceops import hostkeys
from sliceops.errors import RemoteStateError
from sliceops.inventory import Inventory
from sliceops.shell import command

# The lowest Engine API every supported host speaks (Debian 12's docker.io 20.10); fixed so
# that creating a client costs no `/version` round trip.
DOCKER_API_VERSION = "1.41"
LOCAL_SOCKET = "unix:///var/run/docker.sock"
COMMAND_TIMEOUT = 60


class Target:
    """One connection to one host of the inventory (default: the database host, where the
    gateway is): `run` a command, `docker()` its engine."""

    def __init__(self, inv: Inventory, target: str | None = None):
        self.inv = inv
        self.target = target or inv.target
        self._ssh = None
        self._docker = None

    @property
    def is_local(self) -> bool:
        return self.target == "@local"

    # ------------------------------------------------------------------ commands

    def run(self, argv: list[str], stdin: str = "", timeout: float = COMMAND_TIMEOUT) -> str:
        """Run argv as root on the target, `stdin` on its standard input; its stdout, or
        RemoteStateError with the first line of stderr."""
        if self.is_local:
            try:
                proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
            except FileNotFoundError:
                raise RemoteStateError(f"{argv[0]} not found on this machine") from None
            except subprocess.TimeoutExpired:
                raise RemoteStateError(f"{argv[0]} took over {timeout:.0f}s") from None
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            channel_in, channel_out, channel_err = self._client().exec_command(
                command(*argv), timeout=timeout
            )
            channel_in.write(stdin)
            channel_in.channel.shutdown_write()
            out = channel_out.read().decode(errors="replace")
            err = channel_err.read().decode(errors="replace")
            code = channel_out.channel.recv_exit_status()
        if code != 0:
            first = next((line for line in err.splitlines() if line.strip()), f"exit status {code}")
            raise RemoteStateError(f"{argv[0]} on {self.target}: {first.strip()[:300]}")
        return out

    # ------------------------------------------------------------------ ssh

    def connect(self) -> None:
        """Open the SSH connection now (nothing to open for @local), before threads share it."""
        if not self.is_local:
            self._client()

    def _client(self):
        if self._ssh is None:
            import paramiko  # only for ssh:// targets

            # One clear line (HostKeyError, exit 2) for an unknown or changed key, as deploy says it;
            # the client below refuses any key but the recorded one all the same.
            hostkeys.check(self.target, self.inv.ssh_known_hosts)
            user, hostname, port = hostkeys.ssh_parts(self.target)
            client = paramiko.SSHClient()
            known = hostkeys.known_hosts_path(self.inv.ssh_known_hosts)
            if os.path.exists(known):
                client.load_host_keys(known)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            key = os.path.expanduser(self.inv.ssh_key) if self.inv.ssh_key else None
            try:
                client.connect(hostname, port=port, username=user, key_filename=key, timeout=15)
            except (OSError, paramiko.SSHException) as exc:
                raise RemoteStateError(f"cannot reach {self.target}: {exc}") from None
            self._ssh = client
        return self._ssh

    # ------------------------------------------------------------------ docker

    def containers(self, label: str) -> list[dict]:
        """Every container carrying `label` (`key=value`), running or not: the Engine API's
        container list (GET /containers/json), one call. A local engine is asked over its
        socket with the standard library: importing the docker SDK (requests, urllib3, and
        paramiko for its SSH transport) would cost `sliceops status` more than the call.
        OSError when the engine does not answer."""
        if not self.is_local:
            import docker.errors
            import requests.exceptions

            try:
                return self.docker().containers(all=True, filters={"label": label})
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                raise OSError(str(exc)) from None
        query = urlencode({"all": "1", "filters": json.dumps({"label": [label]})})
        return json.loads(_unix_get(LOCAL_SOCKET.removeprefix("unix://"), f"/v{DOCKER_API_VERSION}/containers/json?{query}"))

    def docker(self):
        """A low-level docker APIClient for the target's engine (local socket or over SSH)."""
        if self._docker is None:
            import docker

            if self.is_local:
                self._docker = docker.APIClient(base_url=LOCAL_SOCKET, version=DOCKER_API_VERSION, timeout=30)
            else:
                self._docker = docker.APIClient(base_url=LOCAL_SOCKET, version=DOCKER_API_VERSION, timeout=30)
                adapter = _adapter_over(self._client(), self.target)
                self._docker.mount("http+docker://ssh", adapter)
                self._docker.base_url = "http+docker://ssh"
        return self._docker

    def close(self) -> None:
        if self._docker is not None:
            self._docker.close()
        if self._ssh is not None:
            self._ssh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


PIPE_IDLE_TIMEOUT = 300  # seconds either side of a pipe may go without a byte moving


class _Running:
    """A command started on a target whose standard streams the controller handles as bytes:
    a local process, or one SSH session of the target's connection."""

    def __init__(self, target: Target, argv: list[str], reads: bool):
        self.argv = argv
        if target.is_local:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE if reads else subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            self.chan = None
        else:
            self.proc = None
            self.chan = target._client().get_transport().open_session()
            # A side that stops answering (its host gone) raises instead of hanging the deploy.
            self.chan.settimeout(PIPE_IDLE_TIMEOUT)
            self.chan.exec_command(command(*argv))

    def read(self, n: int) -> bytes:
        return self.proc.stdout.read1(n) if self.proc else self.chan.recv(n)

    def write(self, data: bytes) -> None:
        if self.proc:
            self.proc.stdin.write(data)
        else:
            self.chan.sendall(data)

    def close_write(self) -> None:
        if self.proc:
            self.proc.stdin.close()
        else:
            self.chan.shutdown_write()

    def abort(self) -> None:
        """Stop the command at once: the other side failed, nobody will read or feed it."""
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        else:
            self.chan.close()

    def wait(self) -> tuple[int, str]:
        if self.proc:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
            err = self.proc.stderr.read().decode(errors="replace")
            return self.proc.wait(), err
        code = self.chan.recv_exit_status()
        err = b""
        while self.chan.recv_stderr_ready():
            err += self.chan.recv_stderr(65536)
        return code, err.decode(errors="replace")


def pipe(source: Target, source_argv: list[str], destination: Target, destination_argv: list[str],
         chunk: int = 1 << 16) -> int:
    """Run `source_argv` on one target and `destination_argv` on another, the first's standard
    output fed to the second's standard input through this process's memory, a chunk at a
    time: over the two targets' own connections, nothing on this machine's disk, and the two
    hosts need no way to each other. The bytes carried, or RemoteStateError naming the side
    that failed."""
    out = _Running(source, source_argv, reads=True)
    try:
        into = _Running(destination, destination_argv, reads=False)
    except BaseException:
        out.abort()
        raise
    carried = 0
    try:
        while data := out.read(chunk):
            try:
                into.write(data)
            except OSError as exc:  # it stopped reading (exited, its host gone): say which side
                raise RemoteStateError(f"{destination_argv[0]} on {destination.target} stopped reading "
                                       f"after {carried} bytes: {exc}") from None
            carried += len(data)
    except BaseException:
        # Neither side is waited for: the source would block writing into a stream nobody
        # reads, and a closed SSH session never reports an exit status.
        out.abort()
        into.abort()
        raise
    into.close_write()
    (code_out, err_out), (code_in, err_in) = out.wait(), into.wait()
    for code, err, argv, target in ((code_out, err_out, source_argv, source), (code_in, err_in, destination_argv, destination)):
        if code != 0:
            first = next((line for line in err.splitlines() if line.strip()), f"exit status {code}")
            raise RemoteStateError(f"{argv[0]} on {target.target}: {first.strip()[:300]}")
    return carried


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _unix_get(path: str, url: str) -> bytes:
    """The body of GET `url` from the HTTP server on the unix socket `path`; OSError when it
    does not answer 200."""
    conn = _UnixConnection(path)
    try:
        conn.request("GET", url)
        answer = conn.getresponse()
        body = answer.read()
    except http.client.HTTPException as exc:
        raise OSError(f"{path}: {exc!r}") from None
    finally:
        conn.close()
    if answer.status != 200:
        raise OSError(f"{path}: {answer.status} {body[:200].decode(errors='replace').strip()}")
    return body


def _adapter_over(client, target: str):
    """The docker SDK's SSH adapter, riding the connection this Target already opened (the
    SDK's own would read ~/.ssh/config for the key and refuse unknown host keys)."""
    from docker.transport.sshconn import SSHHTTPAdapter

    class _SharedSSH(SSHHTTPAdapter):
        def _create_paramiko_client(self, base_url):
            self.ssh_client = client
            self.ssh_params = {}

        def _connect(self):
            pass  # connected by Target._client()

    return _SharedSSH(target)
