"""A real browser for tests of web pages: headless Chromium (Debian's `chromium` package)
driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending
in NUL on file descriptors 3 and 4), so no port is opened and no client library is needed.

`open_page(path)` loads a file, makes every image load (lazy ones too) and returns what a
reader of the browser's console would have seen: console errors, uncaught exceptions, log
entries at error level (a missing image is one), and which images failed to decode.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SLICEOPS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# The flags that work as root in a container without a display or network.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-pipe",
]


@dataclass
class PageReport:
    title: str = ""
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, error log entries
    images: dict[str, bool] = field(default_factory=dict)  # src -> decoded
    text: str = ""


class _Pipe:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.w, self.r = proc, to_browser, from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        want = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while (msg := self._read(deadline)) is not None:
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)
        raise TimeoutError(f"chromium did not answer {method} within {timeout}s")

    def wait_event(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while (msg := self._read(deadline)) is not None:
            self.events.append(msg)
            if msg.get("method") == method:
                return
        raise TimeoutError(f"no {method} from chromium within {timeout}s")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (msg := self._read(deadline)) is not None:
            self.events.append(msg)


# Resolves once every image has loaded or failed; lazy images are made eager first, since a
# headless window never scrolls them into view.
_IMAGES_JS = """
(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  const ok = await Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth > 0, () => false)));
  return JSON.stringify({title: document.title, text: document.body.innerText,
                         images: imgs.map((i, n) => [i.getAttribute('src'), ok[n]])});
})()
"""


def open_page(path: Path, timeout: float = 60) -> PageReport:
    """Load `path` in headless Chromium and report what its console and images did."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test-deps)")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def child_fds():
        os.dup2(to_r, 3)
        os.dup2(from_w, 4)

    with tempfile.TemporaryDirectory(prefix="sliceops-chromium-") as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                # Kept open past the fd clean-up, which runs after preexec_fn.
                                preexec_fn=child_fds, pass_fds=(3, 4),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(proc, to_w, from_r)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session, timeout=timeout)
            pipe.wait_event("Page.loadEventFired", timeout)
            result = pipe.call("Runtime.evaluate", {"expression": _IMAGES_JS, "awaitPromise": True,
                                                    "returnByValue": True}, session=session, timeout=timeout)
            pipe.drain(0.5)  # errors logged while the last images loaded
        finally:
            try:
                pipe.send("Browser.close")
                proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            os.close(to_w)
            os.close(from_r)
    report = PageReport()
    if "exceptionDetails" in result:
        report.errors.append(f"evaluating the image check failed: {result['exceptionDetails']}")
    else:
        doc = json.loads(result["result"]["value"])
        report.title, report.text = doc["title"], doc["text"]
        report.images = {src: ok for src, ok in doc["images"]}
    for e in pipe.events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            report.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            report.errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            report.errors.append(f"log: {entry['text']} {entry.get('url', '')}".strip())
    return report
