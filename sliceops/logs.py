"""`sliceops logs ID [-f] [--since WHEN] [--tail N]`: a slice container's output, by slice id.

The container's name comes from the inventory model (instance prefix included); the Docker
API is reached the way status reaches it (local socket, or over the target's SSH). Any
credentials in a URL (`postgresql://user:password@...`) are masked before printing.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime

from sliceops.errors import RemoteStateError
from sliceops.inventory import Inventory
from sliceops.remote import Target
from sliceops.usage import OneLineParser

_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# scheme://user:secret@ -> scheme://user:***@ ; a backend that logs its DATABASE_URL must
# not put the password on an operator's screen.
_URL_SECRET = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")


class UsageError(ValueError):
    """A malformed option value; reported as one line, exit 2."""


def parser() -> OneLineParser:
    p = OneLineParser(prog="sliceops logs", description="A slice container's logs.",
                        epilog="The target is the one of -i/--inventory FILE (default: inventory/slices.yaml).")
    p.add_argument("slice_id", type=int, metavar="ID", help="the slice's id in the inventory")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("--since", metavar="WHEN", help="only lines newer than 30s, 10m, 2h, 1d or an ISO time")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    return p


def since_epoch(text: str, now: float | None = None) -> int:
    """--since as Unix seconds: a duration back from now (30s, 10m, 2h, 1d) or an ISO time."""
    now = time.time() if now is None else now
    m = _DURATION.match(text.strip())
    if m:
        return int(now - int(m[1]) * _SECONDS[m[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since: {text!r} is not a duration (30s, 10m, 2h, 1d) or an ISO time") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without zone is the operator's local time
    return int(moment.timestamp())


def mask(line: str) -> str:
    return _URL_SECRET.sub(r"\1***@", line)


def run(inv: Inventory, argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        since = since_epoch(args.since) if args.since else None
        if args.tail is not None and args.tail < 0:
            raise UsageError(f"--tail: {args.tail} is negative")
    except UsageError as exc:
        print(f"sliceops: logs: {exc}", file=sys.stderr)
        return 2
    if args.slice_id not in inv.slice_ids:
        print(f"sliceops: logs: {inv.path}: slices: no slice with id {args.slice_id}", file=sys.stderr)
        return 2
    name = inv.container_name(args.slice_id)
    where = inv.host(inv.slice(args.slice_id).host).target  # the slice host running it
    import docker.errors
    import requests.exceptions

    try:
        with Target(inv, where) as target:
            api = target.docker()
            try:
                stream = api.logs(name, stream=True, follow=args.follow, since=since,
                                  tail="all" if args.tail is None else args.tail)
            except docker.errors.NotFound:
                print(f"sliceops: logs: slice {args.slice_id} has no container {name} on {where}",
                      file=sys.stderr)
                return 1
            _copy(stream)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        print(f"sliceops: logs: the Docker engine of {where} does not answer: {str(exc)[:200]}", file=sys.stderr)
        return 1
    except RemoteStateError as exc:
        print(f"sliceops: logs: {exc}", file=sys.stderr)
        return 1
    return 0


def _copy(stream) -> None:
    """Write the chunks line by line (masked), flushing so -f shows lines as they come."""
    pending = b""
    out = sys.stdout
    for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            out.write(mask(line.decode(errors="replace")) + "\n")
        out.flush()
    if pending:
        out.write(mask(pending.decode(errors="replace")) + "\n")
        out.flush()
