"""The /health classifier against throwaway local servers: ok, refused, hung, bad answers."""

import socket
import sys
import threading
import time
from pathlib import Path

import pytest


from sliceops_monitor.health import (  # noqa: E402
    BACKEND_ERROR, BACKEND_TIMEOUT, BACKEND_UNREACHABLE, HealthChecker, check, classify,
)

TIMEOUT = 0.5


class Backend:
    """A one-thread TCP server answering every connection with fixed bytes (or never)."""

    def __init__(self, response: bytes | None, delay: float = 0.0):
        self.response = response
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._held: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests.append(conn.recv(4096))
            if self.response is None:
                self._held.append(conn)  # hang: keep it open and say nothing
                continue
            time.sleep(self.delay)
            try:
                conn.sendall(self.response)
            finally:
                conn.close()

    def close(self):
        self._stop = True
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def backend():
    started = []

    def start(response, delay=0.0):
        b = Backend(response, delay)
        started.append(b)
        return b

    yield start
    for b in started:
        b.close()


def http(status: str, body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


def refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound then closed: nothing listens, connect is refused
    return port


def test_ok_gives_the_backends_state_and_phone(backend):
    b = backend(http("200 OK", b'{"wa_state": "CONNECTED", "wa_phone": "+4915112345678", "uptime": 3}'))
    h = check(b.port, TIMEOUT)
    assert (h.state, h.phone, h.answered) == ("CONNECTED", "+4915112345678", True)
    assert b.requests[0].startswith(b"GET /health HTTP/1.0\r\n")


def test_ok_without_content_length_reads_to_eof(backend):
    b = backend(b'HTTP/1.0 200 OK\r\n\r\n{"wa_state": "QR_PENDING"}')
    h = check(b.port, TIMEOUT)
    assert (h.state, h.phone, h.answered) == ("QR_PENDING", None, True)


def test_chunked_answer(backend):
    body = b'{"wa_state": "CONNECTED"}'
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    b = backend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert check(b.port, TIMEOUT).state == "CONNECTED"


def test_refused_port_is_unreachable():
    h = check(refused_port(), TIMEOUT)
    assert (h.state, h.answered) == (BACKEND_UNREACHABLE, False)


def test_hung_backend_times_out_within_the_timeout(backend):
    b = backend(None)
    start = time.monotonic()
    h = check(b.port, TIMEOUT)
    elapsed = time.monotonic() - start
    assert h.state == BACKEND_TIMEOUT
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.3


def test_slow_trickle_is_bounded_by_one_deadline(backend):
    # An answer that starts in time but does not finish in time is still a timeout.
    b = backend(http("200 OK", b'{"wa_state": "CONNECTED"}'), delay=TIMEOUT * 2)
    assert check(b.port, TIMEOUT).state == BACKEND_TIMEOUT


@pytest.mark.parametrize("response, detail", [
    (http("500 Internal Server Error", b'{"error": "boom"}'), "HTTP 500"),
    (http("200 OK", b"<html>not json</html>"), "invalid JSON"),
    (http("200 OK", b'{"status": "fine"}'), "no wa_state"),
    (http("200 OK", b'["CONNECTED"]'), "no wa_state"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "no HTTP header end"),
])
def test_bad_answers_are_backend_errors(backend, response, detail):
    b = backend(response)
    h = check(b.port, TIMEOUT)
    assert (h.state, h.answered) == (BACKEND_ERROR, False)
    assert detail in h.detail


def test_closed_without_an_answer_is_unreachable(backend):
    # What a published port does when nothing listens inside the container.
    b = backend(b"")
    h = check(b.port, TIMEOUT)
    assert (h.state, h.detail) == (BACKEND_UNREACHABLE, "closed without an answer")


def test_classify_truncates_absurd_states():
    h = classify(http("200 OK", b'{"wa_state": "' + b"X" * 500 + b'", "wa_phone": 4915}'))
    assert len(h.state) == 64 and h.phone == "4915"


def test_checks_run_concurrently_so_hung_backends_cost_one_timeout(backend):
    hung = [backend(None) for _ in range(6)]
    ok = backend(http("200 OK", b'{"wa_state": "CONNECTED"}'))
    checker = HealthChecker(TIMEOUT, workers=8)
    try:
        start = time.monotonic()
        results = checker.check_all([b.port for b in hung] + [ok.port, refused_port()])
        elapsed = time.monotonic() - start
    finally:
        checker.close()
    assert [r.state for r in results] == [BACKEND_TIMEOUT] * 6 + ["CONNECTED", BACKEND_UNREACHABLE]
    assert elapsed < TIMEOUT * 2  # not 6 timeouts in a row
