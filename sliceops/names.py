"""Every name the deploy derives from the inventory, and the shapes and reserved words the
inventory's own names are checked against. The model (sliceops/inventory.py) computes its
names from here, the checks (sliceops/checks.py) refuse collisions with them."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import urlsplit

SLICE_NAME_PREFIX = "wa_slice_"  # slice N's database and its tenant's login role: wa_slice_N
TEMPLATE_DB = "sliceops_slice_template"  # new slice databases are copies of it
MONITOR_ROLE = "sliceops_monitor"  # the monitor's PostgreSQL role (peer authentication)
MONITOR_USER = "sliceops-monitor"  # the monitor's system user and group
# Where a slice container finds the CA that signed PostgreSQL's certificate (read-only
# bind mount; PGSSLROOTCERT and NODE_EXTRA_CA_CERTS name it).
CONTAINER_PG_CA = "/etc/sliceops/postgresql-ca.crt"

# How the tool runs its standard-library programs on a target: Debian's python3 (the deploy
# installs it) by its path, isolated (-I: no environment, no user site) and without `site`
# (-S). It starts in ~0.05 s; a bare `python3` is whatever the PATH finds first (a pyenv shim
# took 0.45 s of the one PostgreSQL step of an add here).
TARGET_PYTHON = ("/usr/bin/python3", "-I", "-S")

# A PostgreSQL identifier the deploy writes unquoted in pg_hba.conf and URLs.
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# A normalised absolute path of safe characters: no //, no . or .. component, no trailing /,
# no component starting with '-', nothing a shell or glob would read.
SAFE_PATH = re.compile(r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$")
# What the schema lets through as a listen address before it is parsed.
LISTEN_SHAPE = re.compile(r"^[0-9A-Fa-f.:x]+$")
# A host's name in the inventory (hosts.<name>): written into gateway rows, the monitor's
# configuration and pyinfra's output; hostname-shaped so it reads as one.
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
LOCAL_HOST = "local"  # the one host of a single `target: "@local"` inventory
_SLICE_NAME = re.compile(rf"^{SLICE_NAME_PREFIX}([0-9]+)$")

# Names PostgreSQL, pg_hba.conf or the cluster itself give a meaning to.
RESERVED = {
    "all": "pg_hba.conf's keyword for every database and role",
    "sameuser": "a pg_hba.conf keyword",
    "samerole": "a pg_hba.conf keyword",
    "samegroup": "a pg_hba.conf keyword",
    "replication": "a pg_hba.conf keyword",
    "postgres": "the cluster's superuser and its database",
    "public": "PostgreSQL's name for every role",
    "none": "reserved by PostgreSQL",
    "current_user": "reserved by PostgreSQL",
    "current_role": "reserved by PostgreSQL",
    "session_user": "reserved by PostgreSQL",
    "template0": "the cluster's pristine template",
    "template1": "the cluster's default template",
    TEMPLATE_DB: "the deploy's template for slice databases, dropped and rebuilt at will",
    MONITOR_ROLE: "the monitor's role",
}


def slice_name(slice_id: int) -> str:
    return f"{SLICE_NAME_PREFIX}{slice_id}"


def is_slice_name(name: str) -> bool:
    return bool(_SLICE_NAME.match(name))


def slice_id_of(name: str) -> int | None:
    """The slice id a database or role name carries (wa_slice_7 -> 7), or None."""
    m = _SLICE_NAME.match(name)
    return int(m[1]) if m else None


def reserved(name: str) -> str | None:
    """Why `name` may not be given to the gateway database, the gateway role or the slice
    owner (None: it may)."""
    if name in RESERVED:
        return RESERVED[name]
    if name.startswith("pg_"):
        return "PostgreSQL reserves the pg_ prefix"
    if is_slice_name(name):
        return f"{SLICE_NAME_PREFIX}<id> names a slice's database and tenant role"
    return None


def subnet_capacity(subnet: str) -> int:
    """Containers Docker's IPAM can place on an IPv4 bridge network of `subnet`: every address
    but the network's own, its broadcast address and the bridge's gateway (the first host
    address, where PostgreSQL listens). A /24 holds 256 - 3 = 253; a /22, 1021."""
    return ipaddress.ip_network(subnet).num_addresses - 3


def bridge_name(instance: str) -> str:
    """The host interface of the instance's network: Linux allows 15 characters; instances
    may have 16, so long ones are cut and disambiguated with a hash."""
    name = f"so-{instance}"
    if len(name) <= 15:
        return name
    return f"so-{instance[:7]}-{hashlib.sha256(instance.encode()).hexdigest()[:4]}"


def implicit_host_name(target: str) -> str:
    """The name of the one host of a single-`target` inventory: "local" for @local, else the
    ssh:// target's hostname (lowercased). A file that moves to `hosts:` keeps its slices
    where they are by naming that host the same."""
    if target == "@local":
        return LOCAL_HOST
    return (urlsplit(target).hostname or LOCAL_HOST).lower()


def target_key(target: str) -> tuple[str, str, int] | str:
    """What makes two targets the same machine: (user, hostname, port) of an ssh:// target,
    its defaults filled in ("ssh://db1" is "ssh://root@db1:22"), or "@local"."""
    if target == "@local":
        return target
    parts = urlsplit(target)
    try:
        port = parts.port or 22
    except ValueError:  # out of range: the schema lets 5 digits through, the check reports it
        port = target
    return (parts.username or "root", (parts.hostname or "").lower(), port)


def host_monitor_role(host: str) -> str:
    """The PostgreSQL role of the monitor on slice host `host` (not the database host, whose
    monitor is MONITOR_ROLE): sliceops_monitor_<host>, the host name's '.' and '-' made '_'
    and, when that changed it or the name is too long, a hash that keeps "a-b" and "a.b"
    apart; at most 63 bytes (PostgreSQL's limit)."""
    clean = re.sub(r"[^a-z0-9_]", "_", host.lower())
    if clean == host and len(MONITOR_ROLE) + 1 + len(clean) <= 63:
        return f"{MONITOR_ROLE}_{clean}"
    return f"{MONITOR_ROLE}_{clean[:38]}_{hashlib.sha256(host.encode()).hexdigest()[:6]}"
