"""`sliceops status` without a host: the health rule, joining what the target answered into
rows, counts, sorting, finding, the JSON shape and the text table; `sliceops logs`' option
parsing and masking. The round trips themselves run for real in
tests/integration/test_status_logs.py.
"""

from __future__ import annotations

import json
import re

import pytest

from sliceops import logs
from sliceops.inventory import load
from sliceops.status import gather, model, render

NOW = 1_800_000_000.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def inv(tmp_path):
    return unit_inventory(tmp_path, disk="false")  # no quotas: disk shows used / "-"


def unit_inventory(tmp_path, disk: str):
    path = tmp_path / "inv.yaml"
    path.write_text(
        "target: '@local'\ninstance: unit\nmonitor: {interval: 60}\n"
        f"slice_defaults: {{memory: 256m, cpus: 0.5, disk: {disk}}}\n"
        "slices:\n  - id: 1\n  - id: 2\n    memory: 1g\n  - id: 3\n    status: suspended\n"
        "  - id: 4\n    status: destroying\n"
    )
    return load(path)


def telemetry(age=10.0, rss=64 * 1024**2, wa="CONNECTED", cpu=12.5, disk=5 * 1024**2):
    return {"at": NOW - age, "rss_bytes": rss, "wa_state": wa, "cpu_percent": cpu, "disk_bytes": disk}


def gw(sid, status="available", user_id=None, email=None, phone=None, t=None):
    return {"id": sid, "port": 5000 + sid, "status": status, "user_id": user_id, "email": email,
            "wa_connected": bool(phone), "wa_phone": phone, "telemetry": t}


def database(sid, current=True, stamped=True, size_at=NOW - 90):
    # size_at: when the monitor measured the size (None: this read measured it).
    return {"name": f"wa_slice_{sid}", "size_bytes": 8_000_000, "size_at": size_at, "connections": 2,
            "current": current, "stamped": stamped}


def container(sid, state="running", health="healthy", prefix="unit-"):
    return {"name": f"{prefix}wa-slice-{sid}", "state": state, "health": health}


def answer(slices=(), databases=(), now=NOW):
    return {"now": now, "slices": {s["id"]: s for s in slices}, "databases": {int(d["name"][9:]): d for d in databases}}


def healthy_fleet():
    """Slices 1 and 2 in service and well, 3 suspended (stopped), 4 being destroyed."""
    db = answer(
        [gw(1, "assigned", 17, "ana@example.com", "+49 151 2345678", telemetry()),
         gw(2, t=telemetry(rss=900 * 1024**2, cpu=45.0)), gw(3, "suspended", t=telemetry(wa="CONTAINER_STOPPED")),
         gw(4, "destroying")],
        [database(1), database(2), database(3), database(4)],
    )
    containers = {1: container(1), 2: container(2), 3: container(3, "exited", None)}
    return db, containers


def by_id(rows):
    return {r.id: r for r in rows}


# ----------------------------------------------------------------- sizes and the health rule


@pytest.mark.parametrize("text, expected", [
    ("256m", 256 * 1024**2), ("1g", 1024**3), ("512k", 512 * 1024), ("100b", 100), ("1.5g", int(1.5 * 1024**3)),
    ("2G", 2 * 1024**3), ("4096", 4096),
])
def test_size_bytes_reads_docker_notation(text, expected):
    """Status takes a slice's limit from the model (Slice.memory_bytes), which reads it so."""
    from sliceops.inventory import size_bytes

    assert size_bytes(text) == expected


def test_a_running_answering_recent_slice_is_healthy(inv):
    rows = by_id(model.build_rows(inv, *healthy_fleet()))
    assert rows[1].healthy is True and rows[1].problems == []
    assert rows[2].healthy is True


@pytest.mark.parametrize("change, problem", [
    (lambda db, c: c.pop(1), "container missing"),
    (lambda db, c: c[1].update(state="exited"), "container exited"),
    (lambda db, c: db["slices"][1].update(telemetry=None), "no telemetry"),
    (lambda db, c: db["slices"][1].update(telemetry=telemetry(age=120.0)), "telemetry 2m old"),
    (lambda db, c: db["slices"][1].update(telemetry=telemetry(wa="BACKEND_ERROR")), "/health: BACKEND_ERROR"),
    (lambda db, c: db["slices"][1].update(telemetry=telemetry(wa="BACKEND_TIMEOUT")), "/health: BACKEND_TIMEOUT"),
    (lambda db, c: db["slices"][1].update(telemetry=telemetry(wa=None)), "/health: no answer"),
])
def test_each_part_of_the_health_rule_makes_a_slice_unhealthy(inv, change, problem):
    db, containers = healthy_fleet()
    change(db, containers)
    row = by_id(model.build_rows(inv, db, containers))[1]
    assert row.healthy is False
    assert problem in row.problems


def test_telemetry_just_under_two_intervals_is_still_fresh(inv):
    db, containers = healthy_fleet()
    db["slices"][1]["telemetry"] = telemetry(age=119.0)
    assert by_id(model.build_rows(inv, db, containers))[1].healthy is True


def test_not_connected_whatsapp_is_healthy_but_shown(inv):
    # /health answered 200: the backend is fine, its WhatsApp session is the customer's business.
    db, containers = healthy_fleet()
    db["slices"][1]["telemetry"] = telemetry(wa="UNPAIRED")
    row = by_id(model.build_rows(inv, db, containers))[1]
    assert row.healthy is True
    assert render.cells(row, 60)[5] == ("UNPAIRED +49 151 2345678", render.YELLOW)


def test_suspended_and_destroying_slices_are_neither_healthy_nor_unhealthy(inv):
    rows = by_id(model.build_rows(inv, *healthy_fleet()))
    assert rows[3].healthy is None and rows[3].problems == []
    assert rows[4].healthy is None and rows[4].container_state == model.MISSING


# ----------------------------------------------------------------- joining and counting


def test_rows_carry_every_column(inv):
    row = by_id(model.build_rows(inv, *healthy_fleet()))[1]
    assert (row.inventory_status, row.gateway_status, row.user_id, row.email) == (
        "active", "assigned", 17, "ana@example.com")
    assert (row.container, row.container_state, row.docker_health) == ("unit-wa-slice-1", "running", "healthy")
    assert row.port == 5001 and row.wa_state == "CONNECTED" and row.wa_phone == "+49 151 2345678"
    assert (row.mem_used, row.mem_limit, row.mem_percent) == (64 * 1024**2, 256 * 1024**2, 25.0)
    assert (row.cpu_percent, row.cpu_limit, row.cpu_of_limit) == (12.5, 0.5, 25.0)
    assert (row.disk_used, row.disk_quota, row.disk_percent) == (5 * 1024**2, None, None)
    assert (row.database, row.db_size, row.db_connections, row.migration) == ("wa_slice_1", 8_000_000, 2, "current")
    assert row.telemetry_age == 10.0


def test_per_slice_memory_limit_is_the_inventory_s(inv):
    assert by_id(model.build_rows(inv, *healthy_fleet()))[2].mem_limit == 1024**3


def test_slices_on_the_host_but_not_in_the_inventory_are_orphans(inv):
    db, containers = healthy_fleet()
    db["databases"][9] = database(9)  # a database only
    db["slices"][8] = gw(8)  # a gateway row only
    containers[7] = container(7)  # a container only
    rows = by_id(model.build_rows(inv, db, containers))
    assert [sid for sid, r in rows.items() if r.inventory_status == model.ORPHAN] == [7, 8, 9]
    assert rows[8].port == 5008  # from the gateway row: the inventory has none
    assert all("orphan: not in the inventory" in rows[s].problems for s in (7, 8, 9))
    assert model.summary(list(rows.values()))["orphans"] == 3


def test_summary_counts(inv):
    db, containers = healthy_fleet()
    containers[2]["state"] = "exited"
    fleet = model.summary(model.build_rows(inv, db, containers))
    assert fleet == {"in_service": 2, "suspended": 1, "destroying": 1, "healthy": 1, "unhealthy": 1, "orphans": 0}


@pytest.mark.parametrize("current, stamped, expected", [(True, True, "current"), (False, True, "stale"),
                                                         (False, False, "unstamped")])
def test_migration_state_from_the_stamp(inv, current, stamped, expected):
    db, containers = healthy_fleet()
    db["databases"][1] = database(1, current, stamped)
    row = by_id(model.build_rows(inv, db, containers))[1]
    assert row.migration == expected
    assert (f"database not at the current migration ({expected})" in row.problems) is (expected != "current")


def test_limits_near_full_are_problems_but_not_unhealthy(inv):
    db, containers = healthy_fleet()
    db["slices"][1]["telemetry"] = telemetry(rss=250 * 1024**2)
    row = by_id(model.build_rows(inv, db, containers))[1]
    assert row.healthy is True
    assert row.problems == ["memory at 97.7% of its limit"]


def test_a_disk_quota_when_the_model_has_one(tmp_path):
    inv = unit_inventory(tmp_path, disk="10m")
    db, containers = healthy_fleet()
    db["slices"][1]["telemetry"] = telemetry(disk=int(9.5 * 1024**2))
    row = by_id(model.build_rows(inv, db, containers))[1]
    assert (row.disk_quota, row.disk_percent) == (10 * 1024**2, 95.0)
    assert "disk at 95% of its quota" in row.problems


# ----------------------------------------------------------------- sort and find


def sortable_rows():
    rows = []
    for sid, used, limit, cpu, disk, age in [
        (1, 100, 1000, 5.0, 10, 30.0), (2, 900, 1000, 1.0, 500, 5.0), (3, None, 1000, None, None, None),
        (4, 400, 1000, 50.0, 90, 300.0),
    ]:
        rows.append(model.SliceStatus(id=sid, inventory_status="active", port=None, mem_used=used, mem_limit=limit,
                                      cpu_percent=cpu, disk_used=disk, telemetry_age=age))
    return rows


@pytest.mark.parametrize("key, order", [
    ("id", [1, 2, 3, 4]), ("mem", [2, 4, 1, 3]), ("cpu", [4, 1, 2, 3]), ("disk", [2, 4, 1, 3]),
    ("age", [3, 4, 1, 2]),  # no telemetry at all first: the stalest
])
def test_sort_largest_first_unknown_last(key, order):
    assert [r.id for r in model.sort_rows(sortable_rows()[::-1], key)] == order


def test_find_by_email_any_case_and_by_phone_digits(inv):
    rows = model.build_rows(inv, *healthy_fleet())
    assert [r.id for r in model.find(rows, "ANA@Example")] == [1]
    assert [r.id for r in model.find(rows, "+49 151-234")] == [1]
    assert [r.id for r in model.find(rows, "4915123")] == [1]
    assert model.find(rows, "bob@") == []
    assert model.find(rows, "999") == []


# ----------------------------------------------------------------- JSON


def test_json_shape_is_the_documented_one(inv):
    db, containers = healthy_fleet()
    rows = model.build_rows(inv, db, containers)
    doc = json.loads(json.dumps(model.to_json(inv, rows, model.summary(rows))))
    assert set(doc) == {"version", "target", "instance", "monitor_interval", "summary", "spares", "slices"}
    assert doc["spares"] == {"wanted": 0, "unassigned": 1, "unassigned_ids": [2], "short_by": 0}  # 1 is assigned
    assert doc["version"] == 1 and doc["instance"] == "unit" and doc["monitor_interval"] == 60
    assert set(doc["summary"]) == {"in_service", "suspended", "destroying", "healthy", "unhealthy", "orphans"}
    first = doc["slices"][0]
    assert first == {
        "id": 1, "inventory_status": "active", "healthy": True, "problems": [],
        "gateway": {"status": "assigned", "user_id": 17, "email": "ana@example.com"},
        "container": {"name": "unit-wa-slice-1", "state": "running", "health": "healthy"},
        "port": 5001, "host": "local", "wa_state": "CONNECTED", "wa_phone": "+49 151 2345678",
        "memory": {"used_bytes": 64 * 1024**2, "limit_bytes": 256 * 1024**2, "percent": 25.0},
        "cpu": {"percent": 12.5, "limit_cores": 0.5},
        "disk": {"used_bytes": 5 * 1024**2, "quota_bytes": None, "percent": None},
        "database": {"name": "wa_slice_1", "size_bytes": 8_000_000, "size_age_seconds": 90, "connections": 2,
                     "migration": "current"},
        "telemetry_age_seconds": 10.0,
        "backup": {"age_seconds": None, "latest_failed": False, "copy_failed": False},
    }
    assert doc["slices"][3]["gateway"]["status"] == "destroying" and doc["slices"][3]["healthy"] is None


def test_readme_documents_every_json_key(inv):
    from sliceops.paths import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- status-json:begin -->")[1].split("<!-- status-json:end -->")[0]
    documented = json.loads(section.split("```json")[1].split("```")[0])
    rows = model.build_rows(inv, *healthy_fleet())
    doc = model.to_json(inv, rows, model.summary(rows))

    def keys(value, at=""):
        if isinstance(value, dict):
            out = set()
            for k, v in value.items():
                out |= {f"{at}.{k}"} | keys(v, f"{at}.{k}")
            return out
        if isinstance(value, list) and value:
            return keys(value[0], f"{at}[]")
        return set()

    assert keys(documented) == keys(doc)


# ----------------------------------------------------------------- the text table


def test_table_is_plain_when_piped_and_aligned(inv):
    db, containers = healthy_fleet()
    containers[2]["state"] = "exited"
    rows = model.build_rows(inv, db, containers)
    text = render.render(rows, model.summary(rows), inv.target, inv.instance, 60, colour=False)
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert lines[0] == ("@local instance unit: 2 in service, 1 suspended, 1 destroying; 1 healthy, 1 unhealthy; "
                        "0 orphans (database sizes 90s old)")
    header = lines[1]
    assert header.split() == list(render.COLUMNS)
    # Every row's MEMORY cell starts where the header's MEMORY does.
    col = header.index("MEMORY")
    assert lines[2][col:].startswith("64M/256M 25%")
    assert lines[3][col:].startswith("900M/1.0G 88%")


def test_problems_stand_out_in_colour(inv):
    db, containers = healthy_fleet()
    containers[2].update(state="exited", health=None)
    db["slices"][1]["telemetry"] = telemetry(rss=250 * 1024**2)
    rows = by_id(model.build_rows(inv, db, containers))
    text = render.render(list(rows.values()), model.summary(list(rows.values())), "@local", "unit", 60, colour=True)
    assert text.startswith(render.RED)  # the summary: something is unhealthy
    one, two = render.cells(rows[1], 60), render.cells(rows[2], 60)
    assert one[0] == ("1", render.GREEN) and one[6][1] == render.RED  # healthy, memory at 98 %
    assert two[0] == ("2", render.RED) and two[3] == ("exited", render.RED)
    assert f"{render.RED}exited" in text
    assert ANSI.sub("", text) == render.render(list(rows.values()), model.summary(list(rows.values())), "@local",
                                               "unit", 60, colour=False)


def test_database_sizes_say_how_old_they_are(inv):
    # The monitor's recorded size carries its age; one it has not measured yet was measured
    # by this read (age 0 in the JSON) and the note under the table says how many.
    db, containers = healthy_fleet()
    db["databases"][2]["size_at"] = NOW - 400
    db["databases"][3]["size_at"] = None
    rows = by_id(model.build_rows(inv, db, containers))
    assert (rows[1].db_size_age, rows[2].db_size_age, rows[3].db_size_age) == (90.0, 400.0, None)
    doc = model.to_json(inv, list(rows.values()), model.summary(list(rows.values())))
    assert [s["database"]["size_age_seconds"] for s in doc["slices"]] == [90, 400, 0, 90]
    text = render.render(list(rows.values()), model.summary(list(rows.values())), "@local", "unit", 60, colour=False)
    assert text.splitlines()[0].endswith("; 0 orphans (database sizes 90s-6m old, 1 measured now)")
    assert len(text.splitlines()) == 2 + len(rows)  # the table stays one line per slice


def test_every_slice_names_its_host(tmp_path):
    # An inventory slice: its inventory host; an orphan: the host its gateway row names.
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "instance: unit\nhosts:\n  db: {target: '@local', database: true, address: 10.0.0.10}\n"
        "  app1: {target: 'ssh://root@10.0.0.11', address: 10.0.0.11}\n"
        "slices:\n  - id: 1\n    host: db\n  - id: 2\n    host: app1\n"
    )
    fleet_inv = load(path)
    orphan = gw(9, t=telemetry())
    orphan["host"] = "app2"
    db = answer([gw(1, t=telemetry()), gw(2, t=telemetry()), orphan], [database(1), database(2)])
    rows = by_id(model.build_rows(fleet_inv, db, {}))
    assert (rows[1].host, rows[2].host, rows[9].host) == ("db", "app1", "app2")
    doc = model.to_json(fleet_inv, list(rows.values()), model.summary(list(rows.values())))
    assert [(s["id"], s["host"]) for s in doc["slices"]] == [(1, "db"), (2, "app1"), (9, "app2")]


@pytest.mark.parametrize("n, text", [(None, "-"), (512, "512B"), (4096, "4.0K"), (20 * 1024**2, "20M"),
                                     (int(1.5 * 1024**3), "1.5G")])
def test_human_sizes(n, text):
    assert render.human(n) == text


# ----------------------------------------------------------------- parsing the target's answers


def test_container_list_health_comes_from_the_status_text():
    listing = [
        {"Names": ["/x-wa-slice-1"], "State": "running", "Status": "Up 2 hours (healthy)",
         "Labels": {"sliceops.slice": "1"}},
        {"Names": ["/x-wa-slice-2"], "State": "running", "Status": "Up 1 second (health: starting)",
         "Labels": {"sliceops.slice": "2"}},
        {"Names": ["/x-wa-slice-3"], "State": "exited", "Status": "Exited (0) 3 minutes ago",
         "Labels": {"sliceops.slice": "3"}},
        {"Names": ["/x-wa-slice-4"], "State": "running", "Status": "Up 5 hours (unhealthy)",
         "Labels": {"sliceops.slice": "4"}},
        {"Names": ["/other"], "State": "running", "Status": "Up", "Labels": {"sliceops.slice": "oops"}},
    ]
    out = gather.parse_containers(listing)
    assert out == {
        1: {"name": "x-wa-slice-1", "state": "running", "health": "healthy"},
        2: {"name": "x-wa-slice-2", "state": "running", "health": "starting"},
        3: {"name": "x-wa-slice-3", "state": "exited", "health": None},
        4: {"name": "x-wa-slice-4", "state": "running", "health": "unhealthy"},
    }


def test_database_answer_is_parsed_and_keyed_by_slice_id():
    text = json.dumps({"now": NOW, "slices": [gw(1)], "databases": [database(1), {**database(2), "name": "other"}]})
    out = gather.parse_database_state(text + "\n")
    assert out["now"] == NOW and set(out["slices"]) == {1} and set(out["databases"]) == {1}


@pytest.mark.parametrize("text", ["", "ERROR: nope", "{not json"])
def test_an_unreadable_database_answer_is_an_error(text):
    from sliceops.errors import RemoteStateError

    with pytest.raises(RemoteStateError):
        gather.parse_database_state(text)


def test_psql_reads_with_the_deploy_s_peer_superuser_and_no_shell(inv):
    argv = gather.psql_argv(inv, "abc123")
    assert argv[:5] == ["runuser", "-u", "postgres", "--", "psql"]
    assert "wank_saas" in argv and "slice_stamp=abc123" in argv
    assert "default_transaction_read_only = on" in gather.STATUS_SQL


# ----------------------------------------------------------------- logs


@pytest.mark.parametrize("text, expected", [
    ("30s", NOW - 30), ("10m", NOW - 600), ("2h", NOW - 7200), ("1d", NOW - 86400),
    ("2027-01-15T10:00:00+00:00", 1_800_007_200),  # 2 h after NOW, in UTC
])
def test_since_accepts_durations_and_iso_times(text, expected):
    assert logs.since_epoch(text, now=NOW) == int(expected)


@pytest.mark.parametrize("text", ["yesterday", "10x", "-5m", ""])
def test_since_refuses_anything_else(text):
    with pytest.raises(logs.UsageError, match="--since"):
        logs.since_epoch(text, now=NOW)


def test_credentials_in_urls_are_masked():
    line = "boot DATABASE_URL=postgresql://wa_slice_1:s3cretPassw0rd@172.30.0.1:5432/wa_slice_1 ok"
    assert logs.mask(line) == "boot DATABASE_URL=postgresql://wa_slice_1:***@172.30.0.1:5432/wa_slice_1 ok"
    assert logs.mask("GET /health 200") == "GET /health 200"


# ----------------------------------------------------------------- the command line


def _cli(*args: str):
    import subprocess
    import sys

    from sliceops.paths import ROOT

    return subprocess.run([sys.executable, "-m", "sliceops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_subcommand_help_shows_its_own_options_and_other_commands_still_refuse_strangers():
    helped = _cli("status", "-h")
    assert helped.returncode == 0 and "--sort" in helped.stdout and "--find" in helped.stdout
    refused = _cli("check", "--sort", "mem")
    assert refused.returncode == 2 and "unrecognized arguments: --sort mem" in refused.stderr


def test_a_bad_option_value_is_one_line_and_status_2():
    proc = _cli("logs", "1", "--since", "yesterday")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sliceops: logs: --since: 'yesterday' is not a duration (30s, 10m, 2h, 1d) or an ISO time"]


# ----------------------------------------------------------------- backups


def test_backup_age_comes_from_the_agents_results_and_stale_ones_are_problems(inv):
    db, containers = healthy_fleet()
    now = db["now"]
    text = json.dumps({"slices": {
        "1": {"last": {"verified": True}, "last_good": {"at": _iso(now - 3600)}, "copy": {"ok": True}},
        "2": {"last": {"verified": False}, "last_good": {"at": _iso(now - 3 * 86400)},
              "copy": {"ok": False, "error": "Permission denied (publickey)."}},
    }})
    backups = gather.parse_backups(text)
    rows = by_id(model.build_rows(inv, db, containers, backups))
    assert round(rows[1].backup_age) == 3600 and not rows[1].backup_failed
    assert not [p for p in rows[1].problems if "backup" in p]
    assert "last verified backup 3d old" in rows[2].problems and "latest backup failed" in rows[2].problems
    assert "latest copy off the host failed" in rows[2].problems and not rows[1].backup_copy_failed
    assert render.cells(rows[2], 60)[-1] == ("3d failed", render.RED)
    # No results file on the host: nothing is said about backups.
    assert gather.parse_backups("") is None
    assert not [p for r in model.build_rows(inv, db, containers, None) for p in r.problems if "backup" in p]


def _iso(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_failing_command_on_the_target_is_one_line_naming_it(inv):
    from sliceops.errors import RemoteStateError
    from sliceops.remote import Target

    target = Target(inv)
    assert target.run(["cat"], "hello") == "hello"
    with pytest.raises(RemoteStateError, match=r"^sh on @local: boom$"):
        target.run(["sh", "-c", "echo boom >&2; echo more >&2; exit 3"])
    with pytest.raises(RemoteStateError, match="not found on this machine"):
        target.run(["sliceops-no-such-program"])


def test_an_unreachable_ssh_target_is_one_line(tmp_path, monkeypatch):
    import socket

    from sliceops import hostkeys
    from sliceops.errors import RemoteStateError
    from sliceops.remote import Target

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "ssh.yaml"
    path.write_text(f"target: ssh://root@127.0.0.1:{port}\nslices: []\n")
    monkeypatch.setattr(hostkeys, "check", lambda target, known: None)  # the key check has its own tests
    with pytest.raises(RemoteStateError, match=f"cannot reach ssh://root@127.0.0.1:{port}"):
        Target(load(path)).connect()
