"""Slices driven by the inventory with the real engine and database: isolation from inside a
container, recreate-by-spec, suspend, resume, destroy with a verified backup, and force."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.fix_deploy import run_deploy

pytestmark = pytest.mark.integration

INSTANCE = "itsl"
PG_PORT = 5442
BASE = 6301
SECTIONS = dict(postgres={"port": PG_PORT}, docker={"subnet": "172.30.42.0/24"}, slice_defaults={"port_base": BASE})
NAME = lambda sid: f"{INSTANCE}-wa-slice-{sid}"  # noqa: E731
PORT = lambda sid: BASE + 2 * (sid - 1)  # noqa: E731


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def su(db: str, sql: str) -> str:
    return sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(PG_PORT), "-d", db, "-c", sql).stdout.strip()


def inspect(sid: int) -> dict | None:
    out = sh("docker", "inspect", NAME(sid), check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def health(sid: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT(sid)}/health", timeout=5) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Three slices converged; the tests edit the inventory and deploy again."""
    import yaml

    from tests.fix_deploy import teardown_instance

    class Fleet:
        path = tmp_path_factory.mktemp("inv") / f"{INSTANCE}.yaml"

        def write(self, slices: list[dict]) -> None:
            self.path.write_text(yaml.safe_dump(
                {"target": "@local", "instance": INSTANCE, **SECTIONS, "slices": slices}, sort_keys=False))

    fleet = Fleet()
    fleet.write([{"id": 1}, {"id": 2}, {"id": 3}])
    first = run_deploy(fleet.path)
    assert first.returncode == 0, first.output[-4000:]
    yield fleet
    teardown_instance(INSTANCE)


def _wait_healthy(sid: int, seconds: float = 30) -> dict:
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            return health(sid)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_every_slice_answers_health_on_loopback_only(fleet):
    for sid in (1, 2, 3):
        body = _wait_healthy(sid)
        assert body["db"] == "ok" and "wa_state" in body and "wa_phone" in body
        ports = inspect(sid)["NetworkSettings"]["Ports"][f"{PORT(sid)}/tcp"]
        assert ports == [{"HostIp": "127.0.0.1", "HostPort": str(PORT(sid))}]


def _in_slice(sid: int, code: str) -> subprocess.CompletedProcess:
    return sh("docker", "exec", NAME(sid), "python3", "-c", code, check=False)


_CONNECT = """
import os, sys, psycopg
url = os.environ["DATABASE_URL"]
db = sys.argv[1] if len(sys.argv) > 1 else None
try:
    conn = psycopg.connect(url if db is None else url.rsplit("/", 1)[0] + "/" + db, connect_timeout=5)
    print("OPEN", conn.execute("SELECT current_database()").fetchone()[0])
except psycopg.OperationalError as exc:
    print("REFUSED", str(exc).strip().splitlines()[-1])
"""


@pytest.mark.parametrize("db, opens", [(None, True), ("wa_slice_2", False), ("wank_saas", False)])
def test_slice_credentials_from_inside_open_only_their_database(fleet, db, opens):
    out = sh("docker", "exec", NAME(1), "python3", "-c", _CONNECT, *([db] if db else []), check=False)
    assert out.returncode == 0, out.stderr
    if opens:
        assert out.stdout.strip() == "OPEN wa_slice_1"
    else:
        assert out.stdout.startswith("REFUSED"), out.stdout


def test_another_slice_is_unreachable_from_inside(fleet):
    peer_ip = inspect(2)["NetworkSettings"]["Networks"][f"sliceops-{INSTANCE}"]["IPAddress"]
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('REACHED')\n"
        "except OSError as e:\n print('BLOCKED', e)\n"
    )
    out = sh("docker", "exec", NAME(1), "python3", "-c", code, peer_ip, str(PORT(2)), check=False)
    assert out.stdout.startswith("BLOCKED"), out.stdout + out.stderr


def test_container_is_hardened(fleet):
    cfg = inspect(1)
    host_cfg = cfg["HostConfig"]
    assert cfg["Config"]["User"] == "10001:10001"
    assert host_cfg["ReadonlyRootfs"] is True
    assert host_cfg["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host_cfg["SecurityOpt"]
    assert host_cfg["Memory"] > 0 and host_cfg["NanoCpus"] > 0 and host_cfg["PidsLimit"] > 0
    assert host_cfg["RestartPolicy"]["Name"] == "unless-stopped"
    assert host_cfg["LogConfig"]["Config"].get("max-size")
    # The password never appears in the container's command line or labels.
    password = Path(f"/etc/sliceops/{INSTANCE}/secrets/wa_slice_1.password").read_text().strip()
    assert password not in json.dumps(cfg["Config"]["Cmd"]) + json.dumps(cfg["Config"]["Labels"])


def test_a_limit_change_recreates_that_container_only(fleet):
    before = {sid: inspect(sid)["State"]["StartedAt"] for sid in (1, 2, 3)}
    fleet.write([{"id": 1}, {"id": 2, "memory": "300m"}, {"id": 3}])
    out = run_deploy(fleet.path)
    assert out.returncode == 0, out.output[-3000:]
    after = {sid: inspect(sid)["State"]["StartedAt"] for sid in (1, 2, 3)}
    assert after[1] == before[1] and after[3] == before[3]
    assert after[2] != before[2]
    assert inspect(2)["HostConfig"]["Memory"] == 300 * 1024 * 1024
    again = run_deploy(fleet.path)
    assert again.totals["changed"] == 0, again.changed_ops
    assert {sid: inspect(sid)["State"]["StartedAt"] for sid in (1, 2, 3)} == after


def test_suspend_then_resume(fleet):
    su("wank_saas", "UPDATE gateway.slices SET status = 'assigned', user_id = NULL WHERE id = 3")
    fleet.write([{"id": 1}, {"id": 2, "memory": "300m"}, {"id": 3, "status": "suspended"}])
    out = run_deploy(fleet.path)
    assert out.returncode == 0, out.output[-3000:]
    assert inspect(3)["State"]["Running"] is False
    assert su("wank_saas", "SELECT status FROM gateway.slices WHERE id = 3") == "suspended"
    assert su("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'wa_slice_3'") == "1"
    fleet.write([{"id": 1}, {"id": 2, "memory": "300m"}, {"id": 3}])
    out = run_deploy(fleet.path)
    assert out.returncode == 0, out.output[-3000:]
    assert inspect(3)["State"]["Running"] is True
    # Back to what the gateway had: no user, so available.
    assert su("wank_saas", "SELECT status FROM gateway.slices WHERE id = 3") == "available"


def test_an_assigned_slice_is_not_destroyed_without_force(fleet):
    su("wank_saas", "INSERT INTO gateway.users (id, email, password_hash) VALUES (77, 'tenant@example.com', 'x') "
                    "ON CONFLICT DO NOTHING")
    su("wank_saas", "UPDATE gateway.slices SET status = 'assigned', user_id = 77 WHERE id = 2")
    fleet.write([{"id": 1}, {"id": 2, "memory": "300m", "status": "destroying"}, {"id": 3}])
    out = run_deploy(fleet.path)
    assert out.returncode != 0
    assert "refusing to destroy: slice 2 is assigned to user 77" in out.output
    assert inspect(2) is not None and inspect(2)["State"]["Running"]
    assert su("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'wa_slice_2'") == "1"


def test_destroy_takes_a_verified_backup_that_restores(fleet):
    su("wa_slice_2", 'INSERT INTO public."user" (id, name, email, "emailVerified", "createdAt", "updatedAt") '
                    "VALUES ('u-ada', 'Ada', 'ada@example.com', true, now(), now())")
    sh("docker", "exec", NAME(2), "sh", "-c", "echo CONNECTED > /data/wa_state")
    fleet.write([{"id": 1}, {"id": 2, "memory": "300m", "status": "destroying", "force": True}, {"id": 3}])
    out = run_deploy(fleet.path)
    assert out.returncode == 0, out.output[-3000:]
    final = re.search(r"backup (\S+) verified \(final backup of slice 2", out.output)
    assert final, out.output[-3000:]
    manifest = json.loads((Path(final[1]) / "manifest.json").read_text())
    assert manifest["kind"] == "final" and manifest["verified"] and manifest["tables"]["public.user"] >= 1
    dump = (None, f"{final[1]}/wa_slice_2.dump")
    archive = (None, f"{final[1]}/data.tar.gz")
    assert inspect(2) is None
    assert su("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'wa_slice_2'") == "0"
    assert su("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'wa_slice_2'") == "0"
    assert su("wank_saas", "SELECT count(*) FROM gateway.slices WHERE id = 2") == "0"
    assert not Path(f"/etc/sliceops/{INSTANCE}/secrets/wa_slice_2.password").exists()
    # The backup restores into a scratch database with the slice's rows intact.
    su("postgres", "DROP DATABASE IF EXISTS itsl_restore")
    su("postgres", "CREATE DATABASE itsl_restore")
    try:
        sh("sh", "-c", f"runuser -u postgres -- pg_restore --no-owner --no-acl --exit-on-error -p {PG_PORT} -d itsl_restore < {dump[1]}")
        assert su("itsl_restore", "SELECT name FROM public.\"user\" WHERE id = 'u-ada'") == "Ada"
    finally:
        su("postgres", "DROP DATABASE IF EXISTS itsl_restore")
    listing = sh("tar", "-tzf", archive[1]).stdout
    assert "./wa_state" in listing
    # Destroyed stays destroyed: the next deploy has nothing to do.
    again = run_deploy(fleet.path)
    assert again.returncode == 0 and again.totals["changed"] == 0, again.changed_ops


def test_a_slice_removed_from_the_file_is_an_orphan_left_intact(fleet):
    fleet.write([{"id": 1}])
    out = run_deploy(fleet.path)
    assert out.returncode == 0, out.output[-3000:]
    assert "orphan slice 3" in out.output
    assert inspect(3) is not None and inspect(3)["State"]["Running"]
    assert su("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'wa_slice_3'") == "1"
