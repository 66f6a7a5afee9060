"""`sliceops`: validate the inventory, then converge (pyinfra) or verify (testinfra) its target.

A user's mistake ends in one line per problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sliceops import backups, spares
from sliceops.errors import SliceopsError
from sliceops.inventory import DEFAULT_INVENTORY, Inventory, load
from sliceops.paths import ROOT
from sliceops.target import testinfra_host_spec

LOCK_DIR = Path(os.environ.get("SLICEOPS_LOCK_DIR", "/run/lock" if os.access("/run/lock", os.W_OK) else "/tmp"))


def _lock(inv: Inventory, wait: float):
    """Hold a lock per target and instance while a deploy runs; the kernel drops it if we die."""
    key = hashlib.sha256(f"{inv.target}|{inv.instance}".encode()).hexdigest()[:16]
    handle = open(LOCK_DIR / f"sliceops-{key}.lock", "a+")
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            if time.monotonic() >= deadline:
                raise SliceopsError(
                    f"another deploy (pid {holder}) of {inv.target} instance {inv.instance} is running; "
                    f"gave up after {wait:.0f}s"
                ) from None
            if not told:
                print(f"sliceops: waiting for another deploy (pid {holder}) of {inv.target} instance {inv.instance}",
                      file=sys.stderr)
                told = True
            time.sleep(0.5)


def _env(inv: Inventory) -> dict:
    env = dict(os.environ, SLICEOPS_INVENTORY=os.path.abspath(inv.path))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _warn(message: str | None) -> None:
    """A warning: one line on stderr; the command's exit status is unchanged."""
    if message:
        print(f"sliceops: warning: {message}", file=sys.stderr)


def cmd_check(inv: Inventory, args) -> int:
    if inv.multi_host:
        placed = ", ".join(f"{h.name}{' (database)' if h.database else ''}: {len(inv.slices_on(h.name))}"
                           for h in inv.hosts)
        print(f"{inv.path}: ok: {len(inv.hosts)} hosts, instance {inv.instance}, {len(inv.slices)} slices ({placed})")
    else:
        print(f"{inv.path}: ok: target {inv.target}, instance {inv.instance}, {len(inv.slices)} slices")
    _warn(spares.check_warning(inv))
    return 0


def _check_host_key(inv: Inventory) -> None:
    """Stop before anything connects with root's key unless every host's key is the recorded
    one. In a fleet, a slice host that does not answer is only named: pyinfra goes on with
    the others (and refuses that host's key itself should it answer after all)."""
    ssh_hosts = [h for h in inv.hosts if h.target.startswith("ssh://")]
    if not ssh_hosts:
        return
    from sliceops import hostkeys

    for h in ssh_hosts:
        try:
            hostkeys.check(h.target, inv.ssh_known_hosts)
        except hostkeys.HostUnreachable as exc:
            if not inv.multi_host or h.database:
                raise
            _warn(f"host {h.name}: {exc}; the deploy goes on with the other hosts")


def _pyinfra(inv: Inventory, args) -> int:
    pyinfra = [sys.executable, "-m", "pyinfra", "-y", str(ROOT / "inventory" / "hosts.py"), str(ROOT / "deploy.py")]
    return subprocess.call(pyinfra + args.extra, env=_env(inv), cwd=ROOT)


def cmd_deploy(inv: Inventory, args) -> int:
    _check_host_key(inv)
    with _lock(inv, args.wait):
        return _pyinfra(inv, args)


def cmd_backup(inv: Inventory, args) -> int:
    """backup / backups / restore: the backup agent on the target (sliceops.backups)."""
    request = backups.parse(args.command, args.rest)
    _check_host_key(inv)
    if args.command != "restore":
        return backups.run(args.command, inv, request)
    # No deploy runs between the restore and the deploy that re-grants and restarts the slice.
    with _lock(inv, args.wait):
        return backups.cmd_restore(inv, request, deploy=lambda: _pyinfra(inv, args))


def cmd_plan(inv: Inventory, args) -> int:
    """What `deploy` would change, one sentence per slice, without changing anything (exit 0:
    nothing, 3: something would change, 1: the dry run failed or the deploy would stop)."""
    from sliceops import plan  # imports pyinfra: only the commands that run it pay for that

    _check_host_key(inv)
    with tempfile.TemporaryDirectory(prefix="sliceops-plan-") as tmp:
        out = Path(tmp) / "plan.json"
        dryrun = [sys.executable, "-m", "sliceops.dryrun", str(out),
                  str(ROOT / "inventory" / "hosts.py"), str(ROOT / "deploy.py")]
        # Under the deploy's lock: a plan never reads a host half-way through a deploy.
        with _lock(inv, args.wait):
            proc = subprocess.run(dryrun, env=_env(inv), cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
            print("\n".join(tail), file=sys.stderr)
            print(f"sliceops: plan: the dry run of {inv.target} failed (status {proc.returncode})", file=sys.stderr)
            return plan.FAILED
        changes = plan.load(out.read_text())
    for line in plan.lines(changes):
        print(line)
    for c in changes:
        if c.refused:
            print(f"sliceops: the deploy would stop: {c.detail}", file=sys.stderr)
    for message in plan.warnings(changes):
        _warn(message)
    print(plan.summary(changes))
    return plan.exit_status(changes)


def cmd_verify(inv: Inventory, args) -> int:
    _check_host_key(inv)
    # One testinfra host per inventory host; each check runs where what it asks about lives.
    specs = [testinfra_host_spec(inv, h) for h in inv.hosts]
    hosts = ",".join(spec for spec, _ in specs)
    pytest = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "infra"), f"--hosts={hosts}", "-p", "no:cacheprovider"]
    identity = next((kwargs["ssh_identity_file"] for _, kwargs in specs if kwargs.get("ssh_identity_file")), None)
    if identity:
        pytest.append(f"--ssh-identity-file={identity}")
    return subprocess.call(pytest + args.extra, env=_env(inv), cwd=ROOT)


def _reader(command: str):
    """The module of a command that only reads the target; it parses its own options."""
    if command == "status":
        from sliceops.status import command as module
    elif command == "report":
        from sliceops.reporting import command as module
    else:
        from sliceops import logs as module
    return module


def cmd_status(inv: Inventory, args) -> int:
    return _reader("status").run(inv, args.rest)


def cmd_logs(inv: Inventory, args) -> int:
    return _reader("logs").run(inv, args.rest)


def cmd_report(inv: Inventory, args) -> int:
    return _reader("report").run(inv, args.rest)


READERS = {"status": cmd_status, "logs": cmd_logs, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sliceops", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "plan", "deploy", "verify", "add", *READERS, *backups.COMMANDS])
    parser.add_argument("-i", "--inventory", default=str(DEFAULT_INVENTORY), help="the YAML inventory")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for a concurrent deploy")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` goes to pyinfra / pytest untouched, wherever the options stood.
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser.epilog = "Arguments after -- are passed to pyinfra (deploy) or pytest (verify)."
    reader = next((word for word in argv if word in READERS), None)
    if reader and {"-h", "--help"} & set(argv):
        _reader(reader).parser().print_help()  # `sliceops status -h`: its own options
        return 0
    if "add" in argv and {"-h", "--help"} & set(argv):
        from sliceops import add

        add.parser().print_help()
        return 0
    own = next((word for word in argv if word in backups.COMMANDS), None)
    if own and {"-h", "--help"} & set(argv):
        backups.parser(own).print_help()
        return 0
    args, args.rest = parser.parse_known_args(argv)
    if args.rest and args.command not in READERS and args.command not in backups.COMMANDS and args.command != "add":
        parser.error(f"unrecognized arguments: {' '.join(args.rest)}")
    args.extra = extra
    try:
        if args.command == "add":  # edits the file: it loads it itself, before and after
            from sliceops import add

            return add.run(args.inventory, args.rest)
        inv = load(args.inventory)
        commands = {"check": cmd_check, "plan": cmd_plan, "deploy": cmd_deploy, "verify": cmd_verify, **READERS}
        return commands.get(args.command, cmd_backup)(inv, args)
    except SliceopsError as exc:
        print(f"sliceops: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
