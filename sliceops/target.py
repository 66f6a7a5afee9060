"""Map the inventory's `target` onto pyinfra's and testinfra's connection strings."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from sliceops.inventory import Inventory


def _ssh_parts(target: str) -> tuple[str, str, int]:
    parts = urlsplit(target)
    return parts.username or "root", parts.hostname or "", parts.port or 22


def pyinfra_host(inv: Inventory) -> tuple[str, dict]:
    """The (name, data) pair pyinfra's inventory expects; data carries the YAML's path."""
    data: dict = {"sliceops_inventory": os.path.abspath(inv.path)}
    if inv.target == "@local":
        return "@local", data
    user, hostname, port = _ssh_parts(inv.target)
    data.update(ssh_user=user, ssh_port=port)
    if inv.ssh_key:
        data["ssh_key"] = os.path.expanduser(inv.ssh_key)
    # Disposable and freshly built hosts have keys nobody has seen yet.
    data["ssh_known_hosts_file"] = "/dev/null"
    data["ssh_strict_host_key_checking"] = "no"
    return hostname, data


def testinfra_host_spec(inv: Inventory) -> tuple[str, dict]:
    """The testinfra connection string (and get_host kwargs) for `make verify`."""
    if inv.target == "@local":
        return "local://", {}
    user, hostname, port = _ssh_parts(inv.target)
    kwargs = {"ssh_identity_file": os.path.expanduser(inv.ssh_key)} if inv.ssh_key else {}
    return f"paramiko://{user}@{hostname}:{port}", kwargs
