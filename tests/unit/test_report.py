"""`sliceops report` without a target: options, the psql answer's parsing, time ticks,
the page's figures, and charts drawn from made-up series."""

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from sliceops import cli
from sliceops.inventory import load
from sliceops.reporting import build, charts, command, page, query

INV = """target: "@local"
instance: t1
slices:
  - id: 1
  - id: 2
    memory: 128m
  - id: 3
    status: suspended
  - id: 9
    status: destroying
"""


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text(INV)
    return load(path)


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("24h", 86400), ("7d", 604800), ("366d", 366 * 86400)])
def test_since_takes_minutes_hours_days(text, seconds):
    assert query.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["0h", "24", "1w", "-1d", "367d", "1.5h", ""])
def test_a_bad_since_is_refused(text):
    with pytest.raises(ValueError, match="not a duration like 90m, 24h or 7d"):
        query.parse_since(text)


@pytest.mark.parametrize("since, interval, step", [(86400, 60, 300), (604800, 60, 2100), (3600, 60, 60),
                                                   (3600, 300, 300)])
def test_buckets_are_whole_minutes_at_most_288_and_never_below_the_interval(since, interval, step):
    assert query.bucket_seconds(since, interval) == step
    assert since / step <= query.BUCKETS or step == interval


def test_slices_default_to_every_kept_slice_and_take_ranges(inv):
    assert command.parse_slices(None, inv) == [1, 2, 3]  # not the one being destroyed
    assert command.parse_slices("2, 1-3", inv) == [1, 2, 3]
    assert command.parse_slices("1-100", inv) == [1, 2, 3]


@pytest.mark.parametrize("text, message", [
    ("4", "slice 4 is not in"), ("a", "'a' is not a slice id or a range"), ("3-1", "'3-1' is not"),
    ("50-60", "names no slice of"), ("9", "slice 9 is not in"),
])
def test_bad_slices_are_refused(inv, text, message):
    with pytest.raises(ValueError, match=message):
        command.parse_slices(text, inv)


@pytest.mark.parametrize("args, line", [
    (["--since", "2w"], "sliceops: report: --since: '2w' is not a duration like 90m, 24h or 7d (at most 366d)"),
    (["--slices", "7"], "sliceops: report: --slices: slice 7 is not in {inv}"),
    (["--tz", "Mars/Olympus"], "sliceops: report: --tz: 'Mars/Olympus' is not a time zone name like UTC or Europe/Berlin"),
    (["--out", "{file}"], "sliceops: report: --out: {file} exists and is not a directory"),
])
def test_a_users_mistake_is_one_line_and_exit_2_before_reading_the_target(tmp_path, capsys, args, line):
    path = tmp_path / "inv.yaml"
    path.write_text(INV.replace('"@local"', '"ssh://root@192.0.2.1"'))  # never reached
    afile = tmp_path / "afile"
    afile.write_text("")
    args = [a.replace("{file}", str(afile)) for a in args]
    argv = ["report", "-i", str(path)] + (["--out", str(tmp_path / "o")] if "--out" not in args else []) + args
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == line.format(inv=path, file=afile) + "\n"


def test_out_is_required(tmp_path, capsys):
    path = tmp_path / "inv.yaml"
    path.write_text(INV)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "-i", str(path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "sliceops report: the following arguments are required: --out"


ANSWER = "N|1796140800\n" + "\n".join([
    "S\t1\t1796137200\t104857600\t2.50\t4096\tCONNECTED",
    "S\t1\t1796137500\t\\N\t\\N\t\\N\tCONTAINER_STOPPED",
    "S\t2\t1796137200\t125829120\t10.00\t8192\tUNPAIRED",
    "V\t1796137200\t100\t1000\t0\t0\t12.50\t10\t100",
]) + "\n"


def test_the_psql_answer_becomes_series_with_the_inventorys_limits(inv):
    t = query.parse(ANSWER, inv, 3600, 300, [1, 2, 3])
    assert (t.end, t.start, t.step) == (1796140800, 1796137200, 300)
    one, two, three = t.slices[1], t.slices[2], t.slices[3]
    assert one.memory_limit == 256 * 2**20 and two.memory_limit == 128 * 2**20
    assert one.disk_quota == 2 * 2**30  # the default quota (slice_defaults.disk: 2g)
    assert list(one.times) == [1796137200, 1796137500] and one.states == ["CONNECTED", "CONTAINER_STOPPED"]
    assert one.rss[0] == 104857600 and np.isnan(one.rss[1])
    assert len(three.times) == 0  # no rows: an empty series, not an error
    assert list(t.server.cpu) == [12.5] and list(t.server.ram_total) == [1000]


@pytest.mark.parametrize("text", ["", "psql: error: something\n", "N|1\nS\t1\t2\n"])
def test_an_unexpected_answer_is_a_remote_state_error(inv, text):
    from sliceops.errors import RemoteStateError

    with pytest.raises(RemoteStateError):
        query.parse(text, inv, 3600, 300, [1])


def test_the_psql_call_passes_the_window_and_ids_as_variables(inv):
    argv = query.psql_argv(inv, 86400, 300, [1, 2])
    assert argv[:5] == ["runuser", "-u", "postgres", "--", "psql"]
    assert ["-v", "since=86400", "-v", "step=300", "-v", "ids={1,2}"] == argv[-6:]
    assert ["-p", "5432", "-d", "wank_saas"] == argv[8:12]


def test_time_ticks_fall_on_round_local_hours_and_name_the_day_when_it_changes():
    tz = ZoneInfo("Europe/Berlin")
    end = datetime(2026, 12, 1, 12, 30, tzinfo=tz).timestamp()
    positions, labels = charts.time_ticks(end - 86400, end, tz)
    assert labels == ["Nov 30\n15:00", "18:00", "21:00", "Dec 01\n00:00", "03:00", "06:00", "09:00", "12:00"]
    assert all(datetime.fromtimestamp(p, tz).minute == 0 for p in positions)


def test_time_ticks_across_a_dst_change_stay_on_local_midnights():
    tz = ZoneInfo("Europe/Berlin")
    end = datetime(2026, 4, 1, tzinfo=tz).timestamp()
    positions, labels = charts.time_ticks(end - 7 * 86400, end, tz)
    assert labels[0] == "Mar 25" and labels[-1] == "Apr 01" and len(labels) == 8
    assert {datetime.fromtimestamp(p, tz).hour for p in positions} == {0}


def test_a_summary_row_is_what_the_window_shows(inv):
    t = query.parse(ANSWER, inv, 3600, 300, [1, 2])
    one = page.summarize(t.slices[1], "active")
    assert (one.peak_memory_pct, one.mean_cpu, one.last_disk, one.last_state, one.connected_pct) == \
        (39.1, 2.5, 4096.0, "CONTAINER_STOPPED", 50.0)
    two = page.summarize(t.slices[2], "active")
    assert two.peak_memory_pct == 93.8 and two.hot is True  # 120 MiB of 128 MiB


def test_the_hottest_slices_get_the_detailed_charts_when_there_are_many():
    rows = [page.SliceSummary(i, "active", float(i % 50), None, None, None, "", None) for i in range(1, 101)]
    chosen = build.detailed(rows)
    assert len(chosen) == build.DETAIL_MAX
    assert {r.id for r in rows if r.peak_memory_pct >= 38} <= set(chosen)
    assert build.detailed(rows[:5]) == [1, 2, 3, 4, 5]


def test_a_report_is_written_from_made_up_series(tmp_path, inv):
    t = query.parse(ANSWER, inv, 3600, 300, [1, 2, 3])
    index = build.write(inv, t, tmp_path, timezone.utc, "UTC", datetime(2026, 12, 1, tzinfo=timezone.utc))
    html = index.read_text()
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["fleet-cpu.png", "fleet-disk.png", "fleet-memory.png", "fleet-whatsapp.png", "server.png",
                     "slice-1.png", "slice-2.png", "slice-3.png"]
    for name in names:
        assert f'src="{name}"' in html
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in html.replace('name="viewport"', "")  # nothing fetched from a network
