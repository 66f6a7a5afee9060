"""The SSH host key of an ssh:// target, checked against the known-hosts file the inventory
names before root's key is offered to it. Nothing here records a key: an unknown key is
recorded by the operator, out of band, after checking its fingerprint."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sliceops.errors import SliceopsError

if TYPE_CHECKING:
    import paramiko

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
OK, UNKNOWN, CHANGED = "ok", "unknown", "changed"


class HostKeyError(SliceopsError):
    """The target's SSH host key is unknown or differs from the recorded one, or cannot be read."""


class HostUnreachable(HostKeyError):
    """The target does not answer on its SSH port (nothing was offered, nothing was trusted)."""


def ssh_parts(target: str) -> tuple[str, str, int]:
    """(user, hostname, port) of an ssh:// target."""
    parts = urlsplit(target)
    return parts.username or "root", parts.hostname or "", parts.port or 22


def known_hosts_path(known_hosts: str | None) -> str:
    return os.path.expanduser(known_hosts or DEFAULT_KNOWN_HOSTS)


def host_entry(hostname: str, port: int) -> str:
    """The name OpenSSH files a host under: `host`, or `[host]:port` off port 22."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as ssh-keygen -lf prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def verdict(known: dict[str, paramiko.PKey] | None, offered: paramiko.PKey) -> str:
    """OK when the offered key is one recorded for the host, UNKNOWN when none is recorded,
    CHANGED when keys are recorded and the offered one is not among them."""
    if not known:
        return UNKNOWN
    return OK if known.get(offered.get_name()) == offered else CHANGED


def load_known(path: str, entry: str) -> dict[str, paramiko.PKey]:
    """The keys recorded for entry in the known-hosts file (hashed names included), by type."""
    import paramiko  # here: reading a local target never loads the SSH library

    keys = paramiko.HostKeys()
    try:
        keys.load(path)
    except FileNotFoundError:
        return {}
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise HostKeyError(f"known-hosts file {path} is unreadable: {exc}") from exc
    return dict(keys.lookup(entry) or {})


def recorded_lines(known_hosts: str | None, hostname: str, port: int) -> list[str]:
    """known_hosts lines (plain names) for every key recorded for the host in the file."""
    entry = host_entry(hostname, port)
    keys = load_known(known_hosts_path(known_hosts), entry)
    return [f"{entry} {key.get_name()} {key.get_base64()}" for _, key in sorted(keys.items())]


def check_copy_host(inv) -> None:
    """Raise HostKeyError (one line) unless backups.copy_to's host key is recorded in
    ssh_known_hosts: the deploy hands exactly those keys to the target's agent."""
    parts = inv.backups.copy_parts
    if parts is None:
        return
    _, hostname, port, _ = parts
    if not recorded_lines(inv.ssh_known_hosts, hostname, port):
        line = inv.lines.get(("backups", "copy_to"), 1)
        path = known_hosts_path(inv.ssh_known_hosts)
        raise HostKeyError(
            f"{inv.path}:{line}: backups.copy_to: no host key for {host_entry(hostname, port)} in {path} "
            f"(ssh_known_hosts): check its fingerprint on that host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
            f"record it (ssh-keyscan -p {port} {hostname}), then deploy again"
        )


def offered_key(hostname: str, port: int, key_types: list[str], timeout: float = 10.0) -> paramiko.PKey:
    """The host key the server presents, asking first for the types already recorded
    (a server holds several; comparing an RSA key with a recorded ed25519 one proves nothing)."""
    import paramiko

    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except OSError as exc:
        raise HostUnreachable(f"cannot reach {hostname}:{port} over SSH: {exc.strerror or exc}") from exc
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        wanted = [t for t in options.key_types if t in key_types]
        if wanted:
            options.key_types = wanted
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostKeyError(f"no SSH host key from {hostname}:{port}: {exc}") from exc
    finally:
        transport.close()


def check(target: str, known_hosts: str | None) -> None:
    """Raise HostKeyError (one line) unless target's host key is recorded in known_hosts."""
    _, hostname, port = ssh_parts(target)
    path = known_hosts_path(known_hosts)
    entry = host_entry(hostname, port)
    known = load_known(path, entry)
    key = offered_key(hostname, port, list(known))
    result = verdict(known, key)
    if result == UNKNOWN:
        raise HostKeyError(
            f"{target}: host key {key.get_name()} {fingerprint(key)} of {entry} is not in {path} (ssh_known_hosts); "
            f"check that fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and add the key, "
            f"then deploy again"
        )
    if result == CHANGED:
        raise HostKeyError(
            f"{target}: host key of {entry} CHANGED: offered {key.get_name()} {fingerprint(key)}, not the one in "
            f"{path}; someone may be intercepting the connection: deploy stopped"
        )
