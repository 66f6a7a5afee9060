"""The monitor's Prometheus metrics: what a scrape shows for a cycle, read back with
prometheus_client's own parser; the loopback server; and the config keys."""

import logging
import socket
import urllib.request
from datetime import datetime, timezone

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sliceops_monitor.config import parse
from sliceops_monitor.errors import ConfigError
from sliceops_monitor.metrics import ADDRESS, Exporter
from sliceops_monitor.samples import CycleBatch, ServerSample, SliceSample

RAW = {
    "instance": "t1",
    "metrics_port": 9999,
    "slices": [
        {"id": 1, "port": 5001, "container": "t1-wa-slice-1", "cgroup": "s1", "data_dir": "/d/1", "disk_quota_bytes": 1073741824},
        {"id": 2, "port": 5003, "container": "t1-wa-slice-2", "cgroup": "s2", "data_dir": "/d/2"},
        {"id": 3, "port": 5005, "container": "t1-wa-slice-3", "cgroup": "s3", "data_dir": "/d/3"},
    ],
}
CONFIG = parse(RAW)
AT = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def batch(number=1, at=AT) -> CycleBatch:
    b = CycleBatch(number, at)
    b.slices = [
        SliceSample(1, "CONNECTED", rss_bytes=100 * 2**20, cpu_percent=3.5, disk_bytes=5 * 2**20,
                    wa_phone="+49151", answered=True, cpu_ns=12_500_000_000, memory_limit_bytes=256 * 2**20),
        SliceSample(2, "QR_PENDING", rss_bytes=50 * 2**20, disk_bytes=None, answered=True, cpu_ns=None,
                    memory_limit_bytes=None),
        SliceSample(3, "CONTAINER_STOPPED", disk_bytes=4096),
    ]
    b.server = ServerSample(ram_used_bytes=2 * 2**30, ram_total_bytes=8 * 2**30, swap_used_bytes=0,
                            swap_total_bytes=2**30, cpu_percent=25.0, disk_used_bytes=10 * 2**30,
                            disk_total_bytes=100 * 2**30)
    return b


def scrape(exporter: Exporter) -> dict:
    """{sample name: {labels tuple: value}} from the exposition, parsed as Prometheus would."""
    text = generate_latest(exporter.registry).decode()
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = tuple(sorted(s.labels.items()))
            out.setdefault(s.name, {})[key] = s.value
    return out


def labels(slice_id, **extra):
    return tuple(sorted({"slice": str(slice_id), "container": f"t1-wa-slice-{slice_id}", **extra}.items()))


def test_before_the_first_cycle_only_the_monitor_itself_is_described():
    got = scrape(Exporter(0))
    assert got["sliceops_monitor_cycles_total"] == {(): 0.0}
    assert not any(name.startswith("sliceops_slice_") for name in got)


def test_a_cycle_is_shown_per_slice_with_cadvisor_names_and_units():
    ex = Exporter(0)
    ex.collector.observe(batch(), CONFIG, 0.25, 0)
    got = scrape(ex)
    assert got["sliceops_slice_memory_working_set_bytes"] == {labels(1): 100 * 2**20, labels(2): 50 * 2**20}
    # Unlimited or unknown limits are absent, not 0 (a 0 limit would read as 100% used).
    assert got["sliceops_slice_spec_memory_limit_bytes"] == {labels(1): 256 * 2**20}
    assert got["sliceops_slice_cpu_usage_seconds_total"] == {labels(1): 12.5}
    assert got["sliceops_slice_fs_usage_bytes"] == {labels(1): 5 * 2**20, labels(3): 4096}
    assert got["sliceops_slice_fs_limit_bytes"] == {labels(1): 1073741824}
    assert got["sliceops_slice_whatsapp_connected"] == {labels(1): 1, labels(2): 0, labels(3): 0}
    assert got["sliceops_slice_up"] == {labels(1): 1, labels(2): 1, labels(3): 0}
    assert got["sliceops_slice_whatsapp_state"] == {
        labels(1, state="CONNECTED"): 1, labels(2, state="QR_PENDING"): 1, labels(3, state="CONTAINER_STOPPED"): 1}
    assert got["sliceops_server_memory_used_bytes"] == {(): 2 * 2**30}
    assert got["sliceops_server_cpu_usage_ratio"] == {(): 0.25}
    assert got["sliceops_server_disk_total_bytes"] == {(): 100 * 2**30}
    assert got["sliceops_monitor_cycle_duration_seconds"] == {(): 0.25}
    assert got["sliceops_monitor_cycles_total"] == {(): 1.0}
    assert got["sliceops_monitor_info"] == {(("sliceops_instance", "t1"), ("version", "0.1.0")): 1.0}
    # Nothing was written yet: no telemetry timestamp, no gateway counts.
    assert "sliceops_slice_last_telemetry_timestamp_seconds" not in got
    assert "sliceops_server_slices" not in got


def test_the_telemetry_timestamp_is_that_of_the_newest_row_written():
    ex = Exporter(0)
    old, new = batch(1, AT), batch(2, AT.replace(minute=1))
    ex.collector.observe(new, CONFIG, 0.1, 1)
    # Slice 3 is not in gateway.slices: the database left its row out.
    ex.collector.written(new, (3,), 1, 5)
    ex.collector.written(old, (3,), 1, 5)  # a buffered, older cycle replayed afterwards
    got = scrape(ex)
    assert got["sliceops_slice_last_telemetry_timestamp_seconds"] == {
        labels(1): new.collected_at.timestamp(), labels(2): new.collected_at.timestamp()}
    assert got["sliceops_server_slices"] == {(): 5} and got["sliceops_server_slices_assigned"] == {(): 1}


def test_down_cycles_count_consecutive_unanswered_cycles_and_reset_when_up():
    ex = Exporter(0)
    for n in range(3):
        ex.collector.observe(batch(n + 1), CONFIG, 0.1, 0)
    assert scrape(ex)["sliceops_slice_down_cycles"] == {labels(1): 0, labels(2): 0, labels(3): 3}
    back = batch(4)
    back.slices[2].answered = True
    ex.collector.observe(back, CONFIG, 0.1, 0)
    assert scrape(ex)["sliceops_slice_down_cycles"][labels(3)] == 0


def test_a_reload_ends_the_series_of_slices_no_longer_configured():
    ex = Exporter(0)
    ex.collector.written(batch(), (), None, None)
    ex.collector.forget({1})
    ex.collector.observe(batch(), CONFIG, 0.1, 0)
    assert set(scrape(ex)["sliceops_slice_last_telemetry_timestamp_seconds"]) == {labels(1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return s.getsockname()[1]


def test_the_server_listens_on_loopback_only_and_serves_the_text_format():
    ex = Exporter(free_port())
    ex.collector.observe(batch(), CONFIG, 0.1, 0)
    assert ex.serve()
    try:
        assert ex._server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://{ADDRESS}:{ex.port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            names = {f.name for f in text_string_to_metric_families(r.read().decode())}
        assert {"sliceops_slice_memory_working_set_bytes", "sliceops_server_memory_total_bytes"} <= names
    finally:
        ex.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{ADDRESS}:{ex.port}/metrics", timeout=2)


def test_a_taken_port_is_logged_once_and_retried(caplog):
    with socket.socket() as taken:
        taken.bind((ADDRESS, 0))
        taken.listen()
        ex = Exporter(taken.getsockname()[1])
        with caplog.at_level(logging.ERROR):
            assert not ex.serve() and not ex.serve()
        assert caplog.text.count("cannot serve metrics") == 1
    assert ex.serve()  # free again: the next cycle's attempt succeeds
    ex.stop()


def test_set_port_moves_and_zero_stops():
    ex = Exporter(free_port())
    ex.serve()
    ex.set_port(0)
    assert not ex.serving
    port = free_port()
    ex.set_port(port)
    assert ex.serving and ex._server.server_address[1] == port
    ex.stop()


@pytest.mark.parametrize("raw, problem", [
    ({"metrics_port": -1}, "metrics_port: must be at least 0, got -1"),
    ({"metrics_port": "9100"}, 'metrics_port: must be an integer, got "9100"'),
    ({"slices": [{"id": 1, "port": 5001, "container": "c", "cgroup": "c", "data_dir": "/d", "disk_quota_bytes": 0}]},
     "slices[0].disk_quota_bytes: must be at least 1, got 0"),
])
def test_bad_metrics_keys_are_reported(raw, problem):
    with pytest.raises(ConfigError) as err:
        parse(raw)
    assert problem in err.value.problems


def test_metrics_are_off_by_default():
    assert parse({}).metrics_port == 0


def test_backup_times_come_from_the_agents_results_file_and_follow_its_changes(tmp_path):
    import json
    import os

    state = tmp_path / "backups.json"
    conf = parse({**RAW, "backup_state": str(state)})
    ex = Exporter(0)
    ex.collector.observe(batch(), conf, 0.1, 0)
    # No backup ever ran on the host: no backup families at all.
    assert not any("backup" in name for name in scrape(ex))
    state.write_text(json.dumps({"slices": {
        "1": {"last_good": {"at": "2026-12-01T03:00:02Z"}, "copy": {"ok": True}},
        "2": {"last": {"verified": False}, "copy": {"ok": False, "error": "ssh: connect refused"}},
        "9": {"last_good": {"at": "2026-11-01T03:00:00Z"}}},  # no longer configured: left out
        "gateway": {"last_good": {"at": "2026-12-01T03:00:00Z"}}}))
    got = scrape(ex)
    at = datetime(2026, 12, 1, 3, 0, 2, tzinfo=timezone.utc).timestamp()
    # Slice 2 has no verified backup and slice 3 none at all: 0, so the 26 h alert fires for them.
    assert got["sliceops_slice_backup_last_success_timestamp_seconds"] == {labels(1): at, labels(2): 0, labels(3): 0}
    assert got["sliceops_slice_backup_copy_failed"] == {labels(1): 0, labels(2): 1}
    assert got["sliceops_gateway_backup_last_success_timestamp_seconds"] == {(): at - 2}
    newer = state.read_text().replace("2026-12-01T03:00:02Z", "2026-12-02T03:00:02Z")
    state.write_text(newer)
    os.utime(state, ns=(1, 2))  # a new mtime even within the filesystem's timestamp granularity
    assert scrape(ex)["sliceops_slice_backup_last_success_timestamp_seconds"][labels(1)] == at + 86400


def test_a_pure_slice_hosts_results_leave_the_gateway_metric_out(tmp_path):
    """Its agent keeps only data parts (issue 14): a gateway metric of 0 there would fire
    GatewayBackupMissing on every slice host; the database host's monitor serves it."""
    import json

    state = tmp_path / "backups.json"
    state.write_text(json.dumps({"gateway_here": False, "slices": {"1": {"last_good": {"at": "2026-12-01T03:00:02Z"}}}}))
    ex = Exporter(0)
    ex.collector.observe(batch(), parse({**RAW, "backup_state": str(state)}), 0.1, 0)
    got = scrape(ex)
    assert "sliceops_gateway_backup_last_success_timestamp_seconds" not in got
    at = datetime(2026, 12, 1, 3, 0, 2, tzinfo=timezone.utc).timestamp()
    assert got["sliceops_slice_backup_last_success_timestamp_seconds"][labels(1)] == at


def test_the_database_hosts_monitor_serves_the_dumps_of_slices_elsewhere(tmp_path):
    """A fleet's database host dumps slices 7 and 8 that run on other hosts (backup_dumps): a
    failed or missing dump shows as 0 here, so SliceBackupMissing fires for it as for a local one."""
    import json

    state = tmp_path / "backups.json"
    state.write_text(json.dumps({"slices": {
        "1": {"last_good": {"at": "2026-12-01T03:00:02Z"}},
        "7": {"last_good": {"at": "2026-12-01T03:00:05Z"}, "copy": {"ok": False}},
        "8": {"last": {"verified": False, "error": "pg_dump: connection refused"}}}}))
    dumps = [{"id": 7, "container": "t1-wa-slice-7"}, {"id": 8, "container": "t1-wa-slice-8"}]
    ex = Exporter(0)
    ex.collector.observe(batch(), parse({**RAW, "backup_state": str(state), "backup_dumps": dumps}), 0.1, 0)
    got = scrape(ex)
    at = datetime(2026, 12, 1, 3, 0, 2, tzinfo=timezone.utc).timestamp()
    assert got["sliceops_slice_backup_last_success_timestamp_seconds"] == {
        labels(1): at, labels(2): 0, labels(3): 0, labels(7): at + 3, labels(8): 0}
    assert got["sliceops_slice_backup_copy_failed"][labels(7)] == 1


def test_a_slice_host_serves_the_data_part_it_keeps_and_not_a_slices_whose_data_is_elsewhere(tmp_path):
    """A move not finished: slice 2 runs here per the file but its data part is another host's
    (backup false: no series, rather than a 0 that fires at once); slice 7 runs elsewhere but
    its data part is this host's agent's (backup_data): its time is served here."""
    import json

    state = tmp_path / "backups.json"
    state.write_text(json.dumps({"gateway_here": False, "slices": {
        "1": {"last_good": {"at": "2026-12-01T03:00:02Z"}}, "7": {"last_good": {"at": "2026-12-01T03:00:05Z"}}}}))
    raw = {**RAW, "backup_state": str(state), "backup_data": [{"id": 7, "container": "t1-wa-slice-7"}],
           "slices": [dict(s, backup=False) if s["id"] == 2 else s for s in RAW["slices"]]}
    ex = Exporter(0)
    ex.collector.observe(batch(), parse(raw), 0.1, 0)
    got = scrape(ex)
    at = datetime(2026, 12, 1, 3, 0, 2, tzinfo=timezone.utc).timestamp()
    assert got["sliceops_slice_backup_last_success_timestamp_seconds"] == {labels(1): at, labels(3): 0, labels(7): at + 3}
    assert labels(2) in got["sliceops_slice_memory_working_set_bytes"]  # its container is still watched


@pytest.mark.parametrize(("extra", "problem"), [
    ({"backup_data": {}}, "backup_data: must be a list"),
    ({"backup_data": [{"id": 2, "container": "t1-wa-slice-2"}]}, "backup_data[0].id: 2 is also listed in slices"),
    ({"backup_dumps": [{"id": 7, "container": "a"}], "backup_data": [{"id": 7, "container": "a"}]},
     "backup_data[0].id: 7 is also listed in backup_dumps[0]"),
    ({"slices": [{"id": 1, "port": 5001, "container": "c1", "cgroup": "s1", "data_dir": "/d/1", "backup": "no"}]},
     'slices[0].backup: must be true or false, got "no"'),
])
def test_bad_backup_data_and_flags_are_reported(extra, problem):
    with pytest.raises(ConfigError) as err:
        parse({**RAW, **extra})
    assert problem in err.value.problems


@pytest.mark.parametrize(("dumps", "problem"), [
    ({}, "backup_dumps: must be a list"),
    ([{"id": 7}], "backup_dumps[0].container: is required"),
    ([{"id": 2, "container": "t1-wa-slice-2"}], "backup_dumps[0].id: 2 is also listed in slices"),
    ([{"id": 7, "container": "a"}, {"id": 7, "container": "b"}], "backup_dumps[1].id: 7 is also listed in backup_dumps[0]"),
    ([{"id": 7, "container": "a", "port": 1}], "backup_dumps[0].port: unknown key"),
])
def test_bad_backup_dumps_are_reported(dumps, problem):
    with pytest.raises(ConfigError) as err:
        parse({**RAW, "backup_dumps": dumps})
    assert problem in err.value.problems


def test_an_unreadable_results_file_is_logged_once_and_leaves_the_backup_metrics_out(tmp_path, caplog):
    state = tmp_path / "backups.json"
    state.write_text("{not json")
    ex = Exporter(0)
    ex.collector.observe(batch(), parse({**RAW, "backup_state": str(state)}), 0.1, 0)
    with caplog.at_level(logging.WARNING):
        assert not any("backup" in name for name in scrape(ex))
        scrape(ex)
    assert [r.getMessage() for r in caplog.records].count(
        f"cannot read the backup results {state}: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1); backup metrics left out") == 1
