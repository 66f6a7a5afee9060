"""Which dump and which data archive a fleet restore puts back together (sliceops/backup_pairs.py):
the two parts of one run, paired by kind and nearest start time, never across nights."""

from __future__ import annotations

import datetime as dt

import pytest

from sliceops import backup_pairs


def row(at: str, kind: str = "manual", verified: bool = True) -> dict:
    return {"at": at, "kind": kind, "verified": verified, "path": f"/b/slice-1/{at}-{kind}"}


def test_two_manual_runs_minutes_apart_are_not_mixed_when_each_lost_a_part():
    """10:00's data part and 10:05's dump failed: 10:00's dump and 10:05's data are good, but
    from different runs, so nothing is restorable."""
    dumps = [row("2026-12-02T10:00:00Z"), row("2026-12-02T10:05:00Z", verified=False)]
    data = [row("2026-12-02T10:00:03Z", verified=False), row("2026-12-02T10:05:02Z")]
    assert [(p.database["at"], p.data["at"]) for p in backup_pairs.pairs(dumps, data)] == [
        ("2026-12-02T10:00:00Z", "2026-12-02T10:00:03Z"), ("2026-12-02T10:05:00Z", "2026-12-02T10:05:02Z")]
    assert backup_pairs.choose(dumps, data) is None


def test_a_night_without_one_part_pairs_nothing_with_the_next_or_last_night():
    dumps = [row("2026-12-01T03:00:05Z", "scheduled"), row("2026-12-02T03:00:05Z", "scheduled")]
    data = [row("2026-12-01T03:00:01Z", "scheduled")]  # app1 was down on the 2nd
    chosen = backup_pairs.choose(dumps, data)
    assert (chosen.database["at"], chosen.data["at"]) == ("2026-12-01T03:00:05Z", "2026-12-01T03:00:01Z")
    assert chosen.at == dt.datetime(2026, 12, 1, 3, 0, 5, tzinfo=dt.timezone.utc)
    late = [row("2026-12-01T16:00:00Z", "scheduled")]  # over PAIR_WINDOW from the 1st's dump
    assert backup_pairs.pairs(dumps[:1], late) == []


def test_parts_of_different_kinds_and_pre_restore_ones_are_never_restored():
    dumps = [row("2026-12-02T10:00:00Z", "final"), row("2026-12-02T11:00:00Z", "pre-restore")]
    data = [row("2026-12-02T10:00:01Z", "manual"), row("2026-12-02T11:00:01Z", "pre-restore")]
    assert backup_pairs.choose(dumps, data) is None
    final = backup_pairs.choose(dumps, data + [row("2026-12-02T09:59:58Z", "final")])
    assert final.data["kind"] == final.database["kind"] == "final"


@pytest.mark.parametrize(("text", "utc"), [
    ("2026-12-01T03:00", "2026-12-01T03:00:00+00:00"),
    ("2026-12-01 04:00:00+01:00", "2026-12-01T03:00:00+00:00"),
    ("2026-12-01T03:00:00Z", "2026-12-01T03:00:00+00:00"),
    ("2026-12-01", "2026-12-01T00:00:00+00:00"),
])
def test_at_is_read_as_the_agent_reads_it(text, utc):
    assert backup_pairs.parse_time(text).isoformat() == utc


@pytest.mark.parametrize("text", ["x", "2026-13-01", "yesterday", ""])
def test_what_is_not_a_time_is_a_value_error(text):
    with pytest.raises(ValueError):
        backup_pairs.parse_time(text)
