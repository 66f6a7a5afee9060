"""What TLS with sslmode=verify-full costs a slice's connections, to decide whether a single
host (slices on the Docker bridge, one hop from PostgreSQL) uses it too.

A throwaway cluster gets a CA and server certificate made by the deploy's own command
(sliceops.operations.tls.certificate_command, openssl on this machine); then, interleaved:
a new connection with SCRAM authentication plus `SELECT 1` over TCP (what the reference
backend does on every /health) with sslmode=disable and with sslmode=verify-full; and 1,000
`SELECT 1` round trips on one open connection in each mode.

    .venv/bin/python bench/tls_connect.py [--runs 40]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _common import Figure, append_results, command_line, table

import psycopg  # noqa: E402

from sliceops.operations.tls import certificate_command  # noqa: E402
from tests.fix_db import LocalCluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    cluster = LocalCluster()
    cluster.init()
    cluster.start()
    modes = ("disable", "verify-full")
    connect = {m: Figure(f"new connection (SCRAM) + SELECT 1 over TCP, sslmode={m}") for m in modes}
    trips = {m: Figure(f"1,000 SELECT 1 round trips on one connection, sslmode={m}") for m in modes}
    try:
        tls = cluster.root / "tls"
        subprocess.run(["sh", "-c", certificate_command(str(tls), "bench", ["IP:127.0.0.1"], new_ca=True)],
                       check=True, capture_output=True)
        base = f"host=127.0.0.1 port={cluster.port} dbname=postgres user=postgres password={cluster.password}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute(f"ALTER SYSTEM SET ssl_cert_file = '{tls}/server.crt'")
            conn.execute(f"ALTER SYSTEM SET ssl_key_file = '{tls}/server.key'")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        dsn = {"disable": f"{base} sslmode=disable",
               "verify-full": f"{base} sslmode=verify-full sslrootcert={tls}/ca.crt"}
        with psycopg.connect(dsn["verify-full"]) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
        for _ in range(args.runs):
            for m in modes:
                started = time.perf_counter()
                with psycopg.connect(dsn[m]) as conn:
                    conn.execute("SELECT 1").fetchone()
                connect[m].add((time.perf_counter() - started) * 1000)
        for _ in range(max(3, args.runs // 8)):
            for m in modes:
                with psycopg.connect(dsn[m], autocommit=True) as conn:
                    started = time.perf_counter()
                    for _ in range(1000):
                        conn.execute("SELECT 1").fetchone()
                    trips[m].add((time.perf_counter() - started) * 1000)
    finally:
        cluster.stop()
        cluster.remove()
    figures = [*connect.values(), *trips.values()]
    for f in figures:
        print(f.line())
    append_results("tls_connect", command_line(), "\n".join([
        "Throwaway cluster (tests/fix_db.py), certificate made by sliceops.operations.tls.certificate_command "
        "(P-256), client psycopg/libpq on this machine over 127.0.0.1; modes interleaved.", "", table(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
