"""What a deploy would change, as sentences an operator reads per slice (`sliceops plan`).

Operations record planned changes here while pyinfra computes their commands (`record`),
before they yield any: in a dry run (`pyinfra --dry` without `-y`) that computation runs
against the current state of the target and nothing executes. `collect` then walks the
prepared operations: each recorded entry of an operation that would change something is
kept, and an operation that would change something without saying what is named by its
own `name=` (a sentence). `render` turns the entries into one line per subject and a count.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pyinfra import host

# Exit statuses of `sliceops plan` (2 is a user's error, as for every command).
NO_CHANGES = 0
FAILED = 1
CHANGES = 3


@dataclass(frozen=True)
class Change:
    """One planned change: `subject` ("slice 4", "monitor", "host"), `what` happens to it
    ("new", "container recreated", "restarted"), and an optional detail ("memory 256m -> 512m").
    `changes` is False for what is reported but left alone (an orphan); `refused` marks a
    step the deploy would stop at; `warning` a sentence for stderr that changes nothing
    (too few spare slices)."""

    subject: str
    what: str
    detail: str = ""
    slice_id: int | None = None
    changes: bool = True
    refused: bool = False
    warning: bool = False


# The subject of a step that changes the host without saying more than its operation's name.
HOST = "host"

_recorded: list[tuple[str | None, Change]] = []


def _current_op() -> str | None:
    """The hash of the operation being planned (None outside pyinfra's host context)."""
    return host.current_op_hash


def record(subject: str, what: str, detail: str = "", slice_id: int | None = None, changes: bool = True) -> None:
    """Note a change the current operation makes; call it before the operation's first yield."""
    entry = (_current_op(), Change(subject, what, detail, slice_id, changes))
    if entry not in _recorded:
        _recorded.append(entry)


def for_slice(slice_id: int, what: str, detail: str = "", changes: bool = True) -> None:
    record(f"slice {slice_id}", what, detail, slice_id, changes)


def refused(message: str) -> None:
    """The current operation would stop the deploy with `message`."""
    entry = (_current_op(), Change("deploy", "would stop", message, refused=True))
    if entry not in _recorded:
        _recorded.append(entry)


def warn(message: str) -> None:
    """A warning `sliceops plan` prints on stderr; it is no change and leaves the exit status."""
    entry = (_current_op(), Change("plan", "warning", message, changes=False, warning=True))
    if entry not in _recorded:
        _recorded.append(entry)


def warnings(changes: list[Change]) -> list[str]:
    return [c.detail for c in changes if c.warning]


def planned(subject: str) -> bool:
    """Whether an earlier operation of this run recorded a change to `subject`."""
    return any(c.subject == subject and c.changes for _, c in _recorded)


def recorded_for(op_hash: str | None) -> list[Change]:
    return [c for h, c in _recorded if h == op_hash]


def reset() -> None:
    _recorded.clear()


# --------------------------------------------------------------------------- collect


def _if_holds(global_arguments: dict) -> bool:
    """pyinfra evaluates an operation's `_if` only while executing; a dry run asks here.
    The conditions sliceops passes (`operations.util.changed`) answer in both phases."""
    conditions = global_arguments.get("_if")
    if conditions is None:
        return True
    if callable(conditions):
        conditions = [conditions]
    try:
        return all(cond() for cond in conditions)
    except RuntimeError:  # a condition that only answers after execution: assume it holds
        return True


def collect(state) -> list[Change]:
    """The planned changes of a prepared (not executed) pyinfra run, in deploy order."""
    out: list[Change] = []
    for target in state.inventory:
        for op_hash in state.get_op_order():
            try:
                data = state.get_op_data_for_host(target, op_hash)
            except KeyError:
                continue
            mine = recorded_for(op_hash)
            # The change check's answer, kept by pyinfra (`will_change` would run the operation again).
            changing = bool(data.operation_meta._maybe_is_change) and _if_holds(data.global_arguments)
            out += [c for c in mine if not c.changes or c.refused or changing]
            if changing and not mine and not getattr(data.operation_meta, "sliceops_explained", False):
                name = ", ".join(sorted(state.get_op_meta(op_hash).names))
                out.append(Change(HOST, name))
    unique: list[Change] = []
    for c in out:
        if c not in unique:
            unique.append(c)
    return unique


def dump(changes: list[Change]) -> str:
    return json.dumps([asdict(c) for c in changes])


def load(text: str) -> list[Change]:
    return [Change(**row) for row in json.loads(text)]


# --------------------------------------------------------------------------- render


def _order(subject_changes: tuple[str, list[Change]]):
    subject, changes = subject_changes
    sid = changes[0].slice_id
    # Slices by id first; then the rest in deploy order (their first appearance).
    return (0, sid, 0) if sid is not None else (1, 0, 0)


def lines(changes: list[Change]) -> list[str]:
    """One sentence per subject: what happens to it, grouped ("slice 4: new: role, database
    from the template, gateway row, container on 127.0.0.1:5007")."""
    by_subject: dict[str, list[Change]] = {}
    for c in changes:
        if not c.refused and not c.warning:
            by_subject.setdefault(c.subject, []).append(c)
    out = []
    for subject, items in sorted(by_subject.items(), key=_order):
        if subject == HOST:  # steps named by their own sentence: one line each
            out += [f"{HOST}: {c.what}" for c in items]
            continue
        groups: dict[str, list[str]] = {}
        for c in items:
            details = groups.setdefault(c.what, [])
            if c.detail and c.detail not in details:
                details.append(c.detail)
        parts = [f"{what}: {', '.join(details)}" if details else what for what, details in groups.items()]
        out.append(f"{subject}: {'; '.join(parts)}")
    return out


def summary(changes: list[Change]) -> str:
    """The closing count: how many slices and other parts would change, orphans left alone."""
    changing = {c.subject for c in changes if c.changes and not c.refused}
    slices = {c.subject for c in changes if c.changes and not c.refused and c.slice_id is not None}
    orphans = {c.subject for c in changes if not c.changes and not c.warning}
    others = len(changing) - len(slices)
    if not changing:
        head = "nothing would change"
    else:
        head = (f"{len(changing)} would change: {len(slices)} slice{'s' if len(slices) != 1 else ''}, "
                f"{others} other{'s' if others != 1 else ''}")
    if orphans:
        head += f"; {len(orphans)} orphan{'s' if len(orphans) != 1 else ''} left intact"
    return f"plan: {head}"


def exit_status(changes: list[Change]) -> int:
    if any(c.refused for c in changes):
        return FAILED
    return CHANGES if any(c.changes for c in changes) else NO_CHANGES
