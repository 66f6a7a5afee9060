"""Read a costly fleet fact once per state of the host, not once per operation that asks.

Several operations consult the same fact (`PgFleet` reads every database; `SliceContainers`
every container). Its answer can only change when an operation changed the host, so the
cache is keyed on a generation counter that the deploy's callback bumps after any
operation that executed commands.
"""

from __future__ import annotations

from pyinfra import host

_generation = 0
_cache: dict = {}


def host_changed() -> None:
    global _generation
    _generation += 1


def get(cls, **kwargs):
    key = (host.name, cls, tuple(sorted(kwargs.items())))
    hit = _cache.get(key)
    if hit is not None and hit[0] == _generation:
        return hit[1]
    value = host.get_fact(cls, **kwargs)
    _cache[key] = (_generation, value)
    return value
