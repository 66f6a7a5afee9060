"""`sliceops backup`, `sliceops backups`, `sliceops restore` and `sliceops drill`: run the backup agent on the
target (locally for @local, over SSH for ssh:// targets) and, after a restore, converge the
target so the restored database gets its tenant's grants, stamp and migrations and its
container starts again.

The agent (backup/sliceops_backup, shipped by the deploy) does the work as root on the target;
nothing here reads a secret or a backup.

In a fleet each host keeps its part: the database host's agent has every slice's dump and the
gateway's, a pure slice host's agent the archives of its own slices' data directories. A
command runs the agent on the database host and on each slice host that keeps a part of what
it names, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from sliceops.errors import RemoteStateError, SliceopsError
from sliceops.inventory import ACTIVE, SUSPENDED, Inventory
from sliceops.hostkeys import HostUnreachable, known_hosts_path, ssh_parts
from sliceops import backup_pairs, moves, psql, shell
from sliceops.remote import Target

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
    args = parser(command).parse_intermixed_args(rest)
    if command == "restore" and args.at is not None:
        try:
            backup_pairs.parse_time(args.at)
        except ValueError:
            # Before the lock, the host key or any agent: the agent would refuse it only there.
            raise SliceopsError(f"restore: --at: {args.at!r} is not a time (ISO 8601, UTC unless it names a zone: "
                                "2026-12-01T03:00:00Z, 2026-12-01T04:00, 2026-12-01)") from None
    return args


def run(command: str, inv: Inventory, request: argparse.Namespace) -> int:
    return {"backup": cmd_backup, "backups": cmd_backups, "drill": cmd_drill}[command](inv, request)


def agent_argv(inv: Inventory, *args: str, target: str | None = None) -> list[str]:
    """The command that runs the agent on `target` (default: the database host's), as root (over
    SSH: the host key checked against the inventory's known-hosts file, as the deploy checks it)."""
    argv = inv.backup_command(*args)
    target = target or inv.target
    if target == "@local":
        return argv
    user, hostname, port = ssh_parts(target)
    ssh = ["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", f"UserKnownHostsFile={known_hosts_path(inv.ssh_known_hosts)}", "-o", "LogLevel=ERROR"]
    if inv.ssh_key:
        ssh += ["-i", os.path.expanduser(inv.ssh_key)]
    remote = shell.command(*(argv if user == "root" else ["sudo", "-n", *argv]))
    return ssh + [f"{user}@{hostname}", remote]


def data_hosts(inv: Inventory, ids: list[int] | None = None, rows: dict[int, dict] | None = None) -> dict[str, list[int]]:
    """The hosts other than the database host that keep the data part of slices `ids` (None:
    every slice host, with or without slices), with those slices' ids; empty for a `target:`
    file and for slices on the database host. `rows` (gateway_hosts): a slice whose move has
    not finished has its data part on its old host (moves.data_hosts)."""
    db = inv.database_host.name
    out: dict[str, list[int]] = {} if ids is not None else {h.name: [] for h in inv.hosts if h.name != db}
    for sid, name in moves.data_hosts(inv, rows).items():
        if (ids is None or sid in ids) and name != db:
            out.setdefault(name, []).append(sid)
    return out


def _on_each(inv: Inventory, database: list[str] | None, hosts: dict[str, list[str]]) -> int:
    """Run the agent on the database host (`database` None: not there) then on each slice host
    with its own arguments, saying which host answers when there are several; the worst status."""
    runs = ([(inv.database_host.name, inv.target, database)] if database is not None else [])
    runs += [(name, inv.host(name).target, args) for name, args in hosts.items()]
    rc = 0
    for name, target, args in runs:
        if len(runs) > 1:
            part = "databases" if name == inv.database_host.name else "data directories"
            print(f"sliceops: on {name} ({part}):", file=sys.stderr, flush=True)
        rc = max(rc, subprocess.call(agent_argv(inv, *args, target=target)))
    return rc


def _ids(inv: Inventory, ids: list[str]) -> list[int]:
    out = []
    for raw in ids:
        if not raw.isdigit() or int(raw) not in inv.slice_ids:
            raise SliceopsError(f"{inv.path}: slices: no slice with id {raw!r} (ids: "
                                f"{', '.join(map(str, inv.slice_ids)) or 'none'})")
        out.append(int(raw))
    return out


def gateway_hosts(inv: Inventory) -> dict[int, dict]:
    """{slice id: {"host": name}}: where the gateway's rows say each slice runs, read on the
    database host; {} for a `target:` file, whose one host runs every slice."""
    if not inv.multi_host:
        return {}
    with Target(inv, inv.database_host.target) as db:
        out = db.run(psql.argv(inv.postgres.port, inv.gateway.database, tuples=True),
                     stdin="SELECT id, host FROM gateway.slices WHERE host IS NOT NULL;\n")
    rows = {}
    for line in out.splitlines():
        sid, _, name = line.partition("|")
        if sid.strip().isdigit():
            rows[int(sid)] = {"host": name.strip()}
    return rows


def gateway_hosts_or_none(inv: Inventory, command: str, fallback: str) -> dict[int, dict] | None:
    """gateway_hosts, or None when the database host's PostgreSQL (or the host) does not answer:
    one warning line on stderr naming the database host and what is used instead (`fallback`).
    A backup or a listing must still reach the slice hosts' data parts during a database outage;
    a host key that is unknown or changed is still refused (HostKeyError is not caught)."""
    try:
        return gateway_hosts(inv)
    except (RemoteStateError, HostUnreachable) as exc:
        print(f"sliceops: warning: {command}: the gateway's slice hosts cannot be read on "
              f"{inv.database_host.name} ({exc}); {fallback}", file=sys.stderr, flush=True)
        return None


def refuse_moving(inv: Inventory, ids: list[int], what: str, rows: dict[int, dict]) -> None:
    """A slice whose move has not finished (its gateway row `rows` names another host than the
    file: the move is pending, or failed and was undone) has its data on the old host while
    the file names the new one, and the next deploy moves it: a restore now would put back
    a slice the deploy that follows it moves. Refused, one line, before any agent runs (a
    backup of it is taken where its data is: data_hosts)."""
    moving = [m for m in moves.pending(inv, rows) if m.slice_id in ids]
    if moving:
        m = moving[0]
        raise SliceopsError(f"{inv.path}: {what} slice {m.slice_id}: it is being moved from {m.source} to "
                            f"{m.destination} and its data is still on {m.source}: deploy to finish the move "
                            f"(or set its host back to {m.source}), then {what} it")


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
    # Each slice host archives the data directories of the slices named (or of all of them)
    # whose data is there: a slice whose move has not finished, on its old host.
    parts: dict[str, list[int]] = {}
    if ids:
        rows = gateway_hosts_or_none(inv, "backup", "using the inventory's hosts for the data directories")
        parts = data_hosts(inv, ids, rows)
    elif args.all:
        rows = gateway_hosts_or_none(inv, "backup", "using the inventory's hosts: every slice host's agent "
                                     "archives what its configuration lists")
        # Unread rows: every slice host, since its agent's configuration (the last deploy's, which
        # followed the rows) may keep the data of a slice the file now puts elsewhere.
        parts = {h: sids for h, sids in data_hosts(inv, None, rows).items() if sids or rows is None}
    return _on_each(inv, agent, {h: ["run", *map(str, sids)] if ids else ["run", "--all"] for h, sids in parts.items()})


def cmd_backups(inv: Inventory, args) -> int:
    agent = ["list"]
    if args.id is not None:
        agent.append(str(args.id))  # a destroyed slice (no longer listed) still has its final backup
    agent += (["--gateway"] if args.gateway else [])
    hosts: list[str] = []
    if not args.gateway:
        listed = args.id is not None and args.id in inv.slice_ids
        # A destroyed slice's final data backup may be on any slice host: ask them all (and
        # every one when the gateway cannot say where a slice's data is).
        where = gateway_hosts_or_none(inv, "backups", "asking every slice host") if listed else None
        hosts = list(data_hosts(inv, [args.id], where) if where is not None else data_hosts(inv))
    if not args.json or not hosts:
        return _on_each(inv, agent + (["--json"] if args.json else []), {h: agent for h in hosts})
    rows, rc = [], 0
    for name, target in [(inv.database_host.name, inv.target)] + [(h, inv.host(h).target) for h in hosts]:
        listed, status = _agent_json(inv, agent, target)
        rc = max(rc, status, 0 if listed is not None else 1)
        rows += [{"host": name, **row} for row in listed or []]
    print(json.dumps(rows, indent=2))
    return rc


def cmd_drill(inv: Inventory, args) -> int:
    agent = ["drill"]
    if args.id is not None:
        sid = _ids(inv, [args.id])[0]
        if inv.slice(sid).status not in (ACTIVE, SUSPENDED):
            raise SliceopsError(f"{inv.path}: slice {sid} is marked {inv.slice(sid).status}: only in-service and "
                                "suspended slices are drilled")
        agent.append(str(sid))
    return subprocess.call(agent_argv(inv, *agent))


def _pair(inv: Inventory, sid: int, name: str, at: str | None) -> backup_pairs.Pair:
    """The dump on the database host and the data archive on host `name` of one run of slice
    `sid`'s backups (backup_pairs), the newest at or before `at`; refused, one line naming the
    slice and both hosts, when no such pair exists."""
    db = inv.database_host.name
    listed = {host: _list_json(inv, host, ["list", str(sid)]) for host in (db, name)}
    pair = backup_pairs.choose(listed[db], listed[name], backup_pairs.parse_time(at) if at else None)
    if pair is None:
        when = f" at or before {at}" if at else ""
        raise SliceopsError(f"{inv.path}: restore slice {sid}: no verified backup of its database on {db} and of its "
                            f"data directory on {name} from one run{when} (sliceops backups {sid} lists both)")
    print(f"sliceops: slice {sid}: restoring the backup taken {pair.database['at']} ({db}: its database) and "
          f"{pair.data['at']} ({name}: its data directory)", file=sys.stderr, flush=True)
    return pair


def _agent_json(inv: Inventory, agent: list[str], target: str) -> tuple[list[dict] | None, int]:
    """(the rows `agent --json` printed on `target`, None when it printed no JSON list; its
    exit status)."""
    proc = subprocess.run(agent_argv(inv, *agent, "--json", target=target), stdout=subprocess.PIPE, text=True)
    try:
        rows = json.loads(proc.stdout or "[]")
    except ValueError:
        rows = None
    return (rows if isinstance(rows, list) else None), proc.returncode


def _list_json(inv: Inventory, name: str, agent: list[str]) -> list[dict]:
    """The rows of `agent --json` (a `list`) run on host `name`; SliceopsError when it fails."""
    rows, status = _agent_json(inv, agent, inv.host(name).target)
    if status != 0 or rows is None:
        raise SliceopsError(f"{' '.join(agent)}: the backup agent on {name} did not answer with its list "
                            f"(exit status {status}); nothing changed")
    return rows


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
    rows = {} if args.gateway else gateway_hosts(inv)
    hosts = {} if args.gateway else data_hosts(inv, [sid, dest], rows)
    if not args.gateway:
        refuse_moving(inv, sorted({sid, dest}), "restore", rows)
    if hosts:
        # The data part first, on the slice's own host: its agent stops the container there
        # (so nothing writes while the database is replaced), saves the data as it is, restores.
        where = moves.data_hosts(inv, rows)
        if where[sid] != where[dest]:
            raise SliceopsError(f"{inv.path}: restore --as {dest}: slices {sid} and {dest} run on different hosts "
                                "(the data backup is on the first one's); use a suspended slice on the same host")
        if args.from_path:
            raise SliceopsError(f"restore: --from names a folder on one host, and slice {sid}'s backup has a part on "
                                f"{inv.database_host.name} and one on {next(iter(hosts))}: use --at")
        # Both parts from one run: the pair is chosen here, then each agent restores its part of it.
        (name,) = hosts
        pair = _pair(inv, sid, name, args.at)
        rc = _on_each(inv, None, {name: agent + ["--from", pair.data["path"]]})
        if rc != 0:
            return rc
        agent = agent + ["--from", pair.database["path"]]
    else:  # both parts on one host: its agent chooses
        agent += (["--at", args.at] if args.at else []) + (["--from", args.from_path] if args.from_path else [])
    rc = _on_each(inv, agent, {})
    if rc != 0:
        return rc
    print("sliceops: converging the target: grants, stamp and pending migrations of the restored database; "
          "its container starts if the slice is in service", file=sys.stderr)
    return deploy()
