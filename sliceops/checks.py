"""Rules of the inventory no JSON Schema can say, checked before anything runs: paths a root
shell may safely create and remove, derived names that cannot collide, listen addresses
that are never "every interface", container sizes Docker accepts, a slice subnet that is
not somebody else's network, and a connection budget that fits.

Each rule reads the raw data (defaults filled in) and reports through `report(path, message)`,
so every problem of a file is named at once, one line each; values the schema already
refused are passed over.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable

from sliceops import names

Report = Callable[[tuple, str], None]

# A root deploy creates, chowns and finally `rm -rf`s trees under these: never a system tree.
SYSTEM_TREES = (
    "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc",
    "/sys", "/dev", "/run", "/var/lib/postgresql", "/var/lib/docker", "/var/run",
)
# Docker refuses a memory limit below 6 MiB.
MIN_MEMORY = 6 * 1024 * 1024
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Networks a slice subnet must stay clear of: pg_hba.conf trusts the slice subnet, and
# Docker's default bridge is where other containers live.
RESERVED_NETWORKS = {
    "0.0.0.0/8": "'this' network",
    "127.0.0.0/8": "loopback",
    "169.254.0.0/16": "link-local",
    "172.17.0.0/16": "Docker's default bridge",
    "224.0.0.0/4": "multicast",
    "240.0.0.0/4": "reserved",
}
# Connections kept apart from the tenants: the gateway, the monitor and operators.
RESERVED_CONNECTIONS = 20


def memory_bytes(text: str) -> int:
    return int(text[:-1]) * _UNITS[text[-1]]


def under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def check(data: dict, section: Callable[[str], dict], report: Report) -> None:
    _fleet(data, report)
    _paths(section("slice_defaults"), section("backups"), report)
    _names(data, section, report)
    _listen(section("postgres"), report)
    _memory(data, section("slice_defaults"), report)
    _subnet(section("docker"), report)
    _subnet_capacity(data, section("docker"), report)
    _connections(data, section, report)
    _monitor_beat(data, section("monitor"), report)


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _paths(sd: dict, backups: dict, report: Report) -> None:
    """data_dir, backup_dir and backups.dir: a root shell creates, re-owns and removes under
    them, so never a system tree, and the backups never inside the data (a destroy would
    remove what it has just backed up) nor the data inside the backups."""
    paths = {}
    for at, path in ((("slice_defaults", "data_dir"), sd.get("data_dir")),
                     (("slice_defaults", "backup_dir"), sd.get("backup_dir")),
                     (("backups", "dir"), backups.get("dir"))):
        path = _str(path)
        if path is None or not names.SAFE_PATH.match(path):
            continue  # absent, or the schema's pattern reported it
        system = next((t for t in SYSTEM_TREES if under(path, t)), None)
        if system:
            report(at, f"{path!r} is inside the system tree {system}: choose a directory of its own")
            continue
        paths[at] = path
    data_dir = paths.pop(("slice_defaults", "data_dir"), None)
    for at, path in paths.items():
        if data_dir and (under(data_dir, path) or under(path, data_dir)):
            report(at, f"{path!r} and slice_defaults.data_dir {data_dir!r} contain one another: a destroy "
                       "would remove data it has just backed up, or back up into what it removes; keep them apart")


def _names(data: dict, section: Callable[[str], dict], report: Report) -> None:
    """The names the inventory gives (gateway database and role, slice owner) against every
    name the deploy derives: the template, the monitor, each slice's database and tenant role
    (any id, so adding a slice later cannot collide), PostgreSQL's own; and the two roles
    against each other. (A role may share its database's name, as crm_gateway may.)"""
    gw, sd = section("gateway"), section("slice_defaults")
    given = [
        (("gateway", "database"), _str(gw.get("database"))),
        (("gateway", "role"), _str(gw.get("role"))),
        (("slice_defaults", "role"), _str(sd.get("role"))),
    ]
    for at, name in given:
        if name is None or not names.IDENTIFIER.match(name):
            continue  # the schema reported it
        reason = names.reserved(name)
        if reason:
            report(at, f"{name!r} is reserved: {reason}")
    gateway_role, owner = given[1][1], given[2][1]
    if gateway_role is not None and gateway_role == owner and not names.reserved(owner):
        report(("gateway", "role"),
               f"{owner!r} is also slice_defaults.role, the owner of every slice database: "
               "the gateway's credentials would own them all")


def _fleet(data: dict, report: Report) -> None:
    """One target, or `hosts:` with exactly one database host, distinct targets and addresses,
    an address wherever another host must reach it, and every slice on a host the file names."""
    hosts = data.get("hosts")
    slices = [(i, e) for i, e in enumerate(data.get("slices") or []) if isinstance(e, dict)] \
        if isinstance(data.get("slices"), list) else []
    if "target" in data and hosts is not None:
        report(("hosts",), "given together with target: name one target (one host runs everything) "
                           "or hosts (a fleet), not both")
        return
    if hosts is None:
        if "target" not in data:
            report((), "missing required key 'target' (or 'hosts' for a fleet)")
            return
        target = _str(data.get("target"))
        own = names.implicit_host_name(target) if target else None
        for i, entry in slices:
            name = entry.get("host")
            if isinstance(name, str) and own is not None and name != own:
                report(("slices", i, "host"), f"{name!r} is not a host of this file: it has one target "
                                              f"(host {own!r}); list hosts: to run slices elsewhere")
        return
    if not isinstance(hosts, dict):
        return  # the schema reported it
    entries = {n: h for n, h in hosts.items() if isinstance(n, str) and isinstance(h, dict)}
    databases = [n for n, h in entries.items() if h.get("database") is True]
    if entries and not databases:
        report(("hosts",), f"no host has database: true ({', '.join(entries)}): exactly one runs PostgreSQL")
    for extra in databases[1:]:
        report(("hosts", extra, "database"), f"true here and on host {databases[0]!r}: exactly one host "
                                              "runs PostgreSQL")
    seen_targets: dict = {}
    seen_addresses: dict = {}
    for name, entry in entries.items():
        target = _str(entry.get("target"))
        if target and re.match(_TARGET, target):
            key = names.target_key(target)
            if key in seen_targets:
                report(("hosts", name, "target"), f"{target!r} is the same machine as host {seen_targets[key]!r}'s "
                                                  "target: two hosts, one target")
            else:
                seen_targets[key] = name
        address = entry.get("address")
        if isinstance(address, str) and names.LISTEN_SHAPE.match(address):
            problem = address_problem(address)
            if problem:
                report(("hosts", name, "address"), f"{address!r} {problem}")
            elif str(ipaddress.ip_address(address)) in seen_addresses:
                report(("hosts", name, "address"),
                       f"{address!r} is also the address of host {seen_addresses[str(ipaddress.ip_address(address))]!r}")
            else:
                seen_addresses[str(ipaddress.ip_address(address))] = name
    single = next(iter(entries)) if len(entries) == 1 else None
    placed: set[str] = set()
    for i, entry in slices:
        name = entry.get("host")
        if name is None:
            if single is None and entries:
                report(("slices", i), f"slice {entry.get('id')!r} names no host (missing key 'host'): "
                                      f"this file has {len(entries)} hosts ({', '.join(entries)})")
            elif single is not None:
                placed.add(single)
        elif isinstance(name, str):
            if name in entries:
                placed.add(name)
            elif entries:
                report(("slices", i, "host"), f"{name!r} is not a host of this file (hosts: {', '.join(entries)})")
        else:
            report(("slices", i, "host"), f"{name!r} is not of type string")
    database = databases[0] if len(databases) == 1 else None
    for name, entry in entries.items():
        if "address" in entry:
            continue
        if name != database:
            report(("hosts", name), f"host {name!r} has no address (missing key 'address'): the database host's "
                                    "pg_hba.conf admits its slices by it")
        elif placed - {database}:
            report(("hosts", name), f"host {name!r} has no address (missing key 'address'): slices on "
                                    f"{', '.join(sorted(placed - {database}))} reach PostgreSQL there")


# The schema's pattern of a target (`@local` or ssh://user@host:port).
_TARGET = r"^(@local|ssh://([A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+(:[0-9]{1,5})?)$"


def address_problem(value: str) -> str | None:
    """Why `value` cannot be a host's private address (None: fine): another host must reach it."""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return "is not an IP address (written plainly, as 10.0.0.10)"
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local:
        return "cannot be reached from another host (unspecified, loopback, multicast or link-local)"
    return None


def _dotted(at: tuple) -> str:
    return ".".join(str(p) for p in at)


def _listen(pg: dict, report: Report) -> None:
    values = pg.get("listen_addresses")
    if not isinstance(values, list):
        return
    for i, value in enumerate(values):
        if not isinstance(value, str) or not names.LISTEN_SHAPE.match(value):
            continue  # the schema reported it
        problem = listen_problem(value)
        if problem:
            report(("postgres", "listen_addresses", i), f"{value!r} {problem}")


def listen_problem(value: str) -> str | None:
    """Why PostgreSQL must not be given `value` as a listen address (None: fine)."""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        # PostgreSQL resolves the name with getaddrinfo, which reads "0", "0.0", "00.0.0.0" or
        # "0x0" as 0.0.0.0: only the plain spelling of an address is accepted.
        try:
            loose = ipaddress.ip_address(socket.inet_aton(value))
        except OSError:
            return "is not an IP address"
        if loose.is_unspecified:
            return "means 0.0.0.0 (every interface): PostgreSQL never listens on all interfaces"
        return f"is not written as an IP address (PostgreSQL would read it as {loose}): write {loose}"
    mapped = getattr(addr, "ipv4_mapped", None)
    if addr.is_unspecified or (mapped is not None and mapped.is_unspecified):
        return "is the unspecified address (every interface): PostgreSQL never listens on all interfaces"
    return None


def _memory(data: dict, sd: dict, report: Report) -> None:
    shape = re.compile(r"^[0-9]+[bkmg]$")
    entries = [(("slice_defaults", "memory"), sd.get("memory"))]
    slices = data.get("slices") if isinstance(data.get("slices"), list) else []
    entries += [(("slices", i, "memory"), e.get("memory")) for i, e in enumerate(slices) if isinstance(e, dict) and "memory" in e]
    for at, value in entries:
        if isinstance(value, str) and shape.match(value) and memory_bytes(value) < MIN_MEMORY:
            report(at, f"{value!r} is below Docker's minimum of 6m (and 0 would mean no limit at all)")


def _subnet(docker: dict, report: Report) -> None:
    subnet = _str(docker.get("subnet"))
    try:
        net = ipaddress.ip_network(subnet) if subnet else None
    except ValueError:
        return  # reported as not a network address
    if net is None:
        return
    for reserved, what in RESERVED_NETWORKS.items():
        if net.overlaps(ipaddress.ip_network(reserved)):
            report(("docker", "subnet"), f"{subnet!r} overlaps {reserved} ({what}): pg_hba.conf trusts this subnet")
            return


def _subnet_capacity(data: dict, docker: dict, report: Report) -> None:
    """Every kept slice (a suspended one may come back in service) needs an address on the
    slice network: more slices than Docker's IPAM can place would fail half-way through the
    containers step."""
    subnet = _str(docker.get("subnet"))
    try:
        capacity = names.subnet_capacity(subnet) if subnet else None
    except ValueError:
        return  # reported as not a network address
    slices = data.get("slices") if isinstance(data.get("slices"), list) else []
    per_host: dict = {}  # each host has its own slice network of this subnet
    for e in slices:
        if isinstance(e, dict) and e.get("status") != "destroying":
            host = e.get("host") if isinstance(e.get("host"), str) else None
            per_host[host] = per_host.get(host, 0) + 1
    if capacity is None or not per_host:
        return
    host, kept = max(per_host.items(), key=lambda item: item[1])
    if kept > capacity:
        bigger = next(p for p in range(ipaddress.ip_network(subnet).prefixlen - 1, 0, -1)
                      if names.subnet_capacity(f"0.0.0.0/{p}") >= kept)
        where = f"host {host!r} keeps" if host is not None else "the inventory keeps"
        report(("docker", "subnet"),
               f"{subnet!r} holds {capacity} slice containers (its addresses less the network, broadcast and "
               f"gateway addresses) but {where} {kept} slices: choose a larger subnet "
               f"(a /{bigger} holds {names.subnet_capacity(f'0.0.0.0/{bigger}')})")


def _connections(data: dict, section: Callable[[str], dict], report: Report) -> None:
    pg, sd = section("postgres"), section("slice_defaults")
    per_tenant, budget = sd.get("db_connections"), pg.get("max_connections")
    if not (isinstance(per_tenant, int) and isinstance(budget, int)):
        return  # max_connections derived from the fleet always fits; bad types were reported
    slices = data.get("slices") if isinstance(data.get("slices"), list) else []
    kept = sum(1 for e in slices if isinstance(e, dict) and e.get("status") != "destroying")
    need = RESERVED_CONNECTIONS + kept * per_tenant
    if need > budget:
        report(("postgres", "max_connections"),
               f"{budget} cannot fit {kept} slices x slice_defaults.db_connections {per_tenant} "
               f"+ {RESERVED_CONNECTIONS} for the gateway, monitor and operators (= {need})")


def _monitor_beat(data: dict, monitor: dict, report: Report) -> None:
    """The monitor refuses at start a /health timeout not shorter than its interval (a cycle
    could not finish within its beat): refuse it here, before the deploy has changed anything,
    naming the key the file gave (health_timeout when both or neither are written)."""
    interval, timeout = monitor.get("interval"), monitor.get("health_timeout")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (interval, timeout)):
        return  # bad types were reported by the schema
    if timeout < interval:
        return
    given = data.get("monitor") if isinstance(data.get("monitor"), dict) else {}
    if "interval" in given and "health_timeout" not in given:
        report(("monitor", "interval"), f"{interval!r} is not longer than monitor.health_timeout {timeout!r}: "
                                        "each cycle checks every slice's /health within its interval; "
                                        "choose a longer interval or a shorter health_timeout")
    else:
        report(("monitor", "health_timeout"), f"{timeout!r} is not shorter than monitor.interval {interval!r}: "
                                              "each cycle checks every slice's /health within its interval; "
                                              "choose a shorter health_timeout or a longer interval")


def memory_overcommit(limits: list[int], ram_bytes: int | None) -> str | None:
    """A warning (not a refusal: slices seldom use their whole limit) when the in-service
    slices' memory limits add up to more than the host's RAM."""
    total = sum(limits)
    if not ram_bytes or total <= ram_bytes:
        return None
    gib = 1024 ** 3
    return (f"the memory limits of the {len(limits)} in-service slices add up to {total / gib:.1f} GiB, more than "
            f"the host's {ram_bytes / gib:.1f} GiB of RAM: slices that use their limit will be killed by the "
            "kernel's OOM killer; lower slice_defaults.memory or move slices to another host")


def host_subnet_problem(subnet: str, own_bridge: str, addresses: list[tuple[str, str]]) -> str | None:
    """Why the slice subnet may not be used on a host holding `addresses` [(interface,
    "addr/prefix")]: it overlaps a network the host is on (pg_hba.conf would trust that
    network's machines as slices). The instance's own bridge holds the subnet's gateway."""
    net = ipaddress.ip_network(subnet)
    for interface, cidr in addresses:
        if interface == own_bridge:
            continue
        try:
            theirs = ipaddress.ip_interface(cidr).network
        except ValueError:
            continue
        if theirs.version == net.version and theirs.overlaps(net):
            where = f" on {interface}" if interface != "?" else ""
            return f"{subnet!r} overlaps {cidr}{where}, an address of the target host: choose a free subnet"
    return None
