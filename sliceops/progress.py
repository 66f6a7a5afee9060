"""Progress of the long fleet steps (roles, databases, migrations, registration, containers),
shown while a step runs rather than after it.

The scripts on the target print one line per slice done, `sliceops-progress <step> <done>
<total> <current>`; the controller reads command output line by line as it arrives
(pyinfra's connectors do), and `Relay` turns those lines into pyinfra-styled lines on
stderr: on a terminal one line that updates in place; into a pipe or a log, a line when
another tenth of the step is done or 10 s have passed, and the last one, so a step of 500
slices writes about a dozen lines, not 500. The lines themselves are never kept as the
command's output.
"""

from __future__ import annotations

import re
import sys
import time

from sliceops.shell import echo, literal

PREFIX = "sliceops-progress "
INTERVAL = 10.0  # seconds between lines into a pipe, whatever the step's pace
LABELS = {
    "roles": "roles and credentials",
    "databases": "databases",
    "migrations": "migrations",
    "registration": "gateway rows",
    "containers": "slice containers",
}
_LINE = re.compile(r"^sliceops-progress ([a-z]+) ([0-9]+) ([0-9]+) (\S+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def text(step: str, done: int, total: int, current: str) -> str:
    return f"{PREFIX}{step} {int(done)} {int(total)} {current}"


def shell(step: str, done: int, total: int, current: str) -> str:
    """Shell printing the progress line (the current item's name quoted by the door)."""
    return echo(text(step, done, total, current))


def psql(step: str, done: int, total: int, current: str) -> str:
    """A psql meta-command printing the progress line when psql reaches it (psql flushes its
    output before each statement, so the line leaves as that point is passed)."""
    return f"\\echo {literal(text(step, done, total, current))}"


def parse(line: str) -> tuple[str, int, int, str] | None:
    m = _LINE.match(line.strip())
    return (m[1], int(m[2]), int(m[3]), m[4]) if m else None


class Relay:
    """Shows progress lines for one process; `clock` and `stream` are the test's to set."""

    def __init__(self, stream=None, tty: bool | None = None, clock=time.monotonic, interval: float = INTERVAL):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.interval = interval
        self.shown: dict[tuple[str, str], tuple[int, float]] = {}  # (host, step) -> (tenth, time) last shown
        self.open_line = False

    def show(self, prefix: str, line: str) -> bool:
        """Show `line` if it is a progress line (True), else leave it alone (False)."""
        parsed = parse(line)
        if parsed is None:
            return False
        step, done, total, current = parsed
        prefix = _ANSI.sub("", prefix)
        label = LABELS.get(step, step)
        message = f"{prefix}{label}: {done}/{total} ({current})"
        if self.tty:
            end = "\n" if done >= total else ""
            self.stream.write(f"\r\x1b[K    {message}{end}")
            self.open_line = done < total
            self.stream.flush()
            return True
        now = self.clock()
        tenth = done * 10 // max(total, 1)
        last = self.shown.get((prefix, step))
        if last is None or done >= total or tenth > last[0] or now - last[1] >= self.interval:
            self.shown[(prefix, step)] = (tenth, now)
            self.stream.write(f"    {message}\n")
            self.stream.flush()
        return True

    def close_line(self) -> None:
        """End an updating line before other output (a step that failed half-way)."""
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False


_relay: Relay | None = None


def install() -> None:
    """Wrap pyinfra's reader of command output (every connector reads through it) so progress
    lines are shown as they arrive and are not kept as the command's output."""
    global _relay
    from pyinfra.connectors import util

    if getattr(util.read_buffer, "sliceops_progress", False):
        return
    _relay = Relay()
    original = util.read_buffer

    def read_buffer(name, io, output_queue, print_output=False, print_func=None):
        prefix = print_func("\0").split("\0")[0] if print_func else ""

        def lines():
            for raw in io:
                line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                if not line.startswith(PREFIX) or not _relay.show(prefix, line):
                    yield raw

        return original(name, lines(), output_queue, print_output=print_output, print_func=print_func)

    read_buffer.sliceops_progress = True
    util.read_buffer = read_buffer
