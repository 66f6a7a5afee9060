"""Count exactly the processes a command tree creates, from `strace -f -e trace=process`.

On a shared machine the kernel's PID counter also moves with everyone else's work; a
ptrace'd run counts only the traced tree (its timing is not used: tracing slows it).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_RET = re.compile(r"\)\s+=\s+(-?\d+)")


@dataclass
class Trace:
    """Tasks the traced tree created: processes (fork/vfork/clone without CLONE_THREAD), threads,
    and every execve with its argv, by pid."""

    root: int
    parent: dict[int, int] = field(default_factory=dict)
    threads: set[int] = field(default_factory=set)
    execs: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def processes(self) -> set[int]:
        return {p for p in self.parent if p not in self.threads}

    def descendants(self, pid: int) -> set[int]:
        children = defaultdict(list)
        for child, par in self.parent.items():
            children[par].append(child)
        out, todo = set(), [pid]
        while todo:
            for c in children[todo.pop()]:
                if c not in out:
                    out.add(c)
                    todo.append(c)
        return out

    def find_exec(self, pattern: str) -> int | None:
        """The first process whose execve argv matches `pattern` (in pid order)."""
        for pid in sorted(self.execs):
            if any(re.search(pattern, a) for a in self.execs[pid]):
                return pid
        return None


def parse(path: Path) -> Trace:
    pending: dict[int, str] = {}
    lines = path.read_text(errors="replace").splitlines()
    trace: Trace | None = None
    for raw in lines:
        m = _LINE.match(raw)
        if not m:
            continue
        pid, rest = int(m[1]), m[2]
        if trace is None:
            trace = Trace(root=pid)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")]
            continue
        r = _RESUMED.match(rest)
        if r:
            rest = pending.pop(pid, r[1] + "(") + r[2]
        c = _CALL.match(rest)
        if not c:
            continue
        name, args = c[1], c[2]
        ret = _RET.search(rest)
        if name in ("clone", "clone3", "fork", "vfork") and ret and int(ret[1]) > 0:
            child = int(ret[1])
            trace.parent[child] = pid
            if "CLONE_THREAD" in args:
                trace.threads.add(child)
        elif name == "execve" and ret and int(ret[1]) == 0:
            am = re.search(r"\[(.*?)\](?:, 0x|, \[|\s*/\*)", args)
            trace.execs[pid].append(am[1] if am else args[:200])
    assert trace is not None, f"empty trace {path}"
    return trace


def traced(cmd: list[str], out: Path, env: dict | None = None, cwd=None, timeout: float = 3600
           ) -> subprocess.CompletedProcess:
    """Run cmd under strace, following forks; the trace goes to `out`."""
    strace = ["strace", "-f", "-qq", "-s", "160", "-e", "trace=process", "-e", "signal=none", "-o", str(out)]
    return subprocess.run(strace + cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def argv_list(argv: str) -> list[str]:
    """strace's rendering of an argv (`"/bin/sh", "-c", "..."`) back to strings."""
    return [a.encode().decode("unicode_escape", errors="replace") for a in _ARG.findall(argv)]


def command_label(argv: str) -> str:
    """A short name for what a pyinfra command ran: `/bin/sh -c "sh -c '<script>'"` -> its start."""
    args = argv_list(argv)
    text = args[2] if len(args) >= 3 and args[1] == "-c" else " ".join(args)
    text = re.sub(r"^sh -c '", "", text)
    return re.sub(r"\s+", " ", text)[:60]


def _pyinfra_pid(trace: Trace) -> int:
    """The controller: the process that exec'd `python -m pyinfra` (the sliceops CLI's child)."""
    for pid in sorted(trace.execs):
        for argv in trace.execs[pid]:
            args = argv_list(argv)
            if "-m" in args and "pyinfra" in args:
                return pid
    return trace.root


def summarise_pyinfra(trace: Trace) -> dict:
    """Processes on the target side: everything under the pyinfra controller's child shells."""
    controller = _pyinfra_pid(trace) or trace.root
    under = trace.descendants(controller)
    direct = sorted(p for p in under if trace.parent[p] == controller and p not in trace.threads)
    target = {p for p in under if p not in trace.threads}
    labels = Counter()
    for p in direct:
        argv = trace.execs.get(p, ["?"])[0]
        labels[command_label(argv)] += 1
    return {
        "all_processes": len(trace.processes),
        "all_threads": len(trace.threads),
        "target_processes": len(target),
        "target_commands": len(direct),
        "execs": sum(len(v) for p, v in trace.execs.items() if p in target),
        "commands": labels,
    }
