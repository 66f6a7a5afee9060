"""Progress of the long fleet steps (slice volume, roles, databases, migrations, registration,
containers), shown while a step runs rather than after it.

The scripts on the target print one line per slice done, `sliceops-progress <step> <done>
<total> <current>`; the controller reads command output line by line as it arrives
(pyinfra's connectors do), and `Relay` turns those lines into pyinfra-styled lines on
stderr: a line when another tenth of the step is done or 10 s have passed (2 s on a
terminal, above pyinfra's spinner), and the last one, so a step of 500 slices writes a dozen
or so lines into a log, not 500. The lines themselves are never kept as the command's output.
What a step did is then said once, naming a few of the slices (`listed`), not once per slice.
"""

from __future__ import annotations

import re
import sys
import time

from sliceops.shell import echo, literal

PREFIX = "sliceops-progress "
INTERVAL = 10.0  # seconds between lines into a pipe, whatever the step's pace
TTY_INTERVAL = 2.0  # on a terminal
SHOWN = 5  # names a summary line gives before "and N more"
LABELS = {
    "volume": "slice volume",
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


def listed(names: list[str], noun: str) -> str:
    """Names for a step's one summary line at any fleet size: `a`, `a, b`, or `500 <noun> (a, b,
    c, d, e and 495 more)`."""
    if len(names) <= SHOWN:
        return ", ".join(names)
    return f"{len(names)} {noun} ({', '.join(names[:SHOWN])} and {len(names) - SHOWN} more)"


def parse(line: str) -> tuple[str, int, int, str] | None:
    m = _LINE.match(line.strip())
    return (m[1], int(m[2]), int(m[3]), m[4]) if m else None


class Relay:
    """Shows progress lines for one process; `clock` and `stream` are the test's to set.

    A line is shown when the step starts, when another tenth of it is done, when `interval`
    seconds passed since the last one (10 s into a pipe; 2 s on a terminal) and when it ends.
    On a terminal pyinfra's own spinner owns the updating line at the bottom, so progress
    lines clear it and print above it, as pyinfra's other output does."""

    def __init__(self, stream=None, tty: bool | None = None, clock=time.monotonic, interval: float | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.interval = interval if interval is not None else (TTY_INTERVAL if self.tty else INTERVAL)
        self.shown: dict[tuple[str, str], tuple[int, float]] = {}  # (host, step) -> (tenth, time) last shown

    def show(self, prefix: str, line: str) -> bool:
        """Show `line` if it is a progress line (True), else leave it alone (False)."""
        parsed = parse(line)
        if parsed is None:
            return False
        step, done, total, current = parsed
        prefix = _ANSI.sub("", prefix)
        now = self.clock()
        tenth = done * 10 // max(total, 1)
        last = self.shown.get((prefix, step))
        if last is None or done >= total or tenth > last[0] or now - last[1] >= self.interval:
            self.shown[(prefix, step)] = (tenth, now)
            clear = "\r\x1b[K" if self.tty else ""
            self.stream.write(f"{clear}    {prefix}{LABELS.get(step, step)}: {done}/{total} ({current})\n")
            self.stream.flush()
        return True


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
