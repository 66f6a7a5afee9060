"""Reference slice backend: the smallest program that meets the slice contract (README.md).

It serves `GET /health` on $PORT with the WhatsApp connection state and a live check of its
database. It has no WhatsApp client: tests set the state through files under /data.
Standard library plus psycopg only, so it runs on Debian's python3 and python3-psycopg.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

DATA = Path(os.environ.get("SLICE_DATA_DIR", "/data"))
# Short enough that /health answers well inside the monitor's and Docker's timeouts.
DB_CONNECT_TIMEOUT = 3
HANG_SECONDS = 30


def wa_status() -> tuple[str, str | None]:
    """(wa_state, wa_phone): a real backend asks whatsapp-web.js; this one reads /data."""
    state = _read(DATA / "wa_state") or "UNPAIRED"
    return state, _read(DATA / "wa_phone")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def db_status() -> str:
    """"ok", or "error: <one line>" (psycopg's messages name host and role, never the password)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return "error: DATABASE_URL is not set"
    try:
        with psycopg.connect(
            url, connect_timeout=DB_CONNECT_TIMEOUT, application_name=f"slice-{os.environ.get('SLICE_ID', '?')}"
        ) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"error: {first[:300]}"
    return "ok"


def health() -> tuple[int, dict]:
    if (DATA / "hang").exists():
        time.sleep(HANG_SECONDS)  # lets tests exercise the monitor's health timeout
    state, phone = wa_status()
    body = {"wa_state": state, "wa_phone": phone, "slice_id": os.environ.get("SLICE_ID"), "db": db_status()}
    return (200 if body["db"] == "ok" else 503), body


class Handler(BaseHTTPRequestHandler):
    server_version = "sliceops-slice-backend/1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0] != "/health":
            self._send(404, {"error": f"no route {self.path.split('?', 1)[0]}"})
            return
        self._send(*health())

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True

    # As PID 1 the process gets no default SIGTERM action: without this `docker stop`
    # would wait its full grace period and then kill.
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"slice {os.environ.get('SLICE_ID', '?')}: listening on :{port}, data in {DATA}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
