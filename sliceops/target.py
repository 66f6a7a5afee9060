"""Map the inventory's hosts onto pyinfra's and testinfra's connection strings."""

from __future__ import annotations

import os

from sliceops.hostkeys import known_hosts_path, ssh_parts
from sliceops.inventory import Host, Inventory

# pyinfra groups (inventory/hosts.py): deploy.py runs the database tasks on the first and the
# slice tasks on the second; a host that is both is in both.
DATABASE_GROUP, SLICE_HOSTS_GROUP = "database", "slice_hosts"


def pyinfra_host(inv: Inventory, h: Host | None = None) -> tuple[str, dict]:
    """The (name, data) pair pyinfra's inventory expects for host `h` (default: the database
    host); data carries the YAML's path and the host's inventory name. A `target:` file's host
    keeps the name pyinfra has always shown (the target's hostname, or @local); a fleet's hosts
    are named as in the file (two may share a hostname on different ports)."""
    h = h or inv.database_host
    data: dict = {"sliceops_inventory": os.path.abspath(inv.path), "sliceops_host": h.name}
    if h.target == "@local":
        return "@local", data
    user, hostname, port = ssh_parts(h.target)
    data.update(ssh_user=user, ssh_port=port)
    if inv.multi_host:
        data["ssh_hostname"] = hostname
    if inv.ssh_key:
        data["ssh_key"] = os.path.expanduser(inv.ssh_key)
    # A root deploy over SSH talks only to the host whose key was recorded beforehand.
    data["ssh_known_hosts_file"] = known_hosts_path(inv.ssh_known_hosts)
    data["ssh_strict_host_key_checking"] = "yes"
    return (h.name if inv.multi_host else hostname), data


def pyinfra_groups(inv: Inventory) -> dict[str, list[tuple[str, dict]]]:
    """Every host, and the two groups deploy.py reads: the database host, the slice hosts."""
    return {
        "hosts": [pyinfra_host(inv, h) for h in inv.hosts],
        DATABASE_GROUP: [pyinfra_host(inv, inv.database_host)],
        SLICE_HOSTS_GROUP: [pyinfra_host(inv, h) for h in inv.slice_hosts],
    }


def testinfra_host_spec(inv: Inventory, h: Host | None = None) -> tuple[str, dict]:
    """The testinfra connection string (and get_host kwargs) of host `h` (default: the
    database host) for `make verify`."""
    h = h or inv.database_host
    if h.target == "@local":
        return "local://", {}
    user, hostname, port = ssh_parts(h.target)
    kwargs = {"ssh_identity_file": os.path.expanduser(inv.ssh_key)} if inv.ssh_key else {}
    return f"paramiko://{user}@{hostname}:{port}", kwargs
