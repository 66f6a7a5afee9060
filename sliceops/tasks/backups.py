"""Tenant backups: the agent that takes them on the target, its configuration, and the
nightly schedule (a systemd timer, or a cron entry where PID 1 is not systemd).

Every host of a fleet runs the agent: the database host's dumps every slice's database and the
gateway (and archives the data directories of slices that run there); a pure slice host's
archives the data directories of its own slices (`Inventory.backup_data_host`)."""

from __future__ import annotations

import io
import json

from pyinfra.operations import files

from sliceops import factcache, hostkeys
from sliceops.bundle import tarball
from sliceops.facts.host import InitSystem
from sliceops.inventory import Inventory
from sliceops.operations import service, system
from sliceops.operations.util import changed
from sliceops.paths import TEMPLATES
from sliceops.shell import command

STATE_GROUP = "sliceops-monitor"  # the monitor reads the results; the backups stay root's


def agent_config(inv: Inventory, here: str | None = None) -> dict:
    """The agent's configuration on host `here` (default: the database host) (backup/README.md):
    every name it uses, computed by the model. Only the parts this host keeps: the database
    host has the cluster, the gateway and every slice's database; a slice's data directory and
    container are named on the host it runs on."""
    b = inv.backups
    here = here or inv.database_host.name
    dumps = here == inv.database_host.name
    data = {s.id for s in inv.slices if inv.backup_data_host(s) == here}
    return {
        "instance": inv.instance,
        "cluster": {"version": inv.postgres.version, "name": inv.cluster, "port": inv.postgres.port} if dumps else None,
        "dir": inv.backup_dir,
        "keep_daily": b.keep_daily,
        "keep_weekly": b.keep_weekly,
        "drill": b.drill,
        "parallel": b.parallel,
        "state_file": inv.backup_state,
        "state_group": STATE_GROUP,
        "gateway": {"database": inv.gateway.database, "owner": inv.gateway.role, "lock": inv.backup_lock(None)}
        if dumps else None,
        "slice_owner": inv.slice_defaults.role,
        "copy": copy_config(inv, here),
        "slices": [
            {
                "id": s.id,
                "database": s.database if dumps else None,
                "data_dir": inv.slice_data_dir(s.id) if s.id in data else None,
                "container": inv.container_name(s.id) if s.id in data else None,
                "status": s.status,
                "lock": inv.backup_lock(s.id),
            }
            for s in inv.slices
            if dumps or s.id in data
        ],
    }


def copy_config(inv: Inventory, here: str | None = None) -> dict | None:
    """backups.copy_to for the agent on host `here` (default: the database host)
    (backup/sliceops_backup/offsite.py); None: no copies. A pure slice host's copies go to a
    folder of their own (`<path>/<instance>-<host>`): the far side prunes by what is in the
    folder, and one host's data parts must never count against another host's dumps."""
    parts = inv.backups.copy_parts
    if parts is None:
        return None
    user, hostname, port, path = parts
    folder = inv.instance if here in (None, inv.database_host.name) else f"{inv.instance}-{here}"
    return {"user": user, "host": hostname, "port": port, "path": f"{path.rstrip('/')}/{folder}",
            "identity": inv.backup_copy_identity, "known_hosts": inv.backup_copy_known_hosts}


def scheduled_command(inv: Inventory) -> str:
    """The exact command the timer or cron entry runs."""
    return command(*inv.backup_command("run", "--scheduled"))


def converge(inv: Inventory, here: str | None = None) -> None:
    """The agent on host `here` (default: the database host), with its part of every backup."""
    systemd = factcache.get(InitSystem) == "systemd"
    # The agent is stdlib Python; minimal hosts (debootstrap's minbase) have no python3.
    system.packages(
        name="Install the backup agent's runtime (python3" + (")" if systemd else ", and cron: the schedule without systemd)"),
        names=["python3"] if systemd else ["python3", "cron"],
    )
    system.ship_tree(tarball("backup"), inv.backup_agent, "the backup agent")
    if inv.backups.copy_parts is not None:
        _copies(inv)
    system.config_file(
        name=f"Configure the backup agent ({inv.backup_config}, root only)",
        content=json.dumps(agent_config(inv, here), indent=2) + "\n",
        dest=inv.backup_config, user="root", group="root", mode="600",
    )
    state_dir = inv.backup_state.rsplit("/", 1)[0]
    files.directory(name=f"Keep the backup results' folder {state_dir}", path=state_dir, mode="755")
    variables = dict(instance=inv.instance, command=scheduled_command(inv), schedule=inv.backups.schedule)
    name = inv.backup_service
    if systemd:
        unit = files.template(
            name=f"Install the systemd unit {name}.service",
            src=str(TEMPLATES / "backup/sliceops-backup.service.j2"),
            dest=f"/etc/systemd/system/{name}.service", mode="644", **variables,
        )
        timer = files.template(
            name=f"Install the systemd timer {name}.timer (daily at {inv.backups.schedule})",
            src=str(TEMPLATES / "backup/sliceops-backup.timer.j2"),
            dest=f"/etc/systemd/system/{name}.timer", mode="644", **variables,
        )
        service.running(name=f"Run the backup timer {name}.timer", service_name=f"{name}.timer",
                        subject="backup timer", restart_if=changed(unit=unit, timer=timer))
        return
    hour, minute = inv.backups.hour_minute
    files.template(
        name=f"Install the cron entry /etc/cron.d/{name} (daily at {inv.backups.schedule})",
        src=str(TEMPLATES / "backup/sliceops-backup.cron.j2"),
        dest=f"/etc/cron.d/{name}", mode="644", hour=hour, minute=minute,
        log_path=f"/var/log/{name}.log", **variables,
    )
    # Debian's own LSB script for cron, run and enabled like the deploy's other services.
    service.running(name="Run cron (its LSB init script)", service_name="cron")


def _copies(inv: Inventory) -> None:
    """What copies off the host need on the target: rsync and ssh, the agent's own key pair
    (made here, root only), and the copy host's recorded key (strict checking, no accept-new)."""
    _, hostname, port, _ = inv.backups.copy_parts
    system.packages(name="Install rsync and the SSH client (backups.copy_to)", names=["rsync", "openssh-client"])
    files.directory(name=f"Keep the backup agent's SSH folder {inv.backup_ssh_dir} (root only)",
                    path=inv.backup_ssh_dir, user="root", group="root", mode="700")
    system.ssh_identity(name=f"Make the backup agent's SSH key {inv.backup_copy_identity} (authorize its .pub "
                        f"on {hostname})", path=inv.backup_copy_identity, comment=f"sliceops-backup-{inv.instance}")
    lines = hostkeys.recorded_lines(inv.ssh_known_hosts, hostname, port)
    files.put(
        name=f"Record the host key of {hostkeys.host_entry(hostname, port)} for the backup copies",
        src=io.StringIO("".join(line + "\n" for line in lines)),
        dest=inv.backup_copy_known_hosts, user="root", group="root", mode="600",
    )
