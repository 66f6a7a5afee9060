"""The daemon's moving parts without services: status line, fixed beat, buffer,
retry helper, sd_notify, and a cycle driven by fakes."""

import logging
import os
import socket
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest


from sliceops_monitor.buffer import Outbox  # noqa: E402
from sliceops_monitor.config import parse  # noqa: E402
from sliceops_monitor.cycle import Monitor, failed_status_line, status_line  # noqa: E402
from sliceops_monitor.daemon import Beat  # noqa: E402
from sliceops_monitor.database import WriteResult  # noqa: E402
from sliceops_monitor.errors import DatabaseError, DatabaseUnavailable, RetryFailed  # noqa: E402
from sliceops_monitor.retry import Retry  # noqa: E402
from sliceops_monitor.samples import CycleBatch, ServerSample, SliceSample  # noqa: E402
from sliceops_monitor.sdnotify import Notifier  # noqa: E402
from sliceops_monitor.collect import CollectNotes  # noqa: E402


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------- status line

def test_status_line_all_ok():
    line = status_line(42, slices=3, ok=3, failed={}, server=True, written=4, buffered=0, elapsed=0.0213)
    assert line == "cycle 42: 3 slices (3 ok), server row, wrote 4 rows, 0 buffered, 0.021s"


def test_status_line_counts_failures_by_state_and_adds_notes():
    line = status_line(7, slices=4, ok=1, failed=Counter(CONTAINER_STOPPED=2, BACKEND_TIMEOUT=1), server=False,
                       written=0, buffered=3, elapsed=2.5, notes=["database unavailable"])
    assert line == ("cycle 7: 4 slices (1 ok, 1 BACKEND_TIMEOUT, 2 CONTAINER_STOPPED), no server row, "
                    "wrote 0 rows, 3 buffered, database unavailable, 2.500s")


def test_status_line_singular_and_empty():
    assert status_line(1, slices=1, ok=1, failed={}, server=True, written=1, buffered=0, elapsed=0.001) == \
        "cycle 1: 1 slice (1 ok), server row, wrote 1 row, 0 buffered, 0.001s"
    assert status_line(2, slices=0, ok=0, failed={}, server=True, written=1, buffered=0, elapsed=0.001) == \
        "cycle 2: 0 slices, server row, wrote 1 row, 0 buffered, 0.001s"


def test_failed_status_line():
    assert failed_status_line(9, ValueError("bad value\nmore"), 0.0041) == "cycle 9: failed (ValueError: bad value), 0.004s"
    assert failed_status_line(9, KeyError(), 0.0) == "cycle 9: failed (KeyError), 0.000s"


# --------------------------------------------------------------------------- fixed beat

def test_beat_keeps_a_fixed_grid_whatever_the_cycle_takes():
    clock = FakeClock(100.0)
    beat = Beat(60, clock)
    assert beat.remaining() == 0  # the first cycle runs at once
    clock.now += 0.7               # a cycle
    assert beat.advance() is True
    assert beat.next_run == 160.0 and beat.remaining() == pytest.approx(59.3)
    clock.now = 160.0
    clock.now += 12.0              # a slow cycle, still within the beat
    beat.advance()
    assert beat.next_run == 220.0  # not 172 + 60: no drift


def test_beat_overrun_is_logged_and_not_piled_up(caplog):
    clock = FakeClock(0.0)
    beat = Beat(10, clock)
    clock.now = 35.0               # the first cycle took 3.5 beats
    with caplog.at_level(logging.WARNING):
        assert beat.advance() is False
    assert "overran its 10s beat by 25.000s" in caplog.text
    assert beat.remaining() == 0   # the next cycle starts now ...
    clock.now = 36.0
    beat.advance()
    assert beat.next_run == 45.0   # ... and then the beat resumes: no burst of missed cycles


# --------------------------------------------------------------------------- buffer

def batch(n: int, slices: int = 2) -> CycleBatch:
    return CycleBatch(n, datetime(2030, 1, 1, tzinfo=timezone.utc),
                      [SliceSample(i, "CONNECTED") for i in range(slices)], None)


def test_outbox_is_bounded_and_logs_each_drop(caplog):
    box = Outbox(3)
    with caplog.at_level(logging.WARNING):
        for n in range(1, 6):
            box.push(batch(n))
    assert len(box) == 3 and box.oldest().number == 3
    assert (box.dropped_cycles, box.dropped_rows) == (2, 4)
    assert caplog.text.count("buffer full (3 cycles): dropped cycle") == 2
    assert box.rows == 6


def test_outbox_resize_keeps_the_newest():
    box = Outbox(5)
    for n in range(1, 6):
        box.push(batch(n))
    box.resize(2)
    assert [box.pop_oldest().number for _ in range(len(box))] == [4, 5]
    assert box.dropped_cycles == 3


# --------------------------------------------------------------------------- retry

def test_retry_backs_off_with_jitter_until_it_succeeds():
    clock = FakeClock()
    calls = []

    def flaky():
        calls.append(clock.now)
        if len(calls) < 4:
            raise DatabaseUnavailable("down")
        return "ok"

    retry = Retry(deadline=10, delay=0.2, max_delay=2, jitter=0.25, retry_on=(DatabaseUnavailable,),
                  sleep=clock.sleep, clock=clock, rng=lambda: 1.0)
    assert retry(flaky) == "ok"
    pauses = [b - a for a, b in zip(calls, calls[1:])]
    assert pauses == pytest.approx([0.25, 0.5, 1.0])  # 0.2 * 2^n, plus the maximum +25 % jitter


def test_retry_gives_up_before_the_deadline():
    clock = FakeClock()

    def down():
        raise DatabaseUnavailable("still down")

    retry = Retry(deadline=3, delay=1, backoff=2, jitter=0, retry_on=(DatabaseUnavailable,),
                  sleep=clock.sleep, clock=clock)
    with pytest.raises(RetryFailed, match="failed 3 times in 3.0s: still down") as info:
        retry(down)
    assert isinstance(info.value.__cause__, DatabaseUnavailable)
    assert clock.now - 1000.0 <= 3


def test_retry_does_not_retry_other_errors():
    calls = []

    def broken():
        calls.append(1)
        raise DatabaseError("permission denied")

    with pytest.raises(DatabaseError):
        Retry(deadline=10, retry_on=(DatabaseUnavailable,), sleep=lambda s: None)(broken)
    assert len(calls) == 1


# --------------------------------------------------------------------------- sd_notify

@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    yield path, sock
    sock.close()


def test_notifier_sends_ready_and_watchdog(notify_socket):
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "180000000", "WATCHDOG_PID": str(os.getpid())})
    n.ready()
    assert sock.recv(4096) == b"READY=1"
    n.watchdog("cycle 1: ok")
    assert sock.recv(4096) == b"WATCHDOG=1\nSTATUS=cycle 1: ok"


def test_notifier_does_not_feed_another_process_watchdog(notify_socket):
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    n.watchdog("s")
    assert sock.recv(4096) == b"STATUS=s"


def test_notifier_abstract_socket():
    name = f"sliceops-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_notifier_without_systemd_is_silent():
    n = Notifier({})
    assert not n.enabled and n.notify("READY=1") is False


# --------------------------------------------------------------------------- a cycle with fakes

RAW = {"interval": 10, "buffer_cycles": 3, "prune_interval": 100,
       "slices": [{"id": 1, "port": 5001, "container": "wa-slice-1", "cgroup": "s1", "data_dir": "/srv/1"},
                  {"id": 2, "port": 5003, "container": "wa-slice-2", "cgroup": "s2", "data_dir": "/srv/2"}]}
CONFIG = parse(RAW)
SERVER = ServerSample(1, 2, 0, 0, 5.0, 10, 20)


class FakeCollector:
    def __init__(self, fail=False):
        self.fail = fail

    def collect(self, number):
        if self.fail:
            raise ZeroDivisionError("boom")
        b = CycleBatch(number, datetime.now(timezone.utc),
                       [SliceSample(1, "CONNECTED", answered=True), SliceSample(2, "CONTAINER_STOPPED")], SERVER)
        return b, CollectNotes()

    def start(self):
        pass

    def reconfigure(self, config):
        pass

    def close(self):
        pass


class FakeDatabase:
    def __init__(self):
        self.down = False
        self.error = None
        self.written: list[int] = []
        self.prunes = 0

    def write(self, b):
        if self.down:
            raise DatabaseUnavailable("connection refused")
        if self.error:
            raise DatabaseError(self.error)
        self.written.append(b.number)
        return WriteResult(b.rows)

    def prune(self, days):
        if self.down:
            raise DatabaseUnavailable("connection refused")
        self.prunes += 1
        return {"telemetry": 5, "server_telemetry": 1}

    sizes = 0
    sizes_error = None

    def record_database_sizes(self):
        if self.sizes_error:
            raise DatabaseError(self.sizes_error)
        self.sizes += 1
        return 200

    def close(self):
        pass


def make_monitor(clock=None, **kw):
    db = FakeDatabase()
    return Monitor(CONFIG, collector=kw.get("collector", FakeCollector()), database=db, clock=clock or FakeClock()), db


def test_cycle_writes_and_prunes_on_the_first_cycle():
    m, db = make_monitor()
    line = m.run_cycle()
    assert line.startswith("cycle 1: 2 slices (1 ok, 1 CONTAINER_STOPPED), server row, wrote 3 rows, 0 buffered, "
                           "pruned 6 rows, ")
    assert db.written == [1] and db.prunes == 1
    m.run_cycle()
    assert db.prunes == 1  # not due again for prune_interval


def test_database_sizes_are_recorded_on_the_first_cycle_then_every_disk_interval(caplog):
    # The database host's monitor (database_sizes: true) measures every slice database's size
    # with its first cycle and then once per disk_interval, not every cycle: the walk is the
    # cost `sliceops status` no longer pays.
    clock = FakeClock()
    db = FakeDatabase()
    config = parse({**RAW, "database_sizes": True, "disk_interval": 25})
    m = Monitor(config, collector=FakeCollector(), database=db, clock=clock)
    lines = []
    for _ in range(4):  # cycles at 0, 10, 20, 30 s
        lines.append(m.run_cycle())
        clock.now += 10
    assert db.sizes == 2
    assert ", sized 200 databases, " in lines[0] and ", sized 200 databases, " in lines[3]
    assert "sized" not in lines[1] + lines[2]
    db.sizes_error = "function sliceops.record_database_sizes() does not exist"
    clock.now += 30
    with caplog.at_level(logging.WARNING):
        line = m.run_cycle()
    assert "sized" not in line and "wrote 3 rows" in line  # the cycle's rows are written all the same
    assert "recording database sizes failed" in caplog.text


def test_only_the_monitor_told_to_records_database_sizes():
    m, db = make_monitor()  # database_sizes absent: a slice host's monitor, or an older config
    for _ in range(3):
        m.run_cycle()
    assert db.sizes == 0
    m.reload(parse({**RAW, "database_sizes": True}))
    assert "sized 200 databases" in m.run_cycle()


def test_a_failing_cycle_logs_the_traceback_and_returns_a_status(caplog):
    m, db = make_monitor(collector=FakeCollector(fail=True))
    with caplog.at_level(logging.ERROR):
        line = m.run_cycle()
    assert line.startswith("cycle 1: failed (ZeroDivisionError: boom), ")
    assert "Traceback" in caplog.text and "cycle 1 failed" in caplog.text


def test_database_down_buffers_and_replays_in_order_when_back(caplog):
    m, db = make_monitor()
    db.down = True
    with caplog.at_level(logging.WARNING):
        lines = [m.run_cycle() for _ in range(2)]
    assert all("wrote 0 rows" in l and "database unavailable" in l for l in lines)
    assert ", 2 buffered, " in lines[1]
    assert caplog.text.count("PostgreSQL unavailable") == 1  # said once per outage
    db.down = False
    line = m.run_cycle()
    assert "wrote 9 rows, 0 buffered" in line
    assert db.written == [1, 2, 3]


def test_a_long_outage_drops_the_oldest_cycles_only():
    m, db = make_monitor()
    db.down = True
    for _ in range(5):
        m.run_cycle()
    assert len(m.outbox) == 3 and m.outbox.dropped_cycles == 2
    db.down = False
    m.run_cycle()
    assert db.written == [4, 5, 6]


def test_a_statement_error_keeps_the_rows_for_later(caplog):
    m, db = make_monitor()
    db.error = "permission denied for table telemetry"
    with caplog.at_level(logging.ERROR):
        line1, line2 = m.run_cycle(), m.run_cycle()
    assert "database error" in line2 and "2 buffered" in line2
    assert caplog.text.count("permission denied") == 1
    db.error = None
    m.run_cycle()
    assert db.written == [1, 2, 3]


def test_rows_the_database_refuses_are_dropped_not_retried_forever(caplog):
    from sliceops_monitor.errors import RowsRejected

    m, db = make_monitor()
    real = db.write
    calls = []

    def write(b):
        calls.append(b.number)
        if b.number == 1:
            raise RowsRejected("value out of range")
        return real(b)

    db.write = write
    with caplog.at_level(logging.ERROR):
        line = m.run_cycle()
        m.run_cycle()
    assert "0 buffered" in line and "refused the rows of cycle 1" in caplog.text
    assert db.written == [2] and m.outbox.dropped_cycles == 1


class RecordingMetrics:
    def __init__(self, fail=False):
        self.observed, self.wrote, self.fail = [], [], fail

    def observe(self, batch, config, duration, buffered):
        self.observed.append((batch.number, buffered))

    def written(self, batch, unknown, active, total):
        self.wrote.append(batch.number)
        if self.fail:
            raise RuntimeError("metrics bug")

    def forget(self, keep):
        pass


def test_the_metrics_see_each_cycle_and_each_batch_once_it_is_written():
    m, db = make_monitor()
    m.metrics = RecordingMetrics()
    db.down = True
    m.run_cycle()
    db.down = False
    m.run_cycle()
    assert m.metrics.observed == [(1, 1), (2, 0)]
    assert m.metrics.wrote == [1, 2]  # the buffered cycle too, once it reached the database


def test_a_metrics_fault_never_writes_a_batch_twice(caplog):
    m, db = make_monitor()
    m.metrics = RecordingMetrics(fail=True)
    with caplog.at_level(logging.ERROR):
        m.run_cycle()
        m.run_cycle()
    assert db.written == [1, 2] and len(m.outbox) == 0
    assert "recording written rows for the metrics failed" in caplog.text
