"""A real, throwaway PostgreSQL server for integration tests, loaded as a pytest plugin.

Set SLICEOPS_TEST_DSN to test against an existing server instead; otherwise a
private PostgreSQL 15 cluster is created in a temp dir for the session and removed
at the end. Either way the server is checked once, and an unusable server ends
the run with a single message instead of a hundred errors.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DSN_ENV = "SLICEOPS_TEST_DSN"
BINDIR_ENV = "SLICEOPS_PG_BINDIR"
DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"
SUPERUSER = "postgres"
CONNECT_TIMEOUT = 10

# A throwaway cluster does not need crash safety; these make initdb, CREATE
# DATABASE and bulk inserts several times faster.
_FAST_UNSAFE_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PgServerError(Exception):
    """The test PostgreSQL server could not be created, started or reached."""


class PgServer:
    """Where the test server listens, and how to reach it as any role."""

    def __init__(self, base_conninfo: dict[str, str], superuser_password: str | None = None):
        self._base = dict(base_conninfo)
        self._superuser = self._base.get("user", SUPERUSER)
        self._superuser_password = superuser_password or self._base.get("password")
        self.host: str = self._base.get("host", "127.0.0.1")
        self.port: int = int(self._base.get("port", 5432))
        self.server_version: int = 0

    @property
    def superuser(self) -> str:
        return self._superuser

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        """Conninfo string for dbname as user.

        The superuser's password is filled in when none is given; any other role
        connects with exactly the password passed, so tests can check that a
        wrong or missing password is refused.
        """
        params = dict(self._base)
        params.pop("password", None)
        if user == SUPERUSER:
            user = self._superuser
        params.update(dbname=dbname, user=user)
        if password is None and user == self._superuser:
            password = self._superuser_password
        if password is not None:
            params["password"] = password
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
        params.setdefault("application_name", "sliceops-tests")
        return make_conninfo(**params)

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        """Superuser autocommit connection, for setup and teardown work."""
        return psycopg.connect(self.dsn(dbname), autocommit=True, **kwargs)

    @contextlib.contextmanager
    def temp_database(self, prefix: str = "sliceops_test") -> Iterator["TempDatabase"]:
        """A freshly created database, dropped on exit even if clients are still connected."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield TempDatabase(self, name)
        finally:
            with self.connect() as conn:
                # FORCE: a test that leaks a connection must not break teardown.
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


class TempDatabase:
    """A database created for one test (or one module) on the test server."""

    def __init__(self, server: PgServer, name: str):
        self.server = server
        self.name = name

    def dsn(self, user: str = SUPERUSER, password: str | None = None) -> str:
        return self.server.dsn(dbname=self.name, user=user, password=password)

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn(), **kwargs)

    def __str__(self) -> str:
        return self.name


def _free_port() -> int:
    # The port may be taken again before postgres binds it; the caller retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindir() -> Path:
    explicit = os.environ.get(BINDIR_ENV)
    if explicit:
        return Path(explicit)
    if Path(DEFAULT_BINDIR, "initdb").exists():
        return Path(DEFAULT_BINDIR)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return Path(out.stdout.strip())
    raise PgServerError(
        f"no PostgreSQL binaries: {DEFAULT_BINDIR}/initdb missing and no pg_config on PATH "
        f"(set {BINDIR_ENV}, or {DSN_ENV} to use an existing server)"
    )


class LocalCluster:
    """A private initdb'd cluster in a temp dir, owned by the postgres system user."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="sliceops-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.running = False
        # initdb refuses to run as root, so as root we run everything as postgres.
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            self._as_owner = ["runuser", "-u", SUPERUSER, "--"]
            shutil.chown(self.root, user=SUPERUSER)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: int = 120) -> None:
        cmd = [*self._as_owner, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PgServerError(f"{args[0]} failed: {exc}") from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise PgServerError(f"{Path(args[0]).name} exited {proc.returncode}: " + " | ".join(detail))

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_owner:
            shutil.chown(pwfile, user=SUPERUSER)
        try:
            # The socket is trusted (only its owner can reach the private
            # temp dir); TCP asks for a password so password tests mean something.
            self._run(
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "-U", SUPERUSER,
                "--pwfile", str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, attempts: int = 3) -> None:
        last: Exception | None = None
        for _ in range(attempts):
            self.port = _free_port()
            settings = {
                "port": str(self.port),
                "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(self.root),
                **_FAST_UNSAFE_SETTINGS,
            }
            opts = " ".join(f"-c {k}={v}" for k, v in settings.items())
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D", str(self.datadir), "-l", str(self.logfile),
                    "-w", "-t", "60", "-o", opts, "start",
                )
                self.running = True
                return
            except PgServerError as exc:
                last = exc
        raise PgServerError(f"{last}; log tail: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.logfile.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.running:
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")
            except PgServerError:
                # Nothing here is worth keeping; don't let shutdown hang the run.
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop")
            self.running = False

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def conninfo(self) -> dict[str, str]:
        return {"host": "127.0.0.1", "port": str(self.port), "user": SUPERUSER}


def _warm_up(server: PgServer) -> None:
    try:
        with server.connect() as conn:
            server.server_version = conn.info.server_version
    except psycopg.Error as exc:
        raise PgServerError(f"cannot connect to {server.host}:{server.port}: {exc}".strip()) from exc


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole run: SLICEOPS_TEST_DSN, or a private cluster."""
    external = os.environ.get(DSN_ENV)
    if external:
        try:
            server = PgServer(conninfo_to_dict(external))
            _warm_up(server)
        except (PgServerError, psycopg.ProgrammingError) as exc:
            pytest.exit(f"{DSN_ENV} is not usable: {exc}", returncode=3)
        yield server
        return

    cluster: LocalCluster | None = None
    try:
        cluster = LocalCluster()
        cluster.init()
        cluster.start()
        server = PgServer(cluster.conninfo(), superuser_password=cluster.password)
        _warm_up(server)
    except (PgServerError, OSError) as exc:
        if cluster is not None:
            with contextlib.suppress(PgServerError):
                cluster.stop()
            cluster.remove()
        pytest.exit(
            f"could not start a throwaway PostgreSQL for integration tests: {exc} "
            f"(set {DSN_ENV} to use an existing server)",
            returncode=3,
        )
    try:
        yield server
    finally:
        try:
            cluster.stop()
        finally:
            cluster.remove()


@pytest.fixture
def scratch_db(pg_server: PgServer) -> Iterator[TempDatabase]:
    """An empty, uniquely named database, dropped after the test."""
    with pg_server.temp_database() as db:
        yield db
