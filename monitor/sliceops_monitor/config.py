"""The monitor's JSON configuration (rendered by the deploy): loaded once, validated
completely, and handed around as frozen dataclasses. Every key: monitor/README.md."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

DEFAULT_PATH = "/etc/sliceops/main/monitor.json"
INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]+
# The inventory's host names (sliceops.names.HOST_NAME), or a target's lowercased hostname
# (a `target:` file's one host), which may hold an underscore.
HOST_RE = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$")
CONTAINER_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
# A cgroup path relative to a hierarchy root: "/"-separated names, none of them "." or "..".
CGROUP_RE = re.compile(r"^(?!.*(^|/)\.{1,2}(/|$))[A-Za-z0-9_.@:-]+(/[A-Za-z0-9_.@:-]+)*$")
SLICE_STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class DatabaseConfig:
    host: str = "/var/run/postgresql"
    port: int = 5432
    dbname: str = "wank_saas"
    user: str = "sliceops_monitor"
    password_file: str | None = None
    application_name: str = "sliceops-monitor"
    # A slice host's monitor reaches the database host over TCP: verify-full against the
    # instance's CA (None: libpq's defaults, as over the local socket).
    sslmode: str | None = None
    sslrootcert: str | None = None
    connect_timeout: int = 5
    statement_timeout: float = 10.0
    prune_timeout: float = 300.0
    retry_deadline: float = 10.0


@dataclass(frozen=True)
class SliceConfig:
    id: int
    port: int
    container: str
    cgroup: str
    data_dir: str
    status: str = "active"
    disk_quota_bytes: int | None = None  # for the metrics endpoint; None: no quota
    # False: another host's backup agent keeps its data part (a move to here has not finished),
    # so this host serves no backup time for it.
    backup: bool = True

    @property
    def in_service(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class DumpedSlice:
    """A slice that runs on another host of the fleet and whose backup part this host's agent
    takes: its database's dump (backup_dumps, the database host), or its data directory while
    its move away from here has not finished (backup_data). That part's backup time is served here."""

    id: int
    container: str


@dataclass(frozen=True)
class MonitorConfig:
    instance: str = "main"
    # The inventory's name of the host this monitor runs on: the label of its
    # gateway.server_telemetry rows (None: unlabelled, a configuration from before fleets).
    host: str | None = None
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    interval: float = 60.0
    retention_days: float = 7.0
    prune_interval: float = 3600.0
    prune: bool = True  # False on a slice host: the database host's monitor prunes
    # The database host's monitor records every slice database's size every disk_interval
    # (sliceops.record_database_sizes(), sql/gateway/0006) for `sliceops status`.
    database_sizes: bool = False
    health_timeout: float = 2.0
    health_workers: int = 64
    cgroup_root: str = "/sys/fs/cgroup"
    disk_path: str = "/"
    disk_interval: float = 300.0
    buffer_cycles: int = 120
    metrics_port: int = 0  # Prometheus text exposition on 127.0.0.1:<port>; 0: off
    backup_state: str | None = None  # the backup agent's results file, shown by the metrics
    slices: tuple[SliceConfig, ...] = ()
    # The database host of a fleet: the slices elsewhere whose dumps its agent takes.
    backup_dumps: tuple[DumpedSlice, ...] = ()
    # A slice host of a fleet: the slices that run elsewhere whose data part its agent archives.
    backup_data: tuple[DumpedSlice, ...] = ()
    path: str = ""

    @property
    def in_service(self) -> tuple[SliceConfig, ...]:
        return tuple(s for s in self.slices if s.in_service)


class _Checker:
    """Collects every problem instead of stopping at the first (patroni validator style)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def number(self, obj: dict, key: str, where: str, default: Any, *, integer: bool = False,
               minimum: float | None = None, maximum: float | None = None, exclusive_min: bool = False):
        if key not in obj:
            return default
        value = obj[key]
        name = f"{where}{key}"
        # bool is an int in Python; `"interval": true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            self.problem(name, f"must be {'an integer' if integer else 'a number'}, got {json.dumps(value)}")
            return default
        if minimum is not None and (value <= minimum if exclusive_min else value < minimum):
            self.problem(name, f"must be {'greater than' if exclusive_min else 'at least'} {minimum}, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.problem(name, f"must be at most {maximum}, got {value}")
            return default
        return value

    def string(self, obj: dict, key: str, where: str, default: Any, *, required: bool = False,
               pattern: re.Pattern | None = None, absolute: bool = False, choices: tuple | None = None):
        name = f"{where}{key}"
        if key not in obj:
            if required:
                self.problem(name, "is required")
            return default
        value = obj[key]
        if not isinstance(value, str) or not value:
            self.problem(name, f"must be a non-empty string, got {json.dumps(value)}")
            return default
        if pattern is not None and not pattern.match(value):
            self.problem(name, f"{value!r} does not match {pattern.pattern}")
            return default
        if absolute and not value.startswith("/"):
            self.problem(name, f"must be an absolute path, got {value!r}")
            return default
        if choices is not None and value not in choices:
            self.problem(name, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def unknown(self, obj: dict, known: set[str], where: str) -> None:
        # A misspelt key would otherwise silently fall back to its default.
        for key in sorted(set(obj) - known):
            self.problem(f"{where}{key}", "unknown key")


_TOP_KEYS = {
    "instance", "host", "database", "interval", "retention_days", "prune_interval", "prune", "database_sizes",
    "health_timeout",
    "health_workers", "cgroup_root", "disk_path", "disk_interval",
    "buffer_cycles", "metrics_port", "backup_state", "slices", "backup_dumps",
    "backup_data",
}
_DB_KEYS = {
    "host", "port", "dbname", "user", "password_file", "application_name", "connect_timeout",
    "statement_timeout", "prune_timeout", "retry_deadline", "sslmode", "sslrootcert",
}
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SLICE_KEYS = {"id", "port", "container", "cgroup", "data_dir", "status", "disk_quota_bytes", "backup"}
_DUMP_KEYS = {"id", "container"}


def key_lines(text: str) -> dict[str, int]:
    """Line of every key and list item of a valid JSON text, by path ("slices[2].port").

    The json module does not report positions, so walk the text: objects and
    arrays by hand, scalars with raw_decode.
    """
    decoder = json.JSONDecoder()
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]
    lines: dict[str, int] = {}

    def line(pos: int) -> int:
        return bisect.bisect_right(newlines, pos - 1) + 1

    def ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def value(i: int, path: str) -> int:
        i = ws(i)
        if text[i] == "{":
            i = ws(i + 1)
            if text[i] == "}":
                return i + 1
            while True:
                i = ws(i)
                key, i = json.decoder.scanstring(text, i + 1)
                sub = f"{path}.{key}" if path else key
                lines.setdefault(sub, line(i))
                i = value(ws(i) + 1, sub)  # past the ':'
                i = ws(i)
                if text[i] == "}":
                    return i + 1
                i += 1  # ','
        if text[i] == "[":
            i = ws(i + 1)
            if text[i] == "]":
                return i + 1
            n = 0
            while True:
                i = ws(i)
                lines.setdefault(f"{path}[{n}]", line(i))
                i = ws(value(i, f"{path}[{n}]"))
                if text[i] == "]":
                    return i + 1
                i, n = i + 1, n + 1
        return decoder.raw_decode(text, i)[1]

    value(0, "")
    return lines


_LAST_PART = re.compile(r"(\.[^.\[]+|\[\d+\])$")


def _with_lines(problems: list[str], text: str) -> list[str]:
    try:
        lines = key_lines(text)
    except (ValueError, IndexError):
        return problems
    out = []
    for problem in problems:
        key = problem.split(": ", 1)[0]
        # A missing key is reported at the object that lacks it.
        while key and key not in lines:
            last = _LAST_PART.search(key)
            key = key[:last.start()] if last else ""
        out.append(f"line {lines[key]}: {problem}" if key else problem)
    return out


def parse(data: Any, path: str = "<config>", text: str | None = None) -> MonitorConfig:
    """Validate a decoded JSON document; ConfigError lists every problem found (with lines if text is given)."""
    c = _Checker()
    if not isinstance(data, dict):
        raise ConfigError(path, ["the top level must be a JSON object"])
    c.unknown(data, _TOP_KEYS, "")
    d = MonitorConfig()
    instance = c.string(data, "instance", "", d.instance, pattern=INSTANCE_RE)
    interval = c.number(data, "interval", "", d.interval, minimum=0, exclusive_min=True)
    health_timeout = c.number(data, "health_timeout", "", d.health_timeout, minimum=0, exclusive_min=True)
    if isinstance(interval, (int, float)) and isinstance(health_timeout, (int, float)) and health_timeout >= interval:
        c.problem("health_timeout", f"must be shorter than interval ({interval}), got {health_timeout}")

    database = _parse_database(c, data.get("database", {}), instance)
    slices = _parse_slices(c, data.get("slices", []))
    seen = {s.id: "slices" for s in slices}
    backup_dumps = _parse_dumps(c, data.get("backup_dumps", []), "backup_dumps", seen)
    backup_data = _parse_dumps(c, data.get("backup_data", []), "backup_data", seen)

    config = MonitorConfig(
        instance=instance,
        host=c.string(data, "host", "", d.host, pattern=HOST_RE),
        database=database,
        interval=float(interval),
        retention_days=float(c.number(data, "retention_days", "", d.retention_days, minimum=0, exclusive_min=True)),
        prune_interval=float(c.number(data, "prune_interval", "", d.prune_interval, minimum=0, exclusive_min=True)),
        prune=_boolean(c, data, "prune", d.prune),
        database_sizes=_boolean(c, data, "database_sizes", d.database_sizes),
        health_timeout=float(health_timeout),
        health_workers=c.number(data, "health_workers", "", d.health_workers, integer=True, minimum=1, maximum=1024),
        cgroup_root=c.string(data, "cgroup_root", "", d.cgroup_root, absolute=True),
        disk_path=c.string(data, "disk_path", "", d.disk_path, absolute=True),
        disk_interval=float(c.number(data, "disk_interval", "", d.disk_interval, minimum=0, exclusive_min=True)),
        buffer_cycles=c.number(data, "buffer_cycles", "", d.buffer_cycles, integer=True, minimum=1),
        metrics_port=c.number(data, "metrics_port", "", d.metrics_port, integer=True, minimum=0, maximum=65535),
        backup_state=c.string(data, "backup_state", "", d.backup_state, absolute=True),
        slices=slices,
        backup_dumps=backup_dumps,
        backup_data=backup_data,
        path=path,
    )
    if c.problems:
        raise ConfigError(path, _with_lines(c.problems, text) if text is not None else c.problems)
    return config


def _boolean(c: _Checker, data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        c.problem(key, f"must be true or false, got {json.dumps(value)}")
        return default
    return value


def _parse_database(c: _Checker, raw: Any, instance: str) -> DatabaseConfig:
    w = "database."
    if not isinstance(raw, dict):
        c.problem("database", "must be an object")
        return DatabaseConfig()
    c.unknown(raw, _DB_KEYS, w)
    d = DatabaseConfig()
    password_file = raw.get("password_file")
    if password_file is not None:
        password_file = c.string(raw, "password_file", w, None, absolute=True)
    sslmode = c.string(raw, "sslmode", w, None, choices=_SSLMODES)
    sslrootcert = raw.get("sslrootcert")
    if sslrootcert is not None:
        sslrootcert = c.string(raw, "sslrootcert", w, None, absolute=True)
    return DatabaseConfig(
        host=c.string(raw, "host", w, d.host),
        port=c.number(raw, "port", w, d.port, integer=True, minimum=1, maximum=65535),
        dbname=c.string(raw, "dbname", w, d.dbname),
        user=c.string(raw, "user", w, d.user),
        password_file=password_file,
        sslmode=sslmode,
        sslrootcert=sslrootcert,
        application_name=c.string(raw, "application_name", w, f"sliceops-monitor-{instance}"),
        # libpq takes whole seconds and treats anything below 2 as 2.
        connect_timeout=c.number(raw, "connect_timeout", w, d.connect_timeout, integer=True, minimum=2),
        statement_timeout=float(c.number(raw, "statement_timeout", w, d.statement_timeout, minimum=0, exclusive_min=True)),
        prune_timeout=float(c.number(raw, "prune_timeout", w, d.prune_timeout, minimum=0, exclusive_min=True)),
        retry_deadline=float(c.number(raw, "retry_deadline", w, d.retry_deadline, minimum=0)),
    )


def _objects(c: _Checker, raw: Any, name: str, known: set[str], required: tuple[str, ...]):
    """Each object of the list `name` as (index, its key prefix, the object, the problems
    count before it), its unknown and missing keys reported; what is not one, reported."""
    if not isinstance(raw, list):
        c.problem(name, "must be a list")
        return
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            c.problem(f"{name}[{i}]", "must be an object")
            continue
        before = len(c.problems)
        w = f"{name}[{i}]."
        c.unknown(item, known, w)
        for key in required:
            if key not in item:
                c.problem(f"{w}{key}", "is required")
        yield i, w, item, before


def _parse_slices(c: _Checker, raw: Any) -> tuple[SliceConfig, ...]:
    slices: list[SliceConfig] = []
    seen: dict[str, dict[Any, int]] = {"id": {}, "port": {}, "container": {}, "cgroup": {}}
    for i, w, item, before in _objects(c, raw, "slices", _SLICE_KEYS, ("id", "port", "container", "cgroup", "data_dir")):
        sid = c.number(item, "id", w, None, integer=True, minimum=1)
        port = c.number(item, "port", w, None, integer=True, minimum=1, maximum=65535)
        container = c.string(item, "container", w, None, pattern=CONTAINER_RE)
        cgroup = c.string(item, "cgroup", w, None, pattern=CGROUP_RE)
        data_dir = c.string(item, "data_dir", w, None, absolute=True)
        status = c.string(item, "status", w, "active", choices=SLICE_STATUSES)
        quota = c.number(item, "disk_quota_bytes", w, None, integer=True, minimum=1) \
            if item.get("disk_quota_bytes") is not None else None
        backup = item.get("backup", True)
        if not isinstance(backup, bool):
            c.problem(f"{w}backup", f"must be true or false, got {json.dumps(backup)}")
        for key, value in (("id", sid), ("port", port), ("container", container), ("cgroup", cgroup)):
            if value is None:
                continue
            if value in seen[key]:
                c.problem(f"{w}{key}", f"{value!r} is also used by slices[{seen[key][value]}]")
            else:
                seen[key][value] = i
        if len(c.problems) == before:
            slices.append(SliceConfig(id=sid, port=port, container=container, cgroup=cgroup,
                                      data_dir=data_dir, status=status, disk_quota_bytes=quota, backup=backup))
    return tuple(slices)


def _parse_dumps(c: _Checker, raw: Any, name: str, seen: dict[int, str]) -> tuple[DumpedSlice, ...]:
    """The list `name` of DumpedSlice; an id already in `seen` (slices, or an earlier list:
    {id: where}) is a problem, each new one added to it."""
    out: list[DumpedSlice] = []
    for i, w, item, before in _objects(c, raw, name, _DUMP_KEYS, ("id", "container")):
        sid = c.number(item, "id", w, None, integer=True, minimum=1)
        container = c.string(item, "container", w, None, pattern=CONTAINER_RE)
        if sid is not None and sid in seen:
            c.problem(f"{w}id", f"{sid} is also listed in {seen[sid]}")
        elif sid is not None:
            seen[sid] = f"{name}[{i}]"
        if len(c.problems) == before:
            out.append(DumpedSlice(id=sid, container=container))
    return tuple(out)


def load(path: str) -> MonitorConfig:
    """Read and validate the config file at path."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(path, [f"line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"]) from exc
    return parse(data, path, text)
