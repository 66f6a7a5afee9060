"""What every benchmark shares: repeated timings summarised as median and spread, the load
average next to each figure, and the section each run appends to bench/RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"

sys.path.insert(0, str(ROOT))  # `tests.fix_deploy`, `tests.fix_db`, `sliceops`


def loadavg() -> str:
    """The 1-minute load average: on this 2-core machine other work skews every figure."""
    return f"{os.getloadavg()[0]:.2f}"


@dataclass
class Figure:
    """One measured quantity: every sample, and the load average while it was taken."""

    name: str
    unit: str = "ms"
    goal: float | None = None  # upper bound in `unit`, or None when only reported
    samples: list[float] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, value: float) -> None:
        self.samples.append(value)
        self.loads.append(loadavg())

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def verdict(self) -> str:
        if self.goal is None or not self.samples:
            return ""
        return "ok" if self.median <= self.goal else "MISSED"

    def row(self) -> str:
        if not self.samples:
            return f"| {self.name} | - | - | 0 | - | {self._goal()} | not measured | {self.note} |"
        spread = f"{_fmt(min(self.samples))}-{_fmt(max(self.samples))}"
        lo, hi = min(self.loads, key=float), max(self.loads, key=float)
        loads = f"{lo}-{hi}" if lo != hi else lo
        return (f"| {self.name} | {_fmt(self.median)} {self.unit} | {spread} | {len(self.samples)} | {loads} "
                f"| {self._goal()} | {self.verdict} | {self.note} |")

    def _goal(self) -> str:
        return f"<= {_fmt(self.goal)} {self.unit}" if self.goal is not None else ""

    def line(self) -> str:
        if not self.samples:
            return f"{self.name}: not measured"
        return (f"{self.name}: median {_fmt(self.median)} {self.unit} (min {_fmt(min(self.samples))}, "
                f"max {_fmt(max(self.samples))}, n={len(self.samples)}, load {', '.join(self.loads)})"
                + (f"  goal <= {_fmt(self.goal)}: {self.verdict}" if self.goal is not None else ""))


def _fmt(v: float) -> str:
    if v == 0 or abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"


TABLE_HEAD = ("| figure | median | spread (min-max) | runs | load avg (1 min) | goal | verdict | note |\n"
              "|---|---|---|---|---|---|---|---|")


def table(figures: list[Figure]) -> str:
    return "\n".join([TABLE_HEAD] + [f.row() for f in figures])


def machine() -> str:
    return f"`{platform.node()}` ({os.cpu_count()} CPUs, {platform.release()})"


def append_results(title: str, command: str, body: str) -> None:
    """Append one run as a section of bench/RESULTS.md (created with its header if missing)."""
    if not RESULTS.exists():
        RESULTS.write_text(_RESULTS_HEADER)
    elif _HEADER_MARK not in RESULTS.read_text():
        # Another bench created the file: put the explanation of every bench after its title.
        title, _, rest = RESULTS.read_text().partition("\n")
        RESULTS.write_text(_RESULTS_HEADER + "\n" + rest.lstrip("\n") if title.startswith("# ") else
                           _RESULTS_HEADER + "\n" + RESULTS.read_text())
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    section = (f"\n## {title}: {stamp} on {machine()}\n\n"
               f"`{command}`, load average at the start {loadavg()}\n\n{body.rstrip()}\n\n")
    with RESULTS.open("a") as f:
        f.write(section)
    print(f"\nappended to {RESULTS.relative_to(ROOT)}")


def command_line() -> str:
    return " ".join([".venv/bin/python", os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def teardown(instance: str) -> None:
    """tests.fix_deploy.teardown_instance, plus what it leaves behind that would make the next
    "from scratch" deploy of the same name skip work: the monitor's virtualenv (its stamp says
    "installed"), its log and pid file."""
    import shutil

    from tests.fix_deploy import teardown_instance

    teardown_instance(instance)
    name = f"sliceops-monitor-{instance}"
    shutil.rmtree(f"/opt/sliceops/{instance}", ignore_errors=True)
    for path in (f"/var/log/sliceops/{name}.log", f"/run/{name}.pid"):
        Path(path).unlink(missing_ok=True)


def ns_last_pid() -> int:
    """The kernel's last allocated PID: its delta counts every process and thread created."""
    return int(Path("/proc/sys/kernel/ns_last_pid").read_text())


def pid_delta(before: int, after: int) -> int:
    """PIDs allocated between two readings of ns_last_pid, across one wrap at pid_max."""
    delta = after - before
    return delta if delta >= 0 else delta + int(Path("/proc/sys/kernel/pid_max").read_text()) - 300


class Stopwatch:
    """Wall and CPU (of this process and its waited-for children) over a block."""

    def __enter__(self):
        self._t = time.perf_counter()
        self._c = _cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._t
        self.cpu = _cpu() - self._c
        return False


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def sh(cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=check, **kw)


_HEADER_MARK = "| bench | what it measures | goal |"
_RESULTS_HEADER = """# Benchmark results

Figures from `bench/` (commands: `bench/README.md`), appended by each run with the date,
the machine (`uname -n`, CPU count) and the 1-minute load average next to every figure:
the reference machine has 2 cores shared with other work, so each figure is the median of
several runs with its spread (min-max). Goals are issue 6's (and issue 4's for the monitor).

| bench | what it measures | goal |
|---|---|---|
| `telemetry_scale.py` | `gateway.telemetry` at 7 days x 1,000 slices x 60 s (~10.08 M rows): one cycle's write (the monitor's COPY of 1,000 rows), one hourly prune (oldest hour, ~60,000 rows) at 2.5 M, 5 M and 10 M rows, the latest row per slice, one slice's last 24 hours; server-side (EXPLAIN ANALYZE BUFFERS) and client-side, plans included | each < 50 ms; the prune's cost independent of the table's size |
| `noop_deploy.py` | `sliceops deploy` with nothing to change, for 3 / 50 / 200 slices; processes spawned on the target (PID counter delta minus an idle baseline); pyinfra operations | no-op of 200 <= 1.5 x no-op of 3; process count flat in N |
| `floor_converge.py` + `floor.sh` | from-scratch converge of 50 slices by `sliceops deploy` vs the same work done by the plainest commands (one psql session, one `docker run` per container) | deploy <= 1.5 x floor |
| `monitor_cycle.py` (monitor author's) + `monitor_memory.py` | monitor cycle wall / CPU for 50 and 500 containers vs `docker stats --no-stream`; peak RSS (VmHWM) of `sliceops-monitor` with 500 slices | 500 containers: < 1 s wall, < 0.3 s CPU per cycle; < 60 MB RSS |
"""


@dataclass
class TimedDeploy:
    """A `sliceops deploy` run with its output time-stamped line by line: wall, controller CPU
    and the seconds each pyinfra operation took (from its "Starting operation" line to the next)."""

    returncode: int
    output: str
    wall: float
    cpu: float
    steps: list[tuple[str, float]]

    @property
    def totals(self) -> dict:
        from tests.fix_deploy import DeployResult

        return DeployResult(self.returncode, self.output).totals

    @property
    def changed_ops(self) -> list[str]:
        from tests.fix_deploy import DeployResult

        return DeployResult(self.returncode, self.output).changed_ops


def deploy_timed(inventory, timeout: float = 3600, pyinfra_args: tuple[str, ...] = ()) -> TimedDeploy:
    """`sliceops deploy --inventory <inventory> [-- <pyinfra_args>]` (as tests/fix_deploy.py runs
    it), unbuffered so each line's arrival time is when pyinfra printed it."""
    from tests.fix_deploy import SLICEOPS

    env = dict(os.environ, SLICEOPS_INVENTORY=str(inventory), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    marks: list[tuple[str, float]] = []
    lines: list[str] = []
    with Stopwatch() as sw:
        extra = ["--", *pyinfra_args] if pyinfra_args else []
        proc = subprocess.Popen(SLICEOPS + ["deploy", "--inventory", str(inventory), *extra], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        t0 = time.perf_counter()
        for line in proc.stdout:
            lines.append(line)
            now = time.perf_counter() - t0
            text = line.strip()
            if text.startswith("--> Starting operation: "):
                marks.append((text[len("--> Starting operation: "):], now))
            elif text.startswith(("--> Preparing operation files", "--> Beginning operation run",
                                  "--> Disconnecting", "--> Connecting", "--> Loading config")):
                marks.append((f"[{text[4:].rstrip('.')}]", now))
        proc.wait(timeout=timeout)
    marks.append(("[exit]", sw.wall))
    steps = [(name, marks[i + 1][1] - t) for i, (name, t) in enumerate(marks[:-1])]
    return TimedDeploy(proc.returncode, "".join(lines), sw.wall, sw.cpu, steps)


def deploy_ok(inventory) -> TimedDeploy:
    """deploy_timed, stopping the bench with the output's tail if the deploy failed."""
    result = deploy_timed(inventory)
    if result.returncode != 0:
        raise SystemExit(f"deploy of {inventory} failed ({result.returncode}):\n{result.output[-4000:]}")
    return result


def slowest(steps: list[tuple[str, float]], top: int = 8) -> str:
    return "; ".join(f"{name} {secs:.2f}s" for name, secs in sorted(steps, key=lambda s: -s[1])[:top])
