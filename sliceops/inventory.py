"""Load inventory/slices.yaml into one validated, immutable model used by every deploy step.

Validation collects every problem before reporting, one line each, naming the file,
the line, the key and the offending value; nothing on the host is touched before it
passes. The structural rules live in the shipped JSON Schema (editors validate with it
too); the rules that span entries (duplicate ids, port collisions) are checked here.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from sliceops import checks, migrations, names
from sliceops.errors import InventoryError
from sliceops.paths import ROOT
from sliceops.names import MONITOR_ROLE, MONITOR_USER, SLICE_NAME_PREFIX, TEMPLATE_DB  # noqa: F401 (re-exported)

SCHEMA_PATH = Path(__file__).parent / "schema" / "inventory.schema.json"
DEFAULT_INVENTORY = ROOT / "inventory" / "slices.yaml"

ACTIVE, SUSPENDED, DESTROYING = "active", "suspended", "destroying"



@functools.cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _defaults(section: str) -> dict:
    props = schema()["properties"][section]["properties"]
    return {key: spec["default"] for key, spec in props.items() if "default" in spec}


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class PostgresSettings:
    version: int
    port: int
    listen_addresses: tuple[str, ...]
    max_connections: int | None = None
    shared_buffers_mb: int | None = None
    effective_cache_size_mb: int | None = None
    work_mem_mb: int | None = None
    maintenance_work_mem_mb: int | None = None


@dataclass(frozen=True)
class GatewaySettings:
    database: str
    role: str


@dataclass(frozen=True)
class SliceDefaults:
    role: str
    image: str
    port_base: int
    port_step: int
    data_dir: str
    backup_dir: str
    memory: str
    cpus: float
    pids: int
    health_interval: int
    disk: str | bool = "2g"
    # An absolute folder of slice migrations replacing sql/slice/ (resolved from the
    # inventory file's folder); None: the built-in ones.
    migrations: str | None = None
    db_connections: int = 5
    # Unassigned in-service slices to keep ready for sign-ups (sliceops.spares warns below it).
    spares: int = 0


@dataclass(frozen=True)
class DockerSettings:
    managed: bool
    subnet: str
    egress: str = "allow"

    @property
    def gateway_address(self) -> str:
        """The bridge's own address: where slice containers reach PostgreSQL."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))


@dataclass(frozen=True)
class MonitorSettings:
    interval: int
    retention_days: int
    prune_interval: int
    health_timeout: float
    metrics_port: int = 0


@dataclass(frozen=True)
class BackupSettings:
    schedule: str = "03:00"
    keep_daily: int = 7
    keep_weekly: int = 4
    dir: str | None = None
    drill: str = "weekly"
    parallel: int = 2
    copy_to: str | None = None  # ssh://user@host[:port]/path, where verified backups are sent

    @property
    def hour_minute(self) -> tuple[int, int]:
        hour, minute = self.schedule.split(":")
        return int(hour), int(minute)

    @property
    def copy_parts(self) -> tuple[str, str, int, str] | None:
        """(user, host, port, path) of copy_to (the schema's pattern guarantees each part)."""
        if not self.copy_to:
            return None
        parts = urlsplit(self.copy_to)
        return parts.username or "", parts.hostname or "", parts.port or 22, parts.path


@dataclass(frozen=True)
class Host:
    """One machine of the fleet (inventory `hosts.<name>`, or the one host of a `target:` file)."""

    name: str
    target: str
    # The private address the other hosts reach it on (None: the one host of a `target:` file,
    # or a host that needs none).
    address: str | None = None
    database: bool = False  # it runs PostgreSQL, the gateway and every slice's database

    @property
    def is_local(self) -> bool:
        return self.target == "@local"


@dataclass(frozen=True)
class Slice:
    id: int
    port: int
    status: str = ACTIVE
    force: bool = False
    memory: str = "256m"
    cpus: float = 0.5
    pids: int = 256
    disk: str | None = "2g"  # None: no quota (slice_defaults.disk: false)
    host: str = names.LOCAL_HOST  # the name of the host running its container

    @property
    def database(self) -> str:
        return names.slice_name(self.id)

    @property
    def login_role(self) -> str:
        """The slice's own credentials: they open its database and nothing else."""
        return names.slice_name(self.id)

    @property
    def in_service(self) -> bool:
        return self.status == ACTIVE

    @property
    def memory_bytes(self) -> int:
        return size_bytes(self.memory)

    @property
    def disk_quota_bytes(self) -> int | None:
        """The slice's disk quota in bytes (`disk`), or None when quotas are off."""
        return size_bytes(self.disk) if self.disk else None


@dataclass(frozen=True)
class Inventory:
    path: str
    # The database host's target: where PostgreSQL and the gateway are (a `target:` file's one
    # host). Commands that read the gateway (status, report, backups) connect here.
    target: str
    instance: str
    postgres: PostgresSettings
    gateway: GatewaySettings
    slice_defaults: SliceDefaults
    docker: DockerSettings
    monitor: MonitorSettings
    slices: tuple[Slice, ...]
    ssh_key: str | None = None
    ssh_known_hosts: str | None = None
    backups: BackupSettings = field(default_factory=BackupSettings)
    lines: dict = field(default_factory=dict, compare=False, repr=False)
    # The file's `hosts:`, in its order; empty for a `target:` file (then `hosts` is its one
    # implicit host, both database and slice host).
    host_list: tuple[Host, ...] = ()

    # The fleet: which host runs what.
    @property
    def hosts(self) -> tuple[Host, ...]:
        return self.host_list or (Host(names.implicit_host_name(self.target), self.target, None, True),)

    @property
    def multi_host(self) -> bool:
        """The file names its hosts (`hosts:`) rather than giving one `target`."""
        return bool(self.host_list)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def database_host(self) -> Host:
        return next(h for h in self.hosts if h.database)

    def slices_on(self, name: str) -> tuple[Slice, ...]:
        return tuple(s for s in self.slices if s.host == name)

    @property
    def slice_hosts(self) -> tuple[Host, ...]:
        """Hosts that run slice containers (the Docker engine, the slice volume, the firewall):
        every host but a database host no slice names; a `target:` file's one host always."""
        if not self.multi_host:
            return self.hosts
        return tuple(h for h in self.hosts if not h.database or self.slices_on(h.name))

    def for_host(self, name: str) -> "Inventory":
        """The model as a slice host sees it: only the slices that run on host `name` (its
        containers, data directories, volume, monitor), the rest unchanged. A `target:` file's
        one host runs every slice, so its view is the whole model."""
        mine = self.slices_on(name)
        return self if mine == self.slices else replace(self, slices=mine)

    def database_address(self, s: Slice) -> str:
        """Where slice `s`'s container reaches PostgreSQL: the bridge's gateway address when it
        runs on the database host, else the database host's private address (cross-host TLS and
        pg_hba for that case are issue 14's part B)."""
        return self.remote_database_address(s.host) or self.docker.gateway_address

    def credentials_host(self, s: Slice) -> str:
        """Where slice `s`'s password and credentials file are made and kept: the host whose
        container reads them (the database host receives only the password's verifier), or
        the database host for a slice that runs there (and for a `target:` file)."""
        db = self.database_host.name
        return s.host if self.multi_host and s.host != db else db

    def remote_database_address(self, here: str) -> str | None:
        """The database host's address as slice host `here` reaches it, when that is another
        machine (its slices' containers connect there; its firewall lets exactly that out)."""
        db = self.database_host
        return db.address if self.multi_host and here != db.name and db.address else None

    # Names derived from the instance, so two environments can share one host.
    @property
    def prefix(self) -> str:
        return "" if self.instance == "main" else f"{self.instance}-"

    def container_name(self, slice_id: int) -> str:
        return f"{self.prefix}wa-slice-{slice_id}"

    @property
    def bridge(self) -> str:
        """The host interface of the instance's slice network."""
        return names.bridge_name(self.instance)

    @property
    def network(self) -> str:
        return f"sliceops-{self.instance}"

    @property
    def cluster(self) -> str:
        return self.instance

    @property
    def etc_dir(self) -> str:
        return f"/etc/sliceops/{self.instance}"

    @property
    def secrets_dir(self) -> str:
        return f"{self.etc_dir}/secrets"

    @property
    def tls_dir(self) -> str:
        """The database host's CA and server certificate (the CA key never leaves it)."""
        return f"{self.etc_dir}/tls"

    @property
    def pg_ca_file(self) -> str:
        """A slice host's copy of the database's CA certificate (public), mounted read-only
        into each slice container at names.CONTAINER_PG_CA."""
        return f"{self.etc_dir}/postgresql-ca.crt"

    @property
    def monitor_password_file(self) -> str:
        """A slice host's monitor password (made there, its user's alone; not on the
        database host, whose monitor uses peer authentication)."""
        return f"{self.etc_dir}/monitor.password"

    @property
    def share_dir(self) -> str:
        """Where the deploy ships its SQL and helper scripts on the target."""
        return f"/usr/local/share/sliceops/{self.instance}"

    @property
    def container_starts_dir(self) -> str:
        """Where a container started in the background leaves its exit status and output for
        the deploy's last step (operations/docker.py `started`)."""
        return f"{self.share_dir}/.starts"

    def sql_dir(self, kind: str) -> str:
        """Where the migrations of `kind` ("gateway", "slice") are on the target: the shipped
        sql/<kind>, or the shipped slice_defaults.migrations folder."""
        if kind == "slice" and self.slice_defaults.migrations:
            return f"{self.share_dir}/slice-migrations"
        return f"{self.share_dir}/sql/{kind}"

    @property
    def slices_data_dir(self) -> str:
        return f"{self.slice_defaults.data_dir}/{self.instance}/slices"

    def slice_data_dir(self, slice_id: int) -> str:
        return f"{self.slices_data_dir}/{slice_id}"

    def moved_data_dir(self, slice_id: int, stamp: str) -> str:
        """Where a slice's data directory is kept on the host it moved away from (archived,
        never deleted; beside the slices' own, so on the same filesystem or volume)."""
        return f"{self.slices_data_dir}/.moved-{slice_id}-{stamp}"

    def failed_move_data_dir(self, slice_id: int, stamp: str) -> str:
        """Where a failed move keeps, on the host it was moving to, what the slice's container
        there may have written before the move was undone (kept, never deleted)."""
        return f"{self.slices_data_dir}/.failed-move-{slice_id}-{stamp}"

    @property
    def quota_enabled(self) -> bool:
        """Slice data live in the instance's quota volume (slice_defaults.disk is not false)."""
        return self.slice_defaults.disk is not False

    @property
    def volume_image(self) -> str:
        """The preallocated btrfs image holding every slice's data; mounted on slices_data_dir."""
        return f"{self.slice_defaults.data_dir}/{self.instance}/slices.img"

    @property
    def volume_staging_dir(self) -> str:
        """Where plain data directories wait while they are copied into the volume."""
        return f"{self.slices_data_dir}.plain"

    @property
    def volume_service(self) -> str:
        """The boot script (LSB) or unit (systemd) that mounts the volume before the engine starts."""
        return f"sliceops-volume-{self.instance}"

    @property
    def volume_size(self) -> int:
        """Bytes the image must have: every listed slice's quota, plus room for btrfs's own
        metadata (256 MiB and an eighth of the quotas), in whole MiB. It grows with the
        quotas and never shrinks."""
        quotas = sum(s.disk_quota_bytes or 0 for s in self.slices)
        size = quotas + 256 * MIB + quotas // 8
        return -(-size // MIB) * MIB

    @property
    def backup_dir(self) -> str:
        return f"{self.backups.dir or self.slice_defaults.backup_dir}/{self.instance}"

    def backup_data_host(self, s: Slice) -> str:
        """The host whose backup agent archives slice `s`'s data directory: the host it runs on
        (a `target:` file's one host). Its database is dumped on the database host."""
        return s.host if self.multi_host else self.database_host.name

    def backup_lock(self, slice_id: int | None) -> str:
        """The flock a backup, a restore and the destroy of one slice (None: the gateway) share."""
        return f"/run/lock/sliceops-{self.instance}-backup-{'gateway' if slice_id is None else slice_id}.lock"

    @property
    def backup_agent(self) -> str:
        """The backup agent's folder on the target (its entry point: sliceops-backup)."""
        return f"{self.share_dir}/backup"

    @property
    def backup_config(self) -> str:
        return f"{self.etc_dir}/backup.json"

    @property
    def backup_state(self) -> str:
        """Results of the backup runs (JSON), readable by the monitor's group."""
        return f"/var/lib/sliceops/{self.instance}/backups.json"

    @property
    def backup_ssh_dir(self) -> str:
        """The agent's SSH identity and the copy host's known key (root only; backups.copy_to)."""
        return f"{self.etc_dir}/backup-ssh"

    @property
    def backup_copy_identity(self) -> str:
        return f"{self.backup_ssh_dir}/id_ed25519"

    @property
    def backup_copy_known_hosts(self) -> str:
        return f"{self.backup_ssh_dir}/known_hosts"

    @property
    def backup_service(self) -> str:
        return f"sliceops-backup-{self.instance}"

    def backup_command(self, *args: str) -> list[str]:
        """argv running the backup agent on the target (root)."""
        return ["/usr/bin/python3", f"{self.backup_agent}/sliceops-backup", "--config", self.backup_config, *args]

    def slice_cgroup_unit(self, slice_id: int) -> str:
        """The systemd slice unit a slice's container runs in (systemd cgroup driver)."""
        return f"sliceops-{self.instance}-s{slice_id}.slice"

    def slice_cgroup(self, slice_id: int) -> str:
        """The slice's cgroup below each hierarchy root, where the monitor finds its container:
        the unit's path as systemd nests it (a-b-c.slice in a.slice/a-b.slice), used verbatim
        with the cgroupfs driver too, so the path is the same under either driver."""
        return f"sliceops.slice/sliceops-{self.instance}.slice/{self.slice_cgroup_unit(slice_id)}"

    @property
    def firewall_input_chain(self) -> str:
        """iptables chain for the slice network's traffic to the host (names: 28 characters at most)."""
        return f"SLICEOPS-IN-{self.instance}"

    @property
    def firewall_forward_chain(self) -> str:
        """iptables chain for the slice network's forwarded traffic, jumped to from DOCKER-USER."""
        return f"SLICEOPS-FW-{self.instance}"

    @property
    def firewall_unit(self) -> str:
        """The service that puts the firewall back at boot, before the Docker engine."""
        return f"sliceops-firewall-{self.instance}"

    @property
    def monitor_service(self) -> str:
        return f"{MONITOR_USER}-{self.instance}"

    @property
    def monitor_user(self) -> str:
        """The monitor's system user; its group owns the slice data directories."""
        return MONITOR_USER

    @property
    def monitor_role(self) -> str:
        return MONITOR_ROLE

    @property
    def template_database(self) -> str:
        return TEMPLATE_DB

    @property
    def opt_dir(self) -> str:
        """Where the monitor's code and virtualenv live on the target."""
        return f"/opt/sliceops/{self.instance}"

    @property
    def slice_ids(self) -> tuple[int, ...]:
        return tuple(s.id for s in self.slices)

    def kept_slices(self) -> tuple[Slice, ...]:
        """Slices whose database and credentials must exist (all but those being destroyed)."""
        return tuple(s for s in self.slices if s.status != DESTROYING)

    def slice(self, slice_id: int) -> Slice:
        return next(s for s in self.slices if s.id == slice_id)


_SIZE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_bytes(size: str) -> int:
    """Bytes in a Docker-style size the schema accepts ("256m", "1g", "512k", "100b")."""
    text = str(size).strip().lower()
    if text[-1:] in _SIZE_UNITS:
        return int(float(text[:-1]) * _SIZE_UNITS[text[-1]])
    return int(text)


MIB = 1024 * 1024


def slice_port(slice_id: int, base: int, step: int) -> int:
    """Seed 000's sequential ports: 5001, 5003, ...; a slice's port depends on its id only."""
    return base + step * (slice_id - 1)


# --------------------------------------------------------------------------- loading


class _Composer:
    """Builds plain Python data from YAML nodes while remembering each path's line.

    Scalars go through PyYAML's safe constructor (so `~`, empty values, ints and booleans
    mean what YAML says); merge keys (`<<: *anchor`) are flattened first; an unsupported
    tag is a problem to report, never code to run.
    """

    def __init__(self, path: str):
        self.path = path
        self.lines: dict[tuple, int] = {}
        self.problems: list[tuple[int, str]] = []
        self.unbuilt: set[tuple] = set()  # paths already reported; the schema need not repeat them
        self._constructor = yaml.constructor.SafeConstructor()

    def _problem(self, node: yaml.Node, at: tuple, message: str) -> None:
        line = node.start_mark.line + 1
        self.problems.append((line, f"{self.path}:{line}: {_dotted(at)}: {message}"))

    def _scalar(self, node: yaml.Node, at: tuple) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self._problem(node, at, f"unsupported YAML ({exc.problem})")
            self.unbuilt.add(at)
            return None

    def build(self, node: yaml.Node, at: tuple = ()) -> Any:
        self.lines[at] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            # Keys written here may override keys merged in (`<<: *base`); only two written
            # here are a duplicate.
            own = {id(k) for k, _ in node.value}
            try:
                self._constructor.flatten_mapping(node)
            except yaml.constructor.ConstructorError as exc:
                self._problem(node, at, f"unsupported YAML ({exc.problem})")
                self.unbuilt.add(at)
                return {}
            out: dict = {}
            written: set = set()
            for key_node, value_node in node.value:
                key = self._scalar(key_node, at)
                if isinstance(key, (list, dict)):
                    self._problem(key_node, at, "a mapping key must be a plain value")
                    continue
                if id(key_node) in own:
                    if key in written:
                        self._problem(key_node, at + (key,), f"duplicate key {key!r}")
                    written.add(key)
                out[key] = self.build(value_node, at + (key,))
                self.lines[at + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, at + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, at)


# Values a file may expand to through its aliases: 200 slices with every key set are ~2,000;
# a "billion laughs" file expands to 10^9 from a few hundred bytes.
MAX_EXPANDED_NODES = 100_000


def _bound_aliases(shown: str, root: yaml.Node) -> None:
    """Refuse a node graph whose aliases would expand past MAX_EXPANDED_NODES, or that refers
    to itself, by counting (each shared node once, memoised) before anything is built."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            line = node.start_mark.line + 1
            raise InventoryError([f"{shown}:{line}: (top level): a YAML alias refers to a node containing it"])
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                line = node.start_mark.line + 1
                raise InventoryError([
                    f"{shown}:{line}: (top level): YAML aliases here expand to more than "
                    f"{MAX_EXPANDED_NODES} values; refused without expanding them"
                ])
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def _dotted(at: tuple) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _is_strict_int(checker, value) -> bool:
    # YAML's 1.0 and true must not pass as slice id 1.
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_CHECKER = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_int)
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPE_CHECKER)


def _describe(error: jsonschema.ValidationError) -> list[tuple[tuple, str]]:
    """Turn one schema error into (path, message) pairs that name key and value."""
    at = tuple(error.absolute_path)
    value = error.instance
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in value if k not in allowed]
        return [(at + (k,), f"unknown key {k!r} (allowed: {', '.join(allowed)})") for k in extra]
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return [(at, f"missing required key {k!r}") for k in missing]
    if kind == "type":
        return [(at, f"{value!r} is not of type {error.validator_value}")]
    if kind == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return [(at, f"{value!r} is not one of: {allowed}")]
    if kind == "pattern":
        hint = error.schema.get("description", f"pattern {error.validator_value}")
        return [(at, f"{value!r} is not valid: {hint.split('. ')[0].rstrip('.')}")]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return [(at, f"{value!r} is out of range (must be {word} {error.validator_value})")]
    return [(at, f"{value!r}: {error.message}")]


def load(path: str | Path = DEFAULT_INVENTORY) -> Inventory:
    """Read, validate and build the inventory; raise InventoryError listing every problem."""
    shown = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise InventoryError([f"{shown}: file not found"]) from None
    except OSError as exc:
        raise InventoryError([f"{shown}: cannot read: {exc.strerror}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError([f"{shown}:{line} malformed YAML: {problem}"]) from None
    if node is None:
        raise InventoryError([f"{shown}: the file is empty (expected keys: target, slices)"])
    _bound_aliases(shown, node)
    composer = _Composer(shown)
    data = composer.build(node)
    if not isinstance(data, dict):
        line = node.start_mark.line + 1
        raise InventoryError([
            f"{shown}:{line}: (top level): expected a mapping with keys target and slices, got {type(data).__name__}"
        ])

    located: list[tuple[int, str]] = list(composer.problems)

    def report(at: tuple, message: str) -> None:
        line = composer.lines.get(at) or composer.lines.get(at[:-1]) or 1
        located.append((line, f"{shown}:{line}: {_dotted(at)}: {message}"))

    for error in _Validator(schema()).iter_errors(data):
        for at, message in _describe(error):
            if at not in composer.unbuilt:
                report(at, message)

    _check_cross_entry(data, report)
    _check_migrations_folder(data, Path(path).parent, report)
    checks.check(data, lambda name: _section(data, name), report)
    problems = [message for _, message in sorted(located, key=lambda p: p[0])]
    if problems:
        raise InventoryError(problems)
    return _build(shown, data, composer.lines)


def _section(data: dict, name: str) -> dict:
    """A section with the schema's defaults under what the file gives ({} if malformed)."""
    given = data.get(name, {})
    if given is None:
        given = {}
    return {**_defaults(name), **given} if isinstance(given, dict) else {}


def _int_or(value, fallback):
    return value if _is_strict_int(None, value) else fallback


def _check_cross_entry(data: dict, report) -> None:
    """Rules that span entries; entries already reported as malformed are passed over."""
    pg = data.get("postgres") if isinstance(data.get("postgres"), dict) else {}
    pg_port = _int_or(pg.get("port"), _defaults("postgres")["port"])
    sd_given = data.get("slice_defaults") if isinstance(data.get("slice_defaults"), dict) else {}
    base = _int_or(sd_given.get("port_base"), _defaults("slice_defaults")["port_base"])
    step = _int_or(sd_given.get("port_step"), _defaults("slice_defaults")["port_step"])
    seen_ids: dict[int, int] = {}
    seen_ports: dict[int, int] = {}
    entries = data.get("slices") if isinstance(data.get("slices"), list) else []
    for i, entry in enumerate(entries):
        id_max = schema()["properties"]["slices"]["items"]["properties"]["id"]["maximum"]
        if not isinstance(entry, dict) or not _is_strict_int(None, entry.get("id")) or not 1 <= entry["id"] <= id_max:
            continue  # the schema already reported it
        if "port" in entry and not (_is_strict_int(None, entry["port"]) and 1024 <= entry["port"] <= 65535):
            continue  # the schema already reported it
        sid = entry["id"]
        if sid in seen_ids:
            report(("slices", i, "id"), f"{sid!r} is a duplicate (slices[{seen_ids[sid]}] has the same id)")
            continue
        seen_ids[sid] = i
        port = entry.get("port", slice_port(sid, base, step))
        where = ("slices", i, "port") if "port" in entry else ("slices", i, "id")
        if not 1024 <= port <= 65535:
            report(where, f"port {port} of slice {sid} is out of range 1024-65535")
        elif port == pg_port:
            report(where, f"port {port} of slice {sid} is PostgreSQL's port")
        elif port in seen_ports:
            other = entries[seen_ports[port]]["id"]
            report(where, f"port {port} of slice {sid} is already used by slice {other}")
        else:
            seen_ports[port] = i
        disk = entry.get("disk")
        if isinstance(disk, str) and re.match(r"^[0-9]+[mg]$", disk) and size_bytes(disk) < MIB:
            report(("slices", i, "disk"), f"{disk!r} is below the smallest quota (1m)")
        if disk is not None and sd_given.get("disk") is False:
            report(("slices", i, "disk"), f"{disk!r} needs slice_defaults.disk (false here: no quotas)")
        if entry.get("force") is True and entry.get("status") != DESTROYING:
            report(("slices", i, "force"), f"{entry['force']!r} is only meaningful with status: destroying")
    _check_metrics_port(data, pg_port, seen_ports, entries, report)
    _check_copy_to(data, report)
    disk = sd_given.get("disk")
    if disk is True:
        report(("slice_defaults", "disk"), "true is not valid: a size (2g) or false (no quota)")
    elif isinstance(disk, str) and re.match(r"^[0-9]+[mg]$", disk) and size_bytes(disk) < MIB:
        report(("slice_defaults", "disk"), f"{disk!r} is below the smallest quota (1m)")
    docker = data.get("docker") if isinstance(data.get("docker"), dict) else {}
    subnet = docker.get("subnet")
    subnet_pattern = schema()["properties"]["docker"]["properties"]["subnet"]["pattern"]
    if isinstance(subnet, str) and re.match(subnet_pattern, subnet):
        try:
            ipaddress.ip_network(subnet)
        except ValueError as exc:
            report(("docker", "subnet"), f"{subnet!r} is not a network address ({exc})")


def _check_copy_to(data: dict, report) -> None:
    backups = data.get("backups") if isinstance(data.get("backups"), dict) else {}
    url = backups.get("copy_to")
    if not isinstance(url, str):
        return
    port = re.match(r"^ssh://[^@/]+@[^:/]+:([0-9]+)/", url)
    if port and not 0 < int(port[1]) <= 65535:
        report(("backups", "copy_to"), f"{url!r}: port {port[1]} is not a TCP port (1-65535)")


def _check_metrics_port(data: dict, pg_port: int, slice_ports: dict, entries: list, report) -> None:
    monitor = data.get("monitor") if isinstance(data.get("monitor"), dict) else {}
    port = monitor.get("metrics_port")
    if not _is_strict_int(None, port) or not 0 < port <= 65535:
        return  # off, or the schema already reported it
    at = ("monitor", "metrics_port")
    if port < 1024:
        report(at, f"{port!r} is a privileged port (use 0 for off, or 1024-65535)")
    elif port == pg_port:
        report(at, f"{port!r} is PostgreSQL's port")
    elif port in slice_ports:
        report(at, f"{port!r} is the port of slice {entries[slice_ports[port]]['id']}")


def _check_migrations_folder(data: dict, base: Path, report) -> None:
    """slice_defaults.migrations must name a folder of well-named migrations (one line each)."""
    sd = data.get("slice_defaults") if isinstance(data.get("slice_defaults"), dict) else {}
    value = sd.get("migrations")
    if isinstance(value, str) and value:
        for problem in migrations.problems(base / value):
            report(("slice_defaults", "migrations"), f"{value!r}: {problem}")


def _build(shown: str, data: dict, lines: dict) -> Inventory:
    pg = {**_defaults("postgres"), **data.get("postgres", {})}
    gw = {**_defaults("gateway"), **data.get("gateway", {})}
    sd = {**_defaults("slice_defaults"), **data.get("slice_defaults", {})}
    dk = {**_defaults("docker"), **data.get("docker", {})}
    mo = {**_defaults("monitor"), **data.get("monitor", {})}
    bk = {**_defaults("backups"), **data.get("backups", {})}
    given_hosts = data.get("hosts") or {}
    host_list = tuple(
        Host(name=n, target=h["target"], address=h.get("address"), database=h.get("database", False))
        for n, h in given_hosts.items()
    )
    target = data["target"] if "target" in data else next(h.target for h in host_list if h.database)
    only = host_list[0].name if len(host_list) == 1 else names.implicit_host_name(target)
    slices = tuple(
        sorted(
            (
                Slice(
                    id=e["id"],
                    port=e.get("port", slice_port(e["id"], sd["port_base"], sd["port_step"])),
                    status=e.get("status", ACTIVE),
                    force=e.get("force", False),
                    memory=e.get("memory", sd["memory"]),
                    cpus=float(e.get("cpus", sd["cpus"])),
                    pids=e.get("pids", sd["pids"]),
                    disk=e.get("disk", sd["disk"]) if sd["disk"] is not False else None,
                    host=e.get("host", only),
                )
                for e in data["slices"] or []
            ),
            key=lambda s: s.id,
        )
    )
    return Inventory(
        path=shown,
        target=target,
        host_list=host_list,
        ssh_key=data.get("ssh_key"),
        ssh_known_hosts=data.get("ssh_known_hosts"),
        instance=data.get("instance", schema()["properties"]["instance"]["default"]),
        postgres=PostgresSettings(**{**pg, "listen_addresses": tuple(pg["listen_addresses"])}),
        gateway=GatewaySettings(**gw),
        slice_defaults=SliceDefaults(**{
            **sd,
            "cpus": float(sd["cpus"]),
            "migrations": str((Path(shown).parent / sd["migrations"]).resolve()) if sd.get("migrations") else None,
        }),
        docker=DockerSettings(**dk),
        monitor=MonitorSettings(**{**mo, "health_timeout": float(mo["health_timeout"])}),
        slices=slices,
        backups=BackupSettings(**bk),
        lines=lines,
    )
