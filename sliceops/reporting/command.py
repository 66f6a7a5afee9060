"""`sliceops report --out DIR [--since 24h|7d] [--slices 1,4-9] [--tz ZONE]`: the target's
telemetry as PNG charts and one HTML page in DIR (index.html).

Reads only: one psql session on the target, the way `sliceops status` reads it. Exit 0 when
the report was written, 1 when the target could not be read, 2 for a user's mistake.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sliceops.errors import RemoteStateError
from sliceops.inventory import DESTROYING, Inventory
from sliceops.remote import Target
from sliceops.usage import OneLineParser

_RANGE = re.compile(r"^([1-9][0-9]*)(?:-([1-9][0-9]*))?$")


def parser() -> OneLineParser:
    p = OneLineParser(prog="sliceops report", description="Charts and one HTML page of the target's telemetry.",
                      epilog="The target is the one of -i/--inventory FILE (default: inventory/slices.yaml).")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for index.html and the PNG charts")
    p.add_argument("--since", default="24h", metavar="DURATION", help="window before now: 90m, 24h, 7d (default 24h)")
    p.add_argument("--slices", metavar="IDS", help="only these slices: 3,7,10-20 (default: every slice in the inventory)")
    p.add_argument("--tz", default="UTC", metavar="ZONE", help="time zone of the time axes, e.g. Europe/Berlin (default UTC)")
    return p


def parse_slices(text: str | None, inv: Inventory) -> list[int]:
    """The ids --slices names (ValueError naming the first bad part), or every kept slice."""
    known = [s.id for s in inv.slices if s.status != DESTROYING]
    if text is None:
        return known
    ids: set[int] = set()
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m or (m[2] and int(m[2]) < int(m[1])):
            raise ValueError(f"{part.strip()!r} is not a slice id or a range like 10-20")
        lo, hi = int(m[1]), int(m[2] or m[1])
        missing = [i for i in range(lo, hi + 1) if i not in known]
        if missing and not m[2]:
            raise ValueError(f"slice {lo} is not in {inv.path}")
        ids.update(i for i in range(lo, hi + 1) if i in known)
    if not ids:
        raise ValueError(f"{text!r} names no slice of {inv.path}")
    return sorted(ids)


def _fail(message: str) -> int:
    print(f"sliceops: report: {message}", file=sys.stderr)
    return 2


def run(inv: Inventory, argv: list[str]) -> int:
    from sliceops.reporting import query

    args = parser().parse_args(argv)
    try:
        since = query.parse_since(args.since)
    except ValueError as exc:
        return _fail(f"--since: {exc}")
    try:
        ids = parse_slices(args.slices, inv)
    except ValueError as exc:
        return _fail(f"--slices: {exc}")
    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        return _fail(f"--tz: {args.tz!r} is not a time zone name like UTC or Europe/Berlin")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _fail(f"--out: {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"--out: cannot create {out}: {exc.strerror}")
    try:
        with Target(inv) as target:
            telemetry = query.read(target, inv, since, ids)
    except RemoteStateError as exc:
        print(f"sliceops: report: {exc}", file=sys.stderr)
        return 1
    from sliceops.reporting import build

    page = build.write(inv, telemetry, out, tz, args.tz, datetime.now(timezone.utc).astimezone(tz))
    print(f"{page}: {len(ids)} slices, {args.since} to now ({args.tz})")
    return 0
