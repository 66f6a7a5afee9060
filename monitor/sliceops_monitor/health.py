"""Slice backend health: GET http://127.0.0.1:<port>/health, classified into a wa_state.

A backend that answers gives its own `wa_state` (and `wa_phone`); otherwise the
state says what went wrong. All checks run at once on a small persistent
thread pool, each bounded by one deadline, so a hung backend costs at most the
timeout. A plain HTTP/1.0 exchange on a socket is a fraction of http.client's
cost (no email header parser), which matters at hundreds of slices per cycle.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

BACKEND_UNREACHABLE = "BACKEND_UNREACHABLE"
BACKEND_TIMEOUT = "BACKEND_TIMEOUT"
BACKEND_ERROR = "BACKEND_ERROR"
MAX_RESPONSE = 64 * 1024
MAX_STATE_LEN = 64
MAX_PHONE_LEN = 64


@dataclass(frozen=True)
class Health:
    """Outcome of one check: answered is True only for HTTP 200 with a JSON wa_state."""

    state: str
    phone: str | None = None
    answered: bool = False
    detail: str = ""


def _request(port: int) -> bytes:
    return (f"GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
            "User-Agent: sliceops-monitor\r\nConnection: close\r\n\r\n").encode()


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("truncated chunked body")
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


def classify(raw: bytes) -> Health:
    """Turn a complete HTTP response into a Health (BACKEND_ERROR unless 200 + JSON with wa_state)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return Health(BACKEND_ERROR, detail="no HTTP header end")
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return Health(BACKEND_ERROR, detail=f"not HTTP: {lines[0][:40]!r}")
    if parts[1] != b"200":
        return Health(BACKEND_ERROR, detail=f"HTTP {parts[1].decode(errors='replace')}")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        headers[key.strip().lower()] = value.strip()
    try:
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = _dechunk(body)
        doc = json.loads(body)
    except ValueError as exc:
        return Health(BACKEND_ERROR, detail=f"invalid JSON: {exc}")
    state = doc.get("wa_state") if isinstance(doc, dict) else None
    if not isinstance(state, str) or not state:
        return Health(BACKEND_ERROR, detail="no wa_state in /health JSON")
    phone = doc.get("wa_phone")
    phone = None if phone is None or phone == "" else sys.intern(str(phone)[:MAX_PHONE_LEN])
    # Interned: the same few states (and each slice's phone) repeat every cycle, and a
    # buffered outage holds hundreds of thousands of them.
    return Health(sys.intern(state[:MAX_STATE_LEN]), phone, answered=True)


def _complete(buf: bytes) -> bool:
    """Whether a response with a Content-Length has all its body (else read to EOF)."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value)
            except ValueError:
                return False
    return False


def check(port: int, timeout: float, host: str = "127.0.0.1") -> Health:
    """One health check against host:port with a single deadline for connect, send and read."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return Health(BACKEND_UNREACHABLE, detail="connection refused")
    except socket.timeout:
        return Health(BACKEND_TIMEOUT, detail=f"connect took over {timeout}s")
    except OSError as exc:
        return Health(BACKEND_UNREACHABLE, detail=exc.strerror or str(exc))
    buf = b""
    try:
        sock.sendall(_request(port))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout
            sock.settimeout(remaining)
            data = sock.recv(16384)
            if not data:
                break
            buf += data
            if len(buf) > MAX_RESPONSE:
                return Health(BACKEND_ERROR, detail=f"response over {MAX_RESPONSE} bytes")
            if _complete(buf):
                break
    except socket.timeout:
        return Health(BACKEND_TIMEOUT, detail=f"no complete answer within {timeout}s")
    except OSError as exc:
        if not buf:
            # A published port accepts even when nothing listens inside the container;
            # Docker then resets the connection: that is the backend refusing.
            return Health(BACKEND_UNREACHABLE, detail=f"{exc.strerror or exc} before any answer")
        return Health(BACKEND_ERROR, detail=exc.strerror or str(exc))
    finally:
        sock.close()
    if not buf:
        # Same as a reset: Docker's userland proxy closes when the container refuses.
        return Health(BACKEND_UNREACHABLE, detail="closed without an answer")
    return classify(buf)


class HealthChecker:
    """Checks many ports at once on a persistent pool; worst case ceil(hung / workers) timeouts."""

    def __init__(self, timeout: float, workers: int = 64, host: str = "127.0.0.1"):
        self.timeout = timeout
        self.host = host
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="health")

    def check_all(self, ports: list[int]) -> list[Health]:
        if not ports:
            return []
        return list(self._pool.map(lambda p: check(p, self.timeout, self.host), ports))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
