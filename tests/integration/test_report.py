"""`sliceops report` against a real PostgreSQL: telemetry rows written here, the report read
the way it reads a target (runuser + psql by peer authentication), charts and page written,
and the page opened in headless Chromium with no console error and every image decoded."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from matplotlib import image as mpimg

from tests.fix_browser import open_page
from tests.integration._sql import apply_files, migration_files

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLICES = 12
HOT = 3  # at 95 % of its 128m limit in the last day


def socket_dir(pg_server) -> str:
    with pg_server.connect() as conn:
        return conn.execute("SHOW unix_socket_directories").fetchone()[0].split(",")[0].strip()


@pytest.fixture
def telemetry_db(scratch_db):
    """A gateway database with 12 slices and a day of rows every 5 minutes (plus older rows
    the default window must leave out)."""
    apply_files(scratch_db.dsn(), migration_files("gateway"))
    with psycopg.connect(scratch_db.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO gateway.slices (id, port, status) "
                     "SELECT i, 5000 + 2 * i, 'available' FROM generate_series(1, %s) i", (SLICES,))
        # Memory: slice 3 peaks at 95 % of 128 MiB; the others stay at 10-40 % of 256 MiB.
        # WhatsApp: connected, with slice 5 unpaired for two hours and slice 7 stopped for one.
        conn.execute("""
            INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
            SELECT s, t,
                   CASE WHEN s = %(hot)s THEN (0.95 * 128 * 2^20)::bigint
                        ELSE ((0.1 + 0.3 * s / %(n)s) * 256 * 2^20)::bigint END,
                   CASE WHEN s = 5 AND t > now() - interval '3 hours' AND t < now() - interval '1 hour' THEN 'UNPAIRED'
                        WHEN s = 7 AND t > now() - interval '6 hours' AND t < now() - interval '5 hours' THEN 'CONTAINER_STOPPED'
                        ELSE 'CONNECTED' END,
                   (s %% 4) * 5.0, s * 1000000
            FROM generate_series(1, %(n)s) s,
                 generate_series(now() - interval '24 hours' + interval '1 minute', now(), interval '5 minutes') t
        """, {"hot": HOT, "n": SLICES})
        # Two days ago slice 1 was at its limit: outside --since 24h.
        conn.execute("""INSERT INTO gateway.telemetry (slice_id, "timestamp", rss_bytes, wa_state, cpu_percent, disk_bytes)
                        VALUES (1, now() - interval '2 days', 256 * 2^20, 'CONNECTED', 1, 1)""")
        conn.execute("""
            INSERT INTO gateway.server_telemetry ("timestamp", ram_used_bytes, ram_total_bytes, swap_used_bytes,
                swap_total_bytes, cpu_percent, disk_used_bytes, disk_total_bytes, active_slices, total_slices)
            SELECT t, 6 * 2^30, 16 * 2^30, 0, 2^30, 35.5, 40 * 2^30, 100 * 2^30, 0, %s
            FROM generate_series(now() - interval '24 hours' + interval '1 minute', now(), interval '5 minutes') t
        """, (SLICES,))
    return scratch_db


def inventory(tmp_path: Path, pg_server, db) -> Path:
    slices = [{"id": i, **({"memory": "128m"} if i == HOT else {})} for i in range(1, SLICES + 1)]
    data = {"target": "@local", "instance": "rep12r", "postgres": {"port": pg_server.port},
            "gateway": {"database": db.name}, "slices": slices}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def report(inv: Path, pg_server, *args: str) -> subprocess.CompletedProcess:
    # psql finds the throwaway server's socket through PGHOST (runuser keeps the environment);
    # on a host the deploy's cluster listens on the default socket directory.
    env = {**os.environ, "PGHOST": socket_dir(pg_server), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sliceops.cli", "report", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def table_row(html: str, sid: int) -> list[str]:
    m = re.search(rf'<tr[^>]*><td>(?:<a href="#slice-{sid}">)?{sid}(?:</a>)?</td>(.*?)</tr>', html)
    assert m, f"no table row for slice {sid}"
    return re.findall(r"<td>(.*?)</td>", m[1])


def test_a_report_from_real_rows_opens_in_chromium_without_a_console_error(tmp_path, pg_server, telemetry_db):
    out = tmp_path / "report"
    before = telemetry_db_counts(telemetry_db)
    proc = report(inventory(tmp_path, pg_server, telemetry_db), pg_server, "--out", str(out), "--since", "24h",
                  "--tz", "Europe/Berlin")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{out}/index.html: {SLICES} slices, 24h to now (Europe/Berlin)"
    assert telemetry_db_counts(telemetry_db) == before  # it only reads

    html = (out / "index.html").read_text()
    # The page's figures are the rows': slice 3 at 95 % and flagged, slice 1's old peak left out.
    assert 'class=hot' in html and html.count("class=hot") == 1
    assert table_row(html, HOT)[1] == "95 %"
    assert float(table_row(html, 1)[1].rstrip(" %")) < 20
    assert table_row(html, 5)[4] == "CONNECTED" and 90 < float(table_row(html, 5)[5].rstrip(" %")) < 95
    for name in ("fleet-memory", "fleet-whatsapp", "fleet-cpu", "fleet-disk", "server",
                 *(f"slice-{i}" for i in range(1, SLICES + 1))):
        img = mpimg.imread(out / f"{name}.png")
        assert img.shape[0] > 200 and img.shape[1] > 800, name

    page = open_page(out / "index.html")
    assert page.errors == []
    assert len(page.images) == 5 + SLICES and all(page.images.values()), page.images
    assert page.title == f"sliceops report: rep12r on @local"
    assert "(Europe/Berlin)" in page.text


def telemetry_db_counts(db) -> tuple:
    with psycopg.connect(db.dsn()) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM gateway.telemetry), "
                            "(SELECT count(*) FROM gateway.server_telemetry), "
                            "(SELECT max(last_health_at) FROM gateway.slices)").fetchone()


def test_slices_and_window_narrow_the_report(tmp_path, pg_server, telemetry_db):
    out = tmp_path / "narrow"
    proc = report(inventory(tmp_path, pg_server, telemetry_db), pg_server, "--out", str(out),
                  "--since", "3d", "--slices", "1,5-6")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.glob("slice-*.png")) == ["slice-1.png", "slice-5.png", "slice-6.png"]
    html = (out / "index.html").read_text()
    assert table_row(html, 1)[1] == "100 %"  # three days include slice 1's old peak
    assert "slice 3" not in html


def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path, pg_server, telemetry_db):
    inv = inventory(tmp_path, pg_server, telemetry_db)
    data = yaml.safe_load(inv.read_text())
    data["gateway"]["database"] = "no_such_db"
    inv.write_text(yaml.safe_dump(data))
    proc = report(inv, pg_server, "--out", str(tmp_path / "x"))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("sliceops: report: runuser on @local: ")
    assert "no_such_db" in proc.stderr and "Traceback" not in proc.stderr
