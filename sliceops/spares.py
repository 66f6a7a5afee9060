"""Spare slices: in-service slices no user holds yet, which seed 000's gateway hands to a new
sign-up (gateway.slices status `available`, no `user_id`).

`slice_defaults.spares` says how many to keep ready. `check` (from the file alone), `plan`
(after the deploy it plans) and `status` (now) warn, one line on stderr, when fewer are
unassigned; their exit status stays theirs. The counting rules and the sentences live here,
pure functions over the model and the gateway's rows, so each is unit-tested without a host.
"""

from __future__ import annotations

from sliceops.inventory import Inventory

AVAILABLE = "available"  # seed 000: gateway.slices.status of a slice waiting for a user
ASSIGNED = "assigned"
SHOWN_IDS = 10  # a warning names at most this many slices


def unassigned_now(inv: Inventory, rows: dict[int, dict]) -> list[int]:
    """In-service slices the gateway can hand out now: its row `available`, no user.

    `rows` is {id: {"status", "user_id", ...}} (gateway.slices as the host has it).
    """
    return [
        s.id for s in inv.slices
        if s.in_service and s.id in rows and rows[s.id]["status"] == AVAILABLE and rows[s.id]["user_id"] is None
    ]


def unassigned_after_deploy(inv: Inventory, rows: dict[int, dict]) -> list[int]:
    """In-service slices that are unassigned once the deploy ran: the deploy inserts a missing
    row as `available` and puts a row back in service as `available` while it has no user
    (operations/postgres/registry.py); a row the gateway marked `assigned` stays so."""
    return [
        s.id for s in inv.slices
        if s.in_service and (
            s.id not in rows or (rows[s.id]["user_id"] is None and rows[s.id]["status"] != ASSIGNED)
        )
    ]


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN_IDS])
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return f" (slice{'s' if len(ids) != 1 else ''} {shown}{more})" if ids else ""


def _in_service(inv: Inventory) -> int:
    return sum(1 for s in inv.slices if s.in_service)


def _add(inv: Inventory, count: int) -> str:
    return f"`sliceops add --count {count} -i {inv.path}`"


def check_warning(inv: Inventory) -> str | None:
    """What the file alone makes certain: more spares wanted than slices in service."""
    wanted, in_service = inv.slice_defaults.spares, _in_service(inv)
    if wanted <= in_service:
        return None
    line = inv.lines.get(("slice_defaults", "spares"), 1)
    return (
        f"{inv.path}:{line}: slice_defaults.spares: {wanted} but only {in_service} "
        f"slice{'s are' if in_service != 1 else ' is'} in service, so fewer than {wanted} can be unassigned: "
        f"sign-ups would wait; {_add(inv, wanted - in_service)} appends the missing ones"
    )


def plan_warning(inv: Inventory, rows: dict[int, dict]) -> str | None:
    """After the deploy being planned, fewer in-service slices unassigned than wanted."""
    wanted = inv.slice_defaults.spares
    after = unassigned_after_deploy(inv, rows)
    if len(after) >= wanted:
        return None
    return (
        f"after this deploy {len(after)} of {_in_service(inv)} in-service slices would be unassigned{_ids(after)}, "
        f"fewer than slice_defaults.spares ({wanted}): sign-ups would wait; {_add(inv, wanted - len(after))} "
        f"appends more"
    )


def status_warning(inv: Inventory, rows: dict[int, dict]) -> str | None:
    """Now, fewer in-service slices unassigned than wanted; says whether the next deploy of the
    file as it stands is enough (slices listed but not yet handed to the gateway) or more must
    be added."""
    wanted = inv.slice_defaults.spares
    now = unassigned_now(inv, rows)
    if len(now) >= wanted:
        return None
    head = (
        f"{len(now)} of {_in_service(inv)} in-service slices {'is' if len(now) == 1 else 'are'} unassigned{_ids(now)}, "
        f"fewer than slice_defaults.spares ({wanted}): sign-ups would wait"
    )
    coming = len(unassigned_after_deploy(inv, rows)) - len(now)
    deploy = f"`sliceops deploy -i {inv.path}`"
    if coming >= wanted - len(now):
        return f"{head}; {coming} more in {inv.path} {'awaits' if coming == 1 else 'await'} a deploy: {deploy}"
    return f"{head}; {_add(inv, wanted - len(now) - max(coming, 0))}, then {deploy}"


def summary(inv: Inventory, rows: dict[int, dict]) -> dict:
    """`spares` of `sliceops status --json`: wanted, unassigned now (count and ids), short by."""
    now = unassigned_now(inv, rows)
    wanted = inv.slice_defaults.spares
    return {"wanted": wanted, "unassigned": len(now), "unassigned_ids": now, "short_by": max(0, wanted - len(now))}
