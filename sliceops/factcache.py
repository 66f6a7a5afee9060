"""Read a costly fleet fact once per state of what it describes, not once per operation that asks.

Several operations consult the same fact (`PgFleet` reads every role, database and gateway
row; `SliceContainers` every container). Its answer can only change when an operation
changed the host. The deploy's callback (sliceops/report.py) calls `host_changed` after each
operation that changed something, with the subjects that operation said it touches
(`touches`, called from inside the operation), or with none said: then every cached fact is
read again, as it must be after a change the cache knows nothing about.

A caller that reads only part of a fact names that part (`get(..., reads={...})`): the
cached answer stays good until an operation touched one of those subjects. So during an add,
the roles step's new role does not make the databases step read every database again, and
the volume growing by one slice makes no PostgreSQL step read anything again.
"""

from __future__ import annotations

from collections import Counter

from pyinfra import host

EVERYTHING = "*"  # an operation that said nothing: any fact may have changed

_changes: Counter = Counter()  # subject -> changes seen so far in this deploy
_cache: dict = {}
_declared: dict = {}  # (host name, operation hash) -> subjects that operation touches


def touches(*subjects: str) -> None:
    """Called by the running operation, before it yields its commands: what it changes is
    only these subjects (none: it changes nothing a cached fact describes)."""
    _declared[(host.name, getattr(host, "current_op_hash", None))] = frozenset(subjects)


def declared(host_name: str, op_hash: str) -> frozenset | None:
    """What the operation said it touches on that host (None: it said nothing)."""
    return _declared.pop((host_name, op_hash), None)


def host_changed(subjects: frozenset | None = None) -> None:
    """An operation changed the host: what it touched (None: anything) is read again."""
    for subject in subjects if subjects is not None else (EVERYTHING,):
        _changes[subject] += 1


def get(cls, reads: frozenset | set | None = None, owned: bool = False, **kwargs):
    """host.get_fact(cls, **kwargs), cached until an operation touches one of `reads` (None:
    until any operation changes anything). `owned`: what the fact describes is written by
    sliceops' own operations only, each saying so with `touches` (e.g. the TLS folder, by the
    certificate step): an operation that said nothing does not make it be read again."""
    key = (host.name, cls, tuple(sorted(kwargs.items())))
    hit = _cache.get(key)
    if hit is not None and _fresh(hit[0], reads, owned):
        return hit[1]
    value = host.get_fact(cls, **kwargs)
    _cache[key] = (Counter(_changes), value)
    return value


# The subject of what no step of a deploy changes: nothing touches it.
_STEADY = "steady"


def steady(cls, **kwargs):
    """A fact no step of a deploy changes (the init system, the memory): read once per deploy
    and host (an add read the init system four times: once, and again after each change)."""
    return get(cls, reads={_STEADY}, owned=True, **kwargs)


def put(cls, value, **kwargs) -> None:
    """What a step will have made of the fact, for the steps after it to plan from (the
    operation that calls this touches nothing of it: `touches()`)."""
    _cache[(host.name, cls, tuple(sorted(kwargs.items())))] = (Counter(_changes), value)


def _fresh(seen: Counter, reads, owned: bool = False) -> bool:
    if reads is None:
        return seen == _changes
    # An owned fact with subjects named ignores changes nobody declared (EVERYTHING).
    subjects = tuple(reads) if owned and reads else (EVERYTHING, *reads)
    return all(seen[s] == _changes[s] for s in subjects)
