"""Map the inventory's `target` onto pyinfra's and testinfra's connection strings."""

from __future__ import annotations

import os

from sliceops.hostkeys import known_hosts_path, ssh_parts
from sliceops.inventory import Inventory


def pyinfra_host(inv: Inventory) -> tuple[str, dict]:
    """The (name, data) pair pyinfra's inventory expects; data carries the YAML's path."""
    data: dict = {"sliceops_inventory": os.path.abspath(inv.path)}
    if inv.target == "@local":
        return "@local", data
    user, hostname, port = ssh_parts(inv.target)
    data.update(ssh_user=user, ssh_port=port)
    if inv.ssh_key:
        data["ssh_key"] = os.path.expanduser(inv.ssh_key)
    # A root deploy over SSH talks only to the host whose key was recorded beforehand.
    data["ssh_known_hosts_file"] = known_hosts_path(inv.ssh_known_hosts)
    data["ssh_strict_host_key_checking"] = "yes"
    return hostname, data


def testinfra_host_spec(inv: Inventory) -> tuple[str, dict]:
    """The testinfra connection string (and get_host kwargs) for `make verify`."""
    if inv.target == "@local":
        return "local://", {}
    user, hostname, port = ssh_parts(inv.target)
    kwargs = {"ssh_identity_file": os.path.expanduser(inv.ssh_key)} if inv.ssh_key else {}
    return f"paramiko://{user}@{hostname}:{port}", kwargs
