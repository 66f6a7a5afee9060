"""Command line of the backup agent (run as root on the target):

    python3 -m sliceops_backup --config /etc/sliceops/<instance>/backup.json run --all --gateway --scheduled
    ... backup [ID ...] [--gateway] | list [ID] [--json] | restore ID [--at T|--from PATH] [--as ID] |
        restore --gateway [...] | drill [ID] | final ID --lock-held | state

Exit status: 0 done, 1 a backup, verification or restore failed, 2 a bad request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sliceops_backup import agent, store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sliceops-backup")
    parser.add_argument("--config", required=True)
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for a slice's lock")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="back up slices (and the gateway) now")
    run.add_argument("ids", nargs="*", type=int)
    run.add_argument("--all", action="store_true")
    run.add_argument("--gateway", action="store_true")
    run.add_argument("--scheduled", action="store_true", help="the nightly run: also drills when one is due")
    ls = sub.add_parser("list")
    ls.add_argument("id", nargs="?", type=int)
    ls.add_argument("--gateway", action="store_true")
    ls.add_argument("--json", action="store_true")
    rs = sub.add_parser("restore")
    rs.add_argument("id", nargs="?", type=int)
    rs.add_argument("--gateway", action="store_true")
    rs.add_argument("--at")
    rs.add_argument("--from", dest="from_path")
    rs.add_argument("--as", dest="as_id", type=int)
    dr = sub.add_parser("drill")
    dr.add_argument("id", nargs="?", type=int)
    fi = sub.add_parser("final", help="the destroy's final backup (the caller holds the slice's lock)")
    fi.add_argument("id", type=int)
    fi.add_argument("--lock-held", action="store_true")
    sub.add_parser("state")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("sliceops-backup: must run as root", file=sys.stderr)
        return 2
    os.umask(0o077)
    # cron's PATH lacks /usr/sbin (runuser).
    os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")
    try:
        cfg = agent.Config.load(args.config)
        return COMMANDS[args.command](cfg, args)
    except agent.AgentError as exc:
        print(f"sliceops-backup: {exc}", file=sys.stderr)
        return 1
    except BadRequest as exc:
        print(f"sliceops-backup: {exc}", file=sys.stderr)
        return 2


class BadRequest(Exception):
    """A request that cannot be understood (exit 2)."""


def _slice(cfg: agent.Config, slice_id: int) -> agent.Target:
    try:
        return cfg.slice(slice_id)
    except agent.AgentError as exc:
        raise BadRequest(str(exc)) from None


def cmd_run(cfg, args) -> int:
    if args.all or args.scheduled:
        targets = cfg.backed_up()
    else:
        targets = [_slice(cfg, i) for i in args.ids]
        for t in targets:
            if t.status not in ("active", "suspended"):
                raise BadRequest(f"{t.label} is marked {t.status}; its final backup is taken by the destroy")
    if args.gateway and cfg.gateway is None:
        raise BadRequest("the gateway database is backed up on the database host, not here")
    if (args.gateway or args.scheduled) and cfg.gateway is not None:
        targets.append(cfg.gateway)
    if not targets and (args.all or args.scheduled):
        # A slice host with no slice in service or suspended (new, or only slices being
        # destroyed, whose final backups the destroy takes): nothing to do is not a failure,
        # or its nightly timer would fail every night.
        print("sliceops-backup: nothing to back up on this host (no slice in service or suspended here)")
        return 0
    if not targets:
        raise BadRequest("nothing to back up: name slice ids, --all or --gateway")
    ok = agent.run(cfg, targets, "scheduled" if args.scheduled else "manual", scheduled=args.scheduled,
                   wait=max(args.wait, 3600) if args.scheduled else args.wait)
    return 0 if ok else 1


def cmd_list(cfg, args) -> int:
    if args.gateway:
        owners = [None]
    elif args.id is not None:
        owners = [args.id]
    else:
        owners = sorted(set(cfg.slices) | _folders(cfg)) + ([None] if cfg.gateway is not None else [])
    rows = []
    for sid in owners:
        for b in store.listing(cfg.root, sid):
            rows.append({"slice": "gateway" if sid is None else sid, **agent._summary(b)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no backups in {cfg.root}")
        return 0
    head = ("slice", "taken (UTC)", "kind", "size", "verified", "migration", "path")
    table = [head] + [(str(r["slice"]), r["at"], r["kind"], agent._size(r["size"]),
                       "yes" if r["verified"] else "NO", r["migration"] or "-", r["path"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _folders(cfg) -> set[int]:
    """Slices with backups but no longer in the inventory (destroyed: their final backups)."""
    if not cfg.root.is_dir():
        return set()
    return {int(p.name[6:]) for p in cfg.root.iterdir() if p.name.startswith("slice-") and p.name[6:].isdigit()}


def cmd_restore(cfg, args) -> int:
    if args.at and args.from_path:
        raise BadRequest("--at and --from exclude each other")
    try:
        at = store.parse_time(args.at) if args.at else None
    except ValueError:
        raise BadRequest(f"--at {args.at!r} is not a time (example: 2026-12-01T03:00:00Z)") from None
    if args.gateway:
        if args.id is not None or args.as_id is not None:
            raise BadRequest("restore --gateway takes no slice id and no --as")
        if cfg.gateway is None:
            raise BadRequest("the gateway database is restored on the database host, not here")
        source = dest = cfg.gateway
    else:
        if args.id is None:
            raise BadRequest("restore needs a slice id (or --gateway)")
        source = cfg.slices.get(args.id) or agent.Target(
            args.id, f"wa_slice_{args.id}" if cfg.cluster is not None else None, "", "/dev/null")
        dest = _slice(cfg, args.as_id if args.as_id is not None else args.id)
        if args.as_id is not None:
            if args.as_id == args.id:
                raise BadRequest("--as names the slice itself; leave --as out")
            if dest.status != "suspended":
                raise BadRequest(f"--as {args.as_id}: slice {args.as_id} must be suspended in the inventory "
                                 "(a restore into it replaces its database and data)")
        elif args.id not in cfg.slices:
            raise BadRequest(f"slice {args.id} is not in the inventory this host was deployed with")
    agent.restore(cfg, source, dest, at=at, from_path=args.from_path, wait=args.wait)
    return 0


def cmd_drill(cfg, args) -> int:
    if cfg.cluster is None:
        raise BadRequest("drills restore database dumps: run them on the database host, not here")
    if args.id is not None:
        _slice(cfg, args.id)
    return 0 if agent.drill(cfg, args.id, verbose=True) else 1


def cmd_final(cfg, args) -> int:
    target = cfg.slice(args.id)
    if not args.lock_held:
        raise BadRequest("final is the destroy's step: it runs under the slice's lock (--lock-held)")
    database = target.database is not None and cfg.cluster.exists(target.database)
    if not database and not (target.data_dir and os.path.isdir(target.data_dir)):
        gone = "its data directory is not here" if target.database is None else \
            "neither its database nor its data directory is left"
        print(f"backup of {target.label} skipped: {gone}")
        return 0
    b = agent.backup(cfg, target, "final")
    agent._note_backup(cfg, target, b, None)
    if not b.verified:
        print(f"sliceops-backup: {target.label}: final backup {b.path} failed verification: "
              f"{b.manifest['error']}; nothing removed", file=sys.stderr)
        return 1
    # "backup ...": the deploy relays lines with this prefix (sliceops/report.py).
    print(f"backup {b.path} verified (final backup of {target.label}: {agent.contents(b)}, {agent._size(b.size)})")
    if cfg.copy is not None:
        # Reported, never fatal: the destroy goes on from the verified local backup.
        agent.copy_off(cfg, target, out=lambda line: print(f"backup {line}"))
    return 0


def cmd_state(cfg, args) -> int:
    print(json.dumps(agent.read_state(cfg), indent=2, sort_keys=True))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "restore": cmd_restore, "drill": cmd_drill, "final": cmd_final,
            "state": cmd_state}

if __name__ == "__main__":
    sys.exit(main())
