"""`sliceops backup`, `sliceops backups`, `sliceops restore` and `sliceops drill`: run the backup agent on the
target (locally for @local, over SSH for ssh:// targets) and, after a restore, converge the
target so the restored database gets its tenant's grants, stamp and migrations and its
container starts again.

The agent (backup/sliceops_backup, shipped by the deploy) does the work as root on the target;
nothing here reads a secret or a backup.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from sliceops.errors import SliceopsError
from sliceops.inventory import ACTIVE, SUSPENDED, Inventory
from sliceops.hostkeys import known_hosts_path, ssh_parts
from sliceops import shell

COMMANDS = ("backup", "backups", "restore", "drill")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad request is one line (SliceopsError: exit 2), not usage and a traceback."""

    def error(self, message):
        raise SliceopsError(f"{self.prog.split()[-1]}: {message}")


def parser(command: str) -> argparse.ArgumentParser:
    """The options of one command (after `sliceops [-i FILE] COMMAND`)."""
    if command == "backup":
        p = _Parser(prog="sliceops backup", description="Back up slices (and the gateway) now, verified.")
        p.add_argument("ids", nargs="*", metavar="ID", help="slice ids")
        p.add_argument("--all", action="store_true", help="every in-service and suspended slice")
        p.add_argument("--gateway", action="store_true", help="the gateway database too")
    elif command == "backups":
        p = _Parser(prog="sliceops backups", description="List backups: time, kind, size, verified, migration level.")
        p.add_argument("id", nargs="?", type=int, metavar="ID", help="one slice (destroyed ones too)")
        p.add_argument("--gateway", action="store_true", help="the gateway's backups")
        p.add_argument("--json", action="store_true", help="machine-readable")
    elif command == "drill":
        p = _Parser(prog="sliceops drill", description="Restore a slice's latest verified backup into a scratch "
                    "database and compare its row counts with the backup's manifest (exit 1 on a mismatch).")
        p.add_argument("id", nargs="?", metavar="ID", help="the slice (default: the one drilled longest ago)")
    else:
        p = _Parser(prog="sliceops restore", description="Restore a slice (or the gateway) from a verified backup; "
                    "its current state is backed up first, then the deploy re-grants, stamps, migrates, starts.")
        p.add_argument("ids", nargs="*", metavar="ID", help="the slice whose backup is restored")
        p.add_argument("--gateway", action="store_true", help="the gateway database instead")
        p.add_argument("--at", help="the latest verified backup taken at or before this time (ISO, UTC if no zone)")
        p.add_argument("--from", dest="from_path", metavar="FOLDER", help="this backup folder on the target")
        p.add_argument("--as", dest="as_id", type=int, metavar="NEW_ID", help="into this suspended slice instead")
    return p


def parse(command: str, rest: list[str]) -> argparse.Namespace:
    return parser(command).parse_intermixed_args(rest)


def run(command: str, inv: Inventory, request: argparse.Namespace) -> int:
    return {"backup": cmd_backup, "backups": cmd_backups, "drill": cmd_drill}[command](inv, request)


def agent_argv(inv: Inventory, *args: str) -> list[str]:
    """The command that runs the agent on the inventory's target, as root (over SSH: the host
    key checked against the inventory's known-hosts file, as the deploy checks it)."""
    argv = inv.backup_command(*args)
    if inv.target == "@local":
        return argv
    user, hostname, port = ssh_parts(inv.target)
    ssh = ["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", f"UserKnownHostsFile={known_hosts_path(inv.ssh_known_hosts)}", "-o", "LogLevel=ERROR"]
    if inv.ssh_key:
        ssh += ["-i", os.path.expanduser(inv.ssh_key)]
    remote = shell.command(*(argv if user == "root" else ["sudo", "-n", *argv]))
    return ssh + [f"{user}@{hostname}", remote]


def _ids(inv: Inventory, ids: list[str]) -> list[int]:
    out = []
    for raw in ids:
        if not raw.isdigit() or int(raw) not in inv.slice_ids:
            raise SliceopsError(f"{inv.path}: slices: no slice with id {raw!r} (ids: "
                                f"{', '.join(map(str, inv.slice_ids)) or 'none'})")
        out.append(int(raw))
    return out


def cmd_backup(inv: Inventory, args) -> int:
    ids = _ids(inv, args.ids)
    if args.all and ids:
        raise SliceopsError("backup: give slice ids or --all, not both")
    for sid in ids:
        if inv.slice(sid).status not in (ACTIVE, SUSPENDED):
            raise SliceopsError(f"{inv.path}: slice {sid} is marked {inv.slice(sid).status}: "
                                "its final backup is the destroy's")
    if not (ids or args.all or args.gateway):
        raise SliceopsError("backup: name slice ids, --all or --gateway")
    agent = ["run", *map(str, ids)] + (["--all"] if args.all else []) + (["--gateway"] if args.gateway else [])
    return subprocess.call(agent_argv(inv, *agent))


def cmd_backups(inv: Inventory, args) -> int:
    agent = ["list"]
    if args.id is not None:
        agent.append(str(args.id))  # a destroyed slice (no longer listed) still has its final backup
    agent += (["--gateway"] if args.gateway else []) + (["--json"] if args.json else [])
    return subprocess.call(agent_argv(inv, *agent))


def cmd_drill(inv: Inventory, args) -> int:
    agent = ["drill"]
    if args.id is not None:
        sid = _ids(inv, [args.id])[0]
        if inv.slice(sid).status not in (ACTIVE, SUSPENDED):
            raise SliceopsError(f"{inv.path}: slice {sid} is marked {inv.slice(sid).status}: only in-service and "
                                "suspended slices are drilled")
        agent.append(str(sid))
    return subprocess.call(agent_argv(inv, *agent))


def cmd_restore(inv: Inventory, args, deploy) -> int:
    """Agent restore, then the deploy (the caller holds the deploy lock around both)."""
    if args.at and args.from_path:
        raise SliceopsError("restore: --at and --from exclude each other")
    agent = ["restore"]
    if args.gateway:
        if args.ids or args.as_id is not None:
            raise SliceopsError("restore --gateway takes no slice id and no --as")
        agent.append("--gateway")
    else:
        if len(args.ids) != 1:
            raise SliceopsError("restore: name exactly one slice id (or --gateway)")
        sid = _ids(inv, args.ids)[0]
        agent.append(str(sid))
        dest = sid
        if args.as_id is not None:
            dest = _ids(inv, [str(args.as_id)])[0]
            if dest == sid:
                raise SliceopsError("restore: --as names the slice itself; leave --as out")
            if inv.slice(dest).status != SUSPENDED:
                raise SliceopsError(f"{inv.path}: restore --as {dest}: slice {dest} must be suspended "
                                    "(its database and data are replaced)")
            agent += ["--as", str(dest)]
        elif inv.slice(sid).status not in (ACTIVE, SUSPENDED):
            raise SliceopsError(f"{inv.path}: slice {sid} is marked {inv.slice(sid).status}")
    if args.at:
        agent += ["--at", args.at]
    if args.from_path:
        agent += ["--from", args.from_path]
    rc = subprocess.call(agent_argv(inv, *agent))
    if rc != 0:
        return rc
    print("sliceops: converging the target: grants, stamp and pending migrations of the restored database; "
          "its container starts if the slice is in service", file=sys.stderr)
    return deploy()
