"""The monitor service: its own system user and virtualenv, a rendered configuration, and a
systemd unit or LSB init script; reloaded (SIGHUP) when its configuration changed, restarted
only when its code or unit did."""

from __future__ import annotations

import json

from pyinfra.operations import files, server

from sliceops import moves
from sliceops.bundle import digest, tarball
from sliceops.inventory import ACTIVE, MONITOR_USER, SUSPENDED, Inventory
from sliceops.names import host_monitor_role
from sliceops.operations import move, service, system
from sliceops.operations.postgres import monitors as host_monitors
from sliceops.operations.util import changed
from sliceops.tasks.boot import boot_entry
from sliceops.shell import command

USER = MONITOR_USER


def database_config(inv: Inventory, here: str) -> dict:
    """The database host's monitor: the local socket, peer authentication. Another slice
    host's: the database host's address over TLS (verify-full against the instance's CA),
    its own role and password file; it does not prune (the database host's monitor does)."""
    local = {
        "host": "/var/run/postgresql",
        "port": inv.postgres.port,
        "dbname": inv.gateway.database,
        "user": inv.monitor_role,
        "application_name": inv.monitor_service,
    }
    db = inv.database_host
    if here == db.name or not db.address:
        return local
    return {**local, "host": db.address, "user": host_monitor_role(here), "password_file": inv.monitor_password_file,
            "sslmode": "verify-full", "sslrootcert": inv.pg_ca_file}


def config(inv: Inventory, host_name: str | None = None, whole: Inventory | None = None,
           rows: dict[int, dict] | None = None) -> dict:
    """The monitor's JSON configuration (keys: monitor/README.md) on host `host_name` (default:
    the database host): it watches the slices that run there and labels its server rows so.
    `whole`: the fleet, when `inv` is this host's view (Inventory.for_host): the database host
    serves the dumps of the slices elsewhere. `rows`: the gateway's rows the deploy read (as
    the backup agents' configurations get them): a slice host serves the backup time of the
    data parts its agent keeps (moves.data_hosts), a slice whose move has not finished on its
    old host and not on the new one."""
    here = host_name or inv.database_host.name
    database = database_config(inv, here)
    whole = whole or inv
    local = {s.id for s in whole.slices_on(here)}
    kept = {s.id for s in whole.slices if s.status in (ACTIVE, SUSPENDED)}
    on_database_host = here == whole.database_host.name
    # Where each slice's data part is; the database host's agent dumps every slice besides.
    data_at = moves.data_hosts(whole, rows)
    return {
        "instance": inv.instance,
        "host": here,
        "database": database,
        # The database host's monitor prunes every host's rows and records every slice
        # database's size (for `sliceops status`); a slice host's does neither.
        **({"prune": False} if database["user"] != inv.monitor_role else {"database_sizes": True}),
        "interval": inv.monitor.interval,
        "retention_days": inv.monitor.retention_days,
        "prune_interval": inv.monitor.prune_interval,
        "health_timeout": inv.monitor.health_timeout,
        "cgroup_root": "/sys/fs/cgroup",
        "disk_path": "/",
        "metrics_port": inv.monitor.metrics_port,
        "backup_state": inv.backup_state,
        "slices": [
            {
                "id": s.id,
                "port": s.port,
                "container": inv.container_name(s.id),
                "cgroup": inv.slice_cgroup(s.id),
                "data_dir": inv.slice_data_dir(s.id),
                "status": ACTIVE if s.in_service else SUSPENDED,
                **({"disk_quota_bytes": s.disk_quota_bytes} if s.disk_quota_bytes else {}),
                # Moving here, not there yet: its old host's monitor serves its data part's time.
                **({} if on_database_host or data_at[s.id] == here else {"backup": False}),
            }
            for s in inv.slices_on(here)
            if s.id in kept
        ],
        # The database host's agent dumps every slice's database: the dumps of the slices that
        # run elsewhere get their backup metric here too (their hosts' monitors serve the data
        # parts), so a failed dump alerts wherever the slice runs.
        **({"backup_dumps": [
            {"id": s.id, "container": whole.container_name(s.id)}
            for s in whole.slices
            if s.id in kept and s.id not in local
        ]} if on_database_host and whole.multi_host else {}),
        # A slice host keeps the data part of a slice moving away from it until the move has
        # succeeded: its backup time is served here (absent when no such move is pending).
        **({"backup_data": data} if not on_database_host and (data := [
            {"id": s.id, "container": whole.container_name(s.id)}
            for s in whole.slices
            if s.id in kept and s.id not in local and data_at[s.id] == here
        ]) else {}),
    }


def converge(inv: Inventory, here: str | None = None, whole: Inventory | None = None,
             rows: dict[int, dict] | None = None) -> None:
    """The monitor of host `here` (default: the database host; every host runs one); `inv`:
    this host's view of the inventory, `whole`: the fleet, `rows`: the gateway's rows the
    deploy read (see config)."""
    base = inv.opt_dir
    venv = f"{base}/monitor-venv"
    name = inv.monitor_service
    config_path = f"{inv.etc_dir}/monitor.json"
    # Debian's own psycopg and psutil: the venv sees them (--system-site-packages), so the
    # install needs no package index and works on air-gapped hosts.
    system.packages(
        name="Install the monitor's runtime (python3-venv, psycopg, psutil, prometheus-client; "
             "setuptools and wheel to build it offline)",
        names=["python3-venv", "python3-psycopg", "python3-psutil", "python3-prometheus-client",
               "python3-setuptools", "python3-wheel"],
    )
    server.group(name=f"Create group {USER}", group=USER, system=True)
    # Container states and counters come from the slices' cgroups: no Docker API, whose
    # socket would let it `docker inspect` every slice's DATABASE_URL.
    # Out of the docker group: the engine's socket is root in all but name.
    system.system_user(
        name=f"Create system user {USER} (no docker group, no secrets)",
        user=USER, group=USER, home="/nonexistent", shell="/usr/sbin/nologin", not_in=("docker",),
    )
    source = tarball("monitor")
    files.put(name=f"Ship the monitor's code to {base}", src=source, dest=f"{base}/monitor.tar", mode="644")
    code = system.stamped(
        name=f"Install the monitor into {venv}",
        stamp_path=f"{venv}/.sliceops-source",
        digest=digest(source),
        what="the monitor's virtualenv",
        commands=[
            command("rm", "-rf", f"{base}/monitor-src", venv),
            command("mkdir", "-p", f"{base}/monitor-src"),
            command("tar", "-xf", f"{base}/monitor.tar", "-C", f"{base}/monitor-src"),
            # The distribution's interpreter: the one that sees python3-psycopg and python3-psutil.
            command("/usr/bin/python3", "-m", "venv", "--system-site-packages", venv),
            command(f"{venv}/bin/pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    f"{base}/monitor-src"),
        ],
    )
    for path in ("/etc/sliceops", inv.etc_dir):
        files.directory(name=f"Keep {path} readable (secrets/ stays root-only)", path=path, mode="755")
    # A slice host's monitor: its password made here; its role, grants and verifier on the
    # database host (before the service starts, so its first cycle can log in).
    host_monitors.credential(name=f"Make this slice host's monitor password ({inv.monitor_password_file})", inv=inv)
    host_monitors.roles(name="Give each slice host's monitor its role (its host's slices only)", inv=inv)
    conf = system.config_file(
        name=f"Configure the monitor ({config_path})",
        content=json.dumps(config(inv, here, whole, rows), indent=2) + "\n",
        dest=config_path, user="root", group=USER, mode="640",
    )
    variables = dict(
        instance=inv.instance, venv=venv, config_path=config_path, run_user=USER,
        log_dir=f"/var/log/sliceops/{name}", interval=inv.monitor.interval,
    )
    unit = boot_entry("monitor", name, variables)
    # A new configuration (a slice added, a limit changed) is taken by SIGHUP: the monitor
    # keeps its pid, its beat and its buffer, so telemetry has no gap. Only new code or a
    # new unit (what it reads once, at start) restarts it.
    service.running(
        name=f"Run the monitor ({name}; reloaded if its configuration changed, restarted if its code did)",
        service_name=name, subject="monitor",
        restart_if=changed(code=code, unit=unit),
        reload_if=changed(configuration=conf),
    )
    if here and whole is not None and whole.multi_host:
        # A move this deploy finished (slices.converge, before this) hands its data part's backup
        # metric to the new host's monitor at once, as it hands the agents' configurations over.
        move.monitor_follows(
            name="Keep the monitor's backup metrics with the data of the slices this deploy moved",
            inv=whole, here=here, rows=rows, dest=config_path, group=USER, service_name=name,
            render=lambda now: json.dumps(config(inv, here, whole, now), indent=2) + "\n",
        )
