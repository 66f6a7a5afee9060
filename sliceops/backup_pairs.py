"""Which database dump and which data-directory archive a fleet restore puts back together.

A slice on a pure slice host has its backup in two parts, each taken by its own host's agent
(the dump on the database host, the archive where its data is) and listed by each with
`list ID --json`. Nothing but time ties the two parts of one run together: `sliceops backup`
runs one agent after the other, the nightly timers fire on each host at the same hour, and a
destroy takes both final parts in turn. So the parts are paired by kind and start time: of all
the (dump, archive) couples of one kind, the closest in time are paired first, each backup in
at most one pair, never two further apart than PAIR_WINDOW. A pair is restorable when both
its parts verified (a restore's own `pre-restore` backups are never chosen, as one host's
restore never chooses them); the newest restorable pair, with `--at` the newest whose parts
both started at or before it, is the one restored. Pairing over every backup, failed ones
included, keeps a failed part from being replaced by the next run's good one: that pair is
simply not restorable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Half the nightly period: the parts of one nightly run start well within it of each other
# (the same hour on each host, one queue of slices each), and two nights' runs never do.
PAIR_WINDOW = dt.timedelta(hours=12)


@dataclass(frozen=True)
class Pair:
    database: dict  # the database host's row (`list --json`) of the dump
    data: dict  # the slice host's row of the data directory's archive

    @property
    def at(self) -> dt.datetime:
        """When the later part started: the pair as a whole is this old."""
        return max(started(self.database), started(self.data))


def parse_time(text: str) -> dt.datetime:
    """An ISO time as the agent reads `--at` ('2026-12-01T03:00', '2026-12-01 03:00:00Z',
    '2026-12-01'): naive means UTC. ValueError when it is not one."""
    t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def started(row: dict) -> dt.datetime:
    return parse_time(row["at"])


def pairs(database: list[dict], data: list[dict]) -> list[Pair]:
    """Every pair of one run's parts (see the module's docstring), oldest first."""
    couples = sorted(
        (abs(started(a) - started(b)), i, j)
        for i, a in enumerate(database)
        for j, b in enumerate(data)
        if a.get("kind") == b.get("kind") and abs(started(a) - started(b)) <= PAIR_WINDOW
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for _, i, j in couples:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append(Pair(database[i], data[j]))
    return sorted(out, key=lambda p: (p.at, p.database["path"]))


def restorable(pair: Pair) -> bool:
    return all(part.get("verified") and part.get("kind") != "pre-restore" for part in (pair.database, pair.data))


def choose(database: list[dict], data: list[dict], at: dt.datetime | None = None) -> Pair | None:
    """The newest restorable pair whose parts both started at or before `at` (any time if
    None); None when there is none."""
    fit = [p for p in pairs(database, data) if restorable(p) and (at is None or p.at <= at)]
    return fit[-1] if fit else None
