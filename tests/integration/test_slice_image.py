"""The reference slice image on the real engine: built offline, run exactly as the containers
operation runs it (its own plan and script, hardening flags, the slice network, credentials
from a root-only env file), answering /health from a real PostgreSQL through the bridge."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from sliceops.facts.docker import DockerImage, DockerNetwork, SliceContainers
from sliceops.inventory import load
from sliceops.operations import docker as op

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
INSTANCE = "itimg"


def _free_subnet() -> str:
    """A /24 no Docker network uses (other test sessions run their own instances beside this one)."""
    used = subprocess.run(
        ["sh", "-c", "docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "
                     "$(docker network ls -q) 2>/dev/null"], capture_output=True, text=True).stdout.split()
    return next(f"172.30.{i}.0/24" for i in range(150, 250) if f"172.30.{i}.0/24" not in used)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SUBNET = _free_subnet()
PORT = _free_port()


def sh(command: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{command[:200]!r} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def read_fact(cls, **kwargs):
    """A fact read the way pyinfra reads it: its command in a shell, its parser on the lines."""
    return cls.parse(sh(cls().command(**kwargs)).stdout.splitlines())


def get_health(port: int = PORT, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_health(expect: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, body = get_health()
            if code == expect:
                return body
            last = (code, body)
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"/health never answered {expect} within {timeout}s; last: {last!r}")


class Forwarder:
    """A TCP relay from the slice network's gateway address to the throwaway PostgreSQL on
    127.0.0.1: the container reaches its database the way it does in production (the bridge
    gateway), without reconfiguring the shared test server. `stop()` makes the database
    unreachable, `start()` reachable again on the same port."""

    def __init__(self, listen_host: str, target_port: int):
        self.listen_host, self.target_port, self.port = listen_host, target_port, 0
        self.conns: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        self.listener = socket.create_server((self.listen_host, self.port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        # close() alone leaves a thread blocked in accept() listening; shutdown() wakes it.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()
        self.conns.clear()


def cleanup_instance() -> None:
    sh(f"docker rm -f $(docker ps -aq --filter label=sliceops.instance={INSTANCE}) 2>/dev/null", check=False)
    sh(f"docker network rm sliceops-{INSTANCE} 2>/dev/null", check=False)
    shutil.rmtree(f"/etc/sliceops/{INSTANCE}", ignore_errors=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def image_id() -> str:
    """The reference image, built with the very command the image operation emits."""
    if shutil.which("docker") is None or sh("docker info", check=False).returncode != 0:
        pytest.exit("integration tests need a Docker engine: 'docker info' fails", returncode=3)
    sh(op.build_command(str(IMAGES), op.REFERENCE_IMAGE, op.recipe_digest()))
    found = read_fact(DockerImage, image=op.REFERENCE_IMAGE)
    assert found
    return found


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / f"{INSTANCE}.yaml"
    data_dir = tmp_path_factory.mktemp("data")
    path.write_text(yaml.safe_dump({
        "target": "@local", "instance": INSTANCE, "docker": {"subnet": SUBNET},
        "slice_defaults": {"port_base": PORT, "data_dir": str(data_dir)},
        "slices": [{"id": 1}],
    }))
    cleanup_instance()
    yield load(path)
    cleanup_instance()


@pytest.fixture(scope="module")
def network(inv):
    for command in op.network_plan(inv, read_fact(DockerNetwork, network=inv.network)):
        sh(command)
    return read_fact(DockerNetwork, network=inv.network)


@pytest.fixture(scope="module")
def database(pg_server, network, inv):
    """A slice database and login role on the test server, reachable at the bridge gateway,
    and the slice's root-only credentials file pointing there."""
    role, password = f"slice_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    forwarder = Forwarder(inv.docker.gateway_address, pg_server.port)
    with pg_server.temp_database("slice_image") as db, pg_server.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        try:
            secrets = Path(inv.secrets_dir)
            secrets.mkdir(parents=True, mode=0o700)
            env = secrets / f"{inv.slice(1).login_role}.env"
            url = f"postgresql://{role}:{password}@{inv.docker.gateway_address}:{forwarder.port}/{db.name}"
            env.write_text(f"DATABASE_URL={url}\n")
            env.chmod(0o600)
            # The container mounts the host's copy of PostgreSQL's CA (a file, or docker
            # would make a directory there); this test's server speaks no TLS.
            Path(inv.pg_ca_file).write_text("")
            yield {"forwarder": forwarder, "password": password, "env": env}
        finally:
            forwarder.stop()
            sh(f"docker rm -f {inv.container_name(1)}", check=False)  # its connections first
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def converge(inv, image_id: str) -> tuple[op.ContainerPlan, subprocess.CompletedProcess | None]:
    """What the containers operation does on the target: read the fact, plan, run the script."""
    plan = op.container_plan(inv, read_fact(SliceContainers, instance=inv.instance, secrets_dir=inv.secrets_dir),
                             image_id)
    return plan, (sh(op.plan_script(plan)) if plan.steps else None)


@pytest.fixture(scope="module")
def slice1(inv, image_id, database):
    plan, ran = converge(inv, image_id)
    assert plan.created == [inv.container_name(1)]
    assert "sliceops: created itimg-wa-slice-1" in ran.stdout
    wait_health(200)
    return inv.container_name(1)


def inspect(name: str) -> dict:
    return json.loads(sh(f"docker inspect {name}").stdout)[0]


# --------------------------------------------------------------------------- the image


def test_base_image_script_is_idempotent_and_names_the_image_last():
    first = sh(f"bash {IMAGES}/base/build.sh")
    second = sh(f"bash {IMAGES}/base/build.sh", timeout=30)
    assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1]
    assert second.stdout.splitlines()[-1] in ("debian:bookworm-slim", "sliceops/bookworm-base:1")


def test_base_image_builds_offline_from_debian_packages(tmp_path):
    """No registry image and no earlier build: debootstrap + docker import, then the rootfs is gone."""
    tag = f"sliceops/bookworm-base:test-{uuid.uuid4().hex[:8]}"
    env = f"BASE_IMAGE=sliceops/absent:none OFFLINE_IMAGE={tag} PULL_TIMEOUT=5"
    try:
        built = sh(f"{env} bash {IMAGES}/base/build.sh", timeout=900)
        assert built.stdout.splitlines()[-1] == tag
        assert "debootstrap" in built.stderr
        probe = sh(f"docker run --rm {tag} python3 -c 'import psycopg; print(psycopg.__version__)'")
        assert probe.stdout.strip()
        assert not list(Path("/var/tmp").glob("sliceops-base.*"))
        again = sh(f"{env} bash {IMAGES}/base/build.sh", timeout=30)
        assert again.stdout.splitlines()[-1] == tag and "debootstrap" not in again.stderr
    finally:
        sh(f"docker image rm {tag}", check=False)


def test_image_runs_as_10001_with_healthcheck_and_no_secret(image_id):
    config = json.loads(sh(f"docker image inspect {image_id}").stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert "/data" in config["Volumes"]
    assert "urllib" in " ".join(config["Healthcheck"]["Test"])
    assert not [e for e in config["Env"] if e.startswith("DATABASE_URL")]
    assert config["Labels"][op.RECIPE_LABEL] == op.recipe_digest()


# --------------------------------------------------------------------------- the running slice


def test_health_reports_unpaired_then_connected(slice1, inv):
    code, body = get_health()
    assert (code, body["wa_state"], body["wa_phone"], body["db"]) == (200, "UNPAIRED", None, "ok")
    data = Path(inv.slice_data_dir(1))
    (data / "wa_state").write_text("CONNECTED\n")
    (data / "wa_phone").write_text("5511999990001\n")
    try:
        code, body = get_health()
        assert (code, body["wa_state"], body["wa_phone"]) == (200, "CONNECTED", "5511999990001")
    finally:
        (data / "wa_state").unlink()
        (data / "wa_phone").unlink()


def test_health_is_503_when_the_database_is_unreachable(slice1, database):
    healthcheck = shlex.join(inspect(slice1)["Config"]["Healthcheck"]["Test"][1:])
    assert sh(f"docker exec {slice1} {healthcheck}", check=False).returncode == 0
    database["forwarder"].stop()
    try:
        code, body = get_health()
        assert code == 503 and body["wa_state"] == "UNPAIRED" and body["db"].startswith("error: ")
        assert database["password"] not in json.dumps(body)
        # Docker's own HEALTHCHECK command fails too.
        assert sh(f"docker exec {slice1} {healthcheck}", check=False).returncode != 0
    finally:
        database["forwarder"].start()
    wait_health(200)


def test_the_container_is_hardened_as_specified(slice1, inv):
    c = inspect(slice1)
    hc = c["HostConfig"]
    assert c["Config"]["User"] == "10001:10001"
    assert hc["ReadonlyRootfs"] is True and hc["CapDrop"] == ["ALL"] and hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["Memory"] == 256 * 1024 * 1024 and hc["NanoCpus"] == 500_000_000 and hc["PidsLimit"] == 256
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    assert hc["RestartPolicy"]["Name"] == "unless-stopped"
    assert hc["PortBindings"] == {f"{PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]}
    assert list(c["NetworkSettings"]["Networks"]) == [inv.network]
    assert hc["Tmpfs"] == {"/tmp": ""}
    assert sh(f"docker exec {slice1} id -u").stdout.strip() == "10001"
    assert "Read-only file system" in sh(f"docker exec {slice1} touch /opt/x", check=False).stderr
    sh(f"docker exec {slice1} touch /tmp/x /data/x")
    assert os.stat(Path(inv.slice_data_dir(1)) / "x").st_uid == 10001
    # The password reached the container from the root-only file, never a command line.
    assert oct(os.stat(Path(inv.secrets_dir) / "wa_slice_1.env").st_mode & 0o777) == "0o600"
    assert "DATABASE_URL" not in " ".join(c["Args"] + c["Config"]["Cmd"])


def test_health_times_out_while_hang_exists(slice1, inv):
    hang = Path(inv.slice_data_dir(1)) / "hang"
    hang.touch()
    try:
        with pytest.raises((TimeoutError, urllib.error.URLError, socket.timeout)):
            get_health(timeout=2)
    finally:
        hang.unlink()
    assert get_health()[0] in (200, 503)


def test_a_converged_slice_is_left_alone(slice1, inv, image_id):
    before = read_fact(SliceContainers, instance=INSTANCE, secrets_dir=inv.secrets_dir)["containers"][slice1]
    assert before["state"] == "running" and before["slice"] == 1
    plan, _ = converge(inv, image_id)
    assert plan.steps == []
    after = read_fact(SliceContainers, instance=INSTANCE, secrets_dir=inv.secrets_dir)["containers"][slice1]
    assert (after["id"], after["started_at"]) == (before["id"], before["started_at"])


def test_suspend_stops_and_resume_starts_the_same_container(slice1, inv, image_id, tmp_path):
    path = tmp_path / "suspended.yaml"
    data = yaml.safe_load(Path(inv.path).read_text())
    path.write_text(yaml.safe_dump({**data, "slices": [{"id": 1, "status": "suspended"}]}))
    before = read_fact(SliceContainers, instance=INSTANCE, secrets_dir=inv.secrets_dir)["containers"][slice1]
    plan, ran = converge(load(path), image_id)
    assert plan.stopped == [slice1] and "sliceops: stopped" in ran.stdout
    assert inspect(slice1)["State"]["Status"] == "exited"
    plan, ran = converge(inv, image_id)
    assert plan.started == [slice1] and plan.recreated == []
    assert inspect(slice1)["Id"] == before["id"]
    wait_health(200)


def test_a_limit_change_recreates_the_container(slice1, inv, image_id, tmp_path):
    path = tmp_path / "bigger.yaml"
    data = yaml.safe_load(Path(inv.path).read_text())
    path.write_text(yaml.safe_dump({**data, "slices": [{"id": 1, "memory": "300m"}]}))
    before = inspect(slice1)["Id"]
    (Path(inv.slice_data_dir(1)) / "wa_state").write_text("OPENING")
    try:
        plan, ran = converge(load(path), image_id)
        assert plan.recreated == [slice1] and "recreated" in ran.stdout
        c = inspect(slice1)
        assert c["Id"] != before and c["HostConfig"]["Memory"] == 300 * 1024 * 1024
        # /data carried over.
        assert wait_health(200)["wa_state"] == "OPENING"
    finally:
        (Path(inv.slice_data_dir(1)) / "wa_state").unlink()
        converge(inv, image_id)
