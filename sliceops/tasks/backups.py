"""Tenant backups: the agent that takes them on the target, its configuration, and the
nightly schedule (a systemd timer, or a cron entry where PID 1 is not systemd)."""

from __future__ import annotations

import io
import json
import shlex

from pyinfra.operations import files

from sliceops import factcache
from sliceops.bundle import tarball
from sliceops.facts.host import InitSystem
from sliceops.inventory import Inventory
from sliceops.operations import service, system
from sliceops.operations.util import changed
from sliceops.paths import TEMPLATES

STATE_GROUP = "sliceops-monitor"  # the monitor reads the results; the backups stay root's


def agent_config(inv: Inventory) -> dict:
    """The agent's configuration (backup/README.md): every name it uses, computed by the model."""
    b = inv.backups
    return {
        "instance": inv.instance,
        "cluster": {"version": inv.postgres.version, "name": inv.cluster, "port": inv.postgres.port},
        "dir": inv.backup_dir,
        "keep_daily": b.keep_daily,
        "keep_weekly": b.keep_weekly,
        "drill": b.drill,
        "parallel": b.parallel,
        "state_file": inv.backup_state,
        "state_group": STATE_GROUP,
        "gateway": {"database": inv.gateway.database, "owner": inv.gateway.role, "lock": inv.backup_lock(None)},
        "slice_owner": inv.slice_defaults.role,
        "slices": [
            {
                "id": s.id,
                "database": s.database,
                "data_dir": inv.slice_data_dir(s.id),
                "container": inv.container_name(s.id),
                "status": s.status,
                "lock": inv.backup_lock(s.id),
            }
            for s in inv.slices
        ],
    }


def scheduled_command(inv: Inventory) -> str:
    """The exact command the timer or cron entry runs."""
    return shlex.join(inv.backup_command("run", "--scheduled"))


def converge(inv: Inventory) -> None:
    systemd = factcache.get(InitSystem) == "systemd"
    # The agent is stdlib Python; minimal hosts (debootstrap's minbase) have no python3.
    system.packages(
        name="Install the backup agent's runtime (python3" + (")" if systemd else ", and cron: the schedule without systemd)"),
        names=["python3"] if systemd else ["python3", "cron"],
    )
    system.ship_tree(tarball("backup"), inv.backup_agent, "the backup agent")
    files.put(
        name=f"Configure the backup agent ({inv.backup_config}, root only)",
        src=io.StringIO(json.dumps(agent_config(inv), indent=2) + "\n"),
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
