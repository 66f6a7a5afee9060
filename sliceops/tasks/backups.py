"""Tenant backups: the agent that takes them on the target, its configuration, and the
nightly schedule (a systemd timer, or a cron entry where PID 1 is not systemd).

Every host of a fleet runs the agent: the database host's dumps every slice's database and the
gateway (and archives the data directories of slices that run there); a pure slice host's
archives the data directories of the slices whose data is there (`moves.data_hosts`: where they
run, or where a slice whose move has not finished still has its data)."""

from __future__ import annotations

import io

from pyinfra.operations import files

from sliceops import factcache, hostkeys
from sliceops.backup_config import config_text
from sliceops.bundle import tarball
from sliceops.facts.host import InitSystem
from sliceops.inventory import Inventory
from sliceops.operations import service, system
from sliceops.operations.util import changed
from sliceops.paths import TEMPLATES
from sliceops.shell import command

def scheduled_command(inv: Inventory) -> str:
    """The exact command the timer or cron entry runs."""
    return command(*inv.backup_command("run", "--scheduled"))


def converge(inv: Inventory, here: str | None = None, rows: dict[int, dict] | None = None) -> None:
    """The agent on host `here` (default: the database host), with its part of every backup: a
    slice's data part stays with its old host's agent until its move has succeeded (the move
    then hands it over: operations/move.py). `rows`: the gateway's rows (fleet_rows; None for
    a `target:` file)."""
    systemd = factcache.steady(InitSystem) == "systemd"
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
        content=config_text(inv, here, rows),
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
