"""`sliceops status [--sort mem|cpu|disk|age] [--json] [--find TEXT]`: read the target, print.

Reads only: one psql session and one Docker API call on the target, whatever the fleet
size. Exit 0 when the target answered (whatever the slices' health: the summary line and
`--json` say that), 1 when it could not be read, 2 for a user's mistake.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from sliceops import spares
from sliceops.errors import RemoteStateError
from sliceops.inventory import Inventory
from sliceops.remote import Target
from sliceops.status import gather, model, render
from sliceops.usage import OneLineParser


def parser() -> OneLineParser:
    p = OneLineParser(prog="sliceops status", description="Summary and one row per slice of the target.",
                        epilog="The target is the one of -i/--inventory FILE (default: inventory/slices.yaml).")
    p.add_argument("--sort", choices=model.SORT_KEYS, default="id",
                   help="largest memory/CPU/disk share first, or stalest telemetry first (default: by id)")
    p.add_argument("--json", action="store_true", help="the stable JSON shape documented in the README")
    p.add_argument("--find", metavar="TEXT", help="only the slices whose user's email or WhatsApp phone contains TEXT")
    return p


def wants_colour(stream) -> bool:
    # https://no-color.org: any value of NO_COLOR turns colour off.
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def collect(inv: Inventory) -> list[model.SliceStatus]:
    """Both round trips, then the rows (every slice id found in the inventory or on the host).
    In a fleet: the gateway on the database host, the containers of every slice host."""
    from sliceops.operations.postgres.stamps import slice_stamp  # the stamp the deploy would write

    with Target(inv) as target:
        target.connect()  # over SSH, one connection both reads share
        # psql runs in its own process (here or on the target) while this one lists the
        # containers and reads the backup results.
        with ThreadPoolExecutor(1) as pool:
            db = pool.submit(gather.read_database, target, inv, slice_stamp(inv))
            here = inv.database_host
            per_host = {here.name: gather.read_containers(target, inv)} if here in inv.slice_hosts else {}
            data_parts = {}  # a slice host's backup results: its slices' data directories
            for h in inv.slice_hosts:
                if h.name not in per_host:
                    per_host[h.name], data_parts[h.name] = _host_reads(inv, h)
            database = gather.read_backups(target, inv)
            state = db.result()
            backups = gather.merge_backups(inv, database, data_parts, state["slices"])
            return model.build_rows(inv, state, gather.merge_containers(inv, per_host), backups)


def _host_reads(inv: Inventory, h) -> tuple[dict, dict | None]:
    """One slice host's containers and backup results; a host that does not answer is one
    warning line, and its slices show no container (the gateway's view of them stands)."""
    try:
        with Target(inv, h.target) as other:
            other.connect()
            return gather.read_containers(other, inv), gather.read_backups(other, inv)
    except RemoteStateError as exc:
        print(f"sliceops: warning: host {h.name}: {exc}; its slices show no container", file=sys.stderr)
        return {}, None


def run(inv: Inventory, argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.find is not None and not args.find.strip():
        print("sliceops: status --find: empty text (give part of an email or a phone number)", file=sys.stderr)
        return 2
    try:
        rows = collect(inv)
    except RemoteStateError as exc:
        print(f"sliceops: status: {exc}", file=sys.stderr)
        return 1
    fleet = model.summary(rows)
    gateway = model.gateway_rows(rows)  # the whole fleet's, before --find narrows the rows
    if args.find is not None:
        rows = model.find(rows, args.find)
    rows = model.sort_rows(rows, args.sort)
    if args.json:
        sys.stdout.write(json.dumps(model.to_json(inv, rows, fleet, spares.summary(inv, gateway)), indent=2) + "\n")
    else:
        sys.stdout.write(render.render(rows, fleet, inv.target, inv.instance, inv.monitor.interval,
                                       wants_colour(sys.stdout)))
    short = spares.status_warning(inv, gateway)
    if short:  # one line on stderr; the exit status stays 0 (the target answered)
        sys.stdout.flush()
        print(f"sliceops: warning: {short}", file=sys.stderr)
    return 0
