"""Moving a slice to another slice host: an edit of its `host` (issue 14).

Run on the new host, before its containers are converged, one slice at a time:

1. stop the container on the old host (its data is then consistent);
2. stream the data directory, and the slice's password file, from the old host to the new
   one as tar through the controller: two SSH connections, the controller's memory a chunk
   at a time, nothing on its disk, and the slice hosts need no keys to each other;
3. write the slice's credentials file on the new host (its URL for that host, the same
   password: PostgreSQL's verifier does not change) and run its container there;
4. wait for `/health` (200 only once the slice reached its database);
5. only then set `gateway.slices.host`, then remove the old container and archive the old
   data directory on the old host (`<data>/.moved-<id>-<stamp>`: never deleted), and hand the
   slice's data part over from the old host's backup agent to the new host's (until then the
   old host's agent archives it: that is where its data is).

A data directory on the new host that is not empty is never written over: the move stops
there, naming it. On any failure before step 5 the new container is removed, the copy too
(moved aside instead, never deleted, once a container there may have written to it), the
old container starts again where it was, and the deploy ends non-zero naming the slice; its gateway row
still names the old host, so the next deploy tries again.
"""

from __future__ import annotations

import threading
import time

import click
from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation

from sliceops import moves, plan, psql
from sliceops.backup_config import config_text
from sliceops.facts.docker import DockerCgroupDriver, DockerImage
from sliceops.facts.tls import FileSha256
from sliceops.inventory import Inventory
from sliceops.names import TARGET_PYTHON
from sliceops.operations import service, system, tenants
from sliceops.operations.docker import DATA_GROUP, DATA_MODE, SLICE_UID, desired_spec, env_file, password_file, run_command
from sliceops.operations.postgres.state import fleet_rows
from sliceops.remote import Target, pipe
from sliceops.shell import command, quote

HEALTH_TIMEOUT = 180  # seconds a moved slice has to answer /health on its new host
# /health on the slice's published port, on the new host (python3 is there: the deploy's
# credentials program and the monitor need it).
HEALTH_PY = """\
import sys, urllib.request
try:
    with urllib.request.urlopen('http://127.0.0.1:%d/health' % int(sys.argv[1]), timeout=5) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except Exception:
    sys.exit(1)
"""


def moves_to(inv: Inventory, here: str, rows: dict[int, dict]) -> list[moves.Move]:
    """The moves whose destination is `here`, from the gateway's rows `rows` (fleet_rows)."""
    return [m for m in moves.pending(inv, rows) if m.destination == here]


@operation(is_idempotent=True)
def moved_here(inv: Inventory, here: str):
    """Every slice the inventory moves to this host: carried here, started, healthy, then
    registered here; its old copy archived on the old host."""
    rows = fleet_rows(inv) if inv.multi_host else {}
    todo = moves_to(inv, here, rows)
    if not todo:
        host.noop("no slice moves to this host")
        return
    for m in todo:
        plan.for_slice(m.slice_id, "moved", f"from {m.source} to {m.destination} (data and password through the "
                                            "controller; gateway row after /health; old copy archived)")
    yield FunctionCommand(_move_all, (inv, here, todo, rows), {})


def _move_all(state, host, inv: Inventory, here: str, todo: list, rows: dict[int, dict]) -> bool:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    ok = True
    for m in todo:
        try:
            carried = move(host, inv, m, stamp, rows)
            # As report.py relays our commands' lines: at pyinfra's default verbosity.
            click.echo(f"    {host.print_prefix}sliceops: moved slice {m.slice_id} from {m.source} to {m.destination} "
                       f"({carried} bytes of data); the old copy is {inv.moved_data_dir(m.slice_id, stamp)} on "
                       f"{m.source}", err=True)
        except Exception as exc:  # one line naming the slice; the others still move
            ok = False
            click.echo(f"    {host.print_prefix}sliceops: slice {m.slice_id} was not moved from {m.source} to "
                       f"{m.destination}: {exc}", err=True)
    return ok


def move(pyinfra_host, inv: Inventory, m: moves.Move, stamp: str, rows: dict[int, dict] | None = None) -> int:
    """Move one slice (see the module's docstring); the bytes of data carried. `rows`: the
    gateway's rows the deploy planned from (the backup agents' configurations follow them)."""
    s = inv.slice(m.slice_id)
    mine = inv.for_host(m.destination)
    name, data = inv.container_name(s.id), inv.slice_data_dir(s.id)
    password = password_file(inv, s)
    src = Target(inv, inv.host(m.source).target)
    dst = Target(inv, inv.host(m.destination).target)
    ran = copying = had_password = False
    try:
        # Never written over, and not even its owner or mode changed: whose data it is, only
        # the operator can tell.
        if dst.run(["sh", "-c", f"test ! -d {quote(data)} || find {quote(data)} -mindepth 1 -print -quit"]).strip():
            raise RuntimeError(f"{data} on {m.destination} is not empty: move it aside, then deploy again")
        dst.run(["install", "-d", "-m", "0755", "/etc/sliceops", inv.etc_dir])
        dst.run(["install", "-d", "-m", "0700", inv.secrets_dir])
        had_password = bool(dst.run(["sh", "-c", f"test ! -e {quote(password)} || echo present"]).strip())
        src.run(["docker", "stop", name])
        copying = True
        carried = pipe(src, carry_out(inv, s.id, data), dst, carry_in(inv, s.id, data))
        # The password: standard output to standard input, never an argument; root's alone.
        fresh = quote(password + ".new")
        pipe(src, ["cat", password], dst, ["sh", "-c", f"umask 077; cat >{fresh} && mv -f {fresh} {quote(password)}"])
        dst.run(["sh", "-c", tenants.credentials_command(mine, [s.login_role])])
        env_sha = dst.run(["sha256sum", env_file(mine, s)]).split()[0]
        spec = desired_spec(mine, s, pyinfra_host.get_fact(DockerImage, image=inv.slice_defaults.image),
                            env_sha, pyinfra_host.get_fact(DockerCgroupDriver),
                            pyinfra_host.get_fact(FileSha256, path=inv.pg_ca_file))
        ran = True  # from here a container may exist (created, even if it then failed to start)
        dst.run(["sh", "-c", f"{command('docker', 'rm', '-f', name)} >/dev/null 2>&1; {run_command(mine, s, spec)}"])
        _wait_healthy(dst, s.port)
        with Target(inv, inv.database_host.target) as db:
            db.run(psql.argv(inv.postgres.port, inv.gateway.database, variables={"id": s.id, "host": m.destination}),
                   stdin="UPDATE gateway.slices SET host = :'host' WHERE id = :'id'::int;\n")
    except BaseException as exc:  # Ctrl-C too: the old container must not stay stopped
        line = _undo(inv, m, src, dst, stamp, exc, ran=ran, copying=copying, had_password=had_password)
        if not isinstance(exc, Exception):
            raise  # undone; Ctrl-C still stops the deploy
        raise RuntimeError(line) from exc
    finally:
        dst.close()
    # Moved: the gateway names the new host. The old container goes; the old data is kept.
    try:
        src.run(["docker", "rm", "-f", name])
        src.run(["mv", data, inv.moved_data_dir(s.id, stamp)])
        src.run(["rm", "-f", password, env_file(inv, s)])
    except Exception as exc:  # the slice runs on its new host; only the tidying is left
        logger.warning(f"sliceops: slice {s.id} moved to {m.destination}, but on {m.source}: {exc} "
                       f"(remove its stopped container and archive {data} by hand)")
    finally:
        src.close()
    try:
        hand_over_backup(inv, m, rows or {})
    except Exception as exc:  # the slice runs on its new host; its next deploy writes both configurations
        logger.warning(f"sliceops: slice {s.id} moved to {m.destination}, but the backup agents' configurations on "
                       f"{m.destination} and {m.source} were not both rewritten ({exc}): the next deploy writes them")
    return carried


# The moves this deploy finished (slice id -> its new host), over the gateway's rows the deploy
# planned from: what the backup agents' configurations must say now. The moves to different
# hosts run side by side (pyinfra's hosts are greenlets; threading's lock is gevent's then), and
# two of them may rewrite one old host's configuration: each writes under the lock what every
# move finished so far makes it, so the last write is never an older view.
_moved: dict[int, str] = {}
_handing_over = threading.Lock()


def hand_over_backup(inv: Inventory, m: moves.Move, rows: dict[int, dict]) -> None:
    """The slice's data part passes from its old host's backup agent to its new host's, once its
    gateway row names the new host: both hosts' configurations written as the next deploy
    would write them (before this the old host's agent archives the data, which is there)."""
    with _handing_over:
        _moved[m.slice_id] = m.destination
        now = finished(rows)
        # The new host first: should the old host then not answer, its agent still names the
        # slice and its nightly run fails loudly on the archived directory, never silently skips it.
        for name in (m.destination, m.source):
            with Target(inv, inv.host(name).target) as there:
                there.run(["sh", "-c", system.config_file_command(inv.backup_config, "root", "root", "600")],
                          stdin=config_text(inv, name, now))


def finished(rows: dict[int, dict] | None) -> dict[int, dict]:
    """The gateway's rows `rows` (as the deploy read them) as the moves this deploy finished so
    far left them."""
    now = {sid: dict(row) for sid, row in (rows or {}).items()}
    for sid, name in _moved.items():
        now.setdefault(sid, {})["host"] = name
    return now


@operation(is_idempotent=True)
def monitor_follows(inv: Inventory, here: str, rows: dict[int, dict] | None, render, dest: str, group: str,
                    service_name: str):
    """After this deploy's moves: the monitor's configuration `dest` on `here`, rendered by
    `render(rows)` from the rows the deploy read, is written again from the rows its finished
    moves left (and the monitor reloaded) when a move from or to this host finished, so the
    backup metric of a moved slice's data part goes with the data to the new host at once, as
    the agents' configurations do (hand_over_backup). Nothing when no move involves this host."""
    mine = [m.slice_id for m in moves.pending(inv, rows) if here in (m.source, m.destination)]
    if not mine:
        host.noop("no move from or to this host")
        return
    reload = service._ctl(service_name, "reload", service.init_system())
    yield FunctionCommand(_monitor_after_moves, (inv, here, rows, mine, render, dest, group, reload), {})


def _monitor_after_moves(state, host, inv: Inventory, here: str, rows, mine: list[int], render, dest: str,
                         group: str, reload: str) -> bool:
    with _handing_over:
        if not any(sid in _moved for sid in mine):
            return True  # every move failed (or none ran): the configuration written already holds
        now = finished(rows)
    content = render(now)
    if content == render(rows):
        return True
    try:
        with Target(inv, inv.host(here).target) as there:
            there.run(["sh", "-c", system.config_file_command(dest, "root", group, "640")], stdin=content)
            there.run(["sh", "-c", reload])
    except Exception as exc:  # the slice runs on its new host; the next deploy writes the configuration
        logger.warning(f"sliceops: the monitor's configuration on {here} does not follow this deploy's moves yet "
                       f"({exc}): the next deploy writes it")
    return True


# Seconds either side of the carry waits for the slice's backup lock (what a backup of the
# slice holds on that host), as the destroy and a restore wait.
LOCK_WAIT = 600


def carry_out(inv: Inventory, slice_id: int, data: str) -> list[str]:
    """The old host's side of the carry: the data directory as tar, under the slice's backup
    lock there, so no archive of it runs while it is read."""
    return ["flock", "-w", str(LOCK_WAIT), inv.backup_lock(slice_id),
            "tar", "-C", data, "--numeric-owner", "-cf", "-", "."]


def carry_in(inv: Inventory, slice_id: int, data: str) -> list[str]:
    """The new host's side: the directory made and filled under the slice's backup lock there.
    The new host's backup agent lists the slice once the move has succeeded (and a manual
    backup names the host its data is on), so it never finds an empty or half-written copy it
    would keep as a verified backup."""
    make = command("install", "-d", "-o", SLICE_UID, "-g", DATA_GROUP, "-m", DATA_MODE, data)
    fill = command("tar", "-C", data, "--numeric-owner", "-xpf", "-")
    return ["flock", "-w", str(LOCK_WAIT), inv.backup_lock(slice_id), "sh", "-c", f"{make} && {fill}"]


def _undo(inv: Inventory, m: moves.Move, src: Target, dst: Target, stamp: str, exc: BaseException, *,
          ran: bool, copying: bool, had_password: bool) -> str:
    """Take back what the move made on the new host, start the old container again; the line
    that says what happened. What a container on the new host may have written (it ran, if
    only for seconds) is moved aside there, never deleted; a copy no container touched is
    the stopped old data's twin and goes."""
    s = inv.slice(m.slice_id)
    mine = inv.for_host(m.destination)
    name, data = inv.container_name(s.id), inv.slice_data_dir(s.id)
    undo = []
    if ran:
        undo.append(["docker", "rm", "-f", name])
        undo.append(["mv", "-T", data, inv.failed_move_data_dir(s.id, stamp)])
    elif copying:
        undo.append(["find", data, "-mindepth", "1", "-delete"])
    if copying:
        secrets = [env_file(mine, s)] + ([] if had_password else [password_file(inv, s)])
        undo.append(["rm", "-f", *secrets])
    for argv in undo:
        try:
            dst.run(argv)
        except Exception:  # the old host's container matters more: go on to it
            pass
    why = str(exc) or type(exc).__name__
    kept = f" (what it wrote on {m.destination} is kept in {inv.failed_move_data_dir(s.id, stamp)})" if ran else ""
    try:
        src.run(["docker", "start", name])
    except Exception as start_exc:
        return (f"{why}{kept}; its container {name} on {m.source} did not start again ({start_exc}): "
                f"start it by hand")
    finally:
        src.close()
    return f"{why}{kept}; it runs on {m.source} again"


def _wait_healthy(dst: Target, port: int) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while True:
        try:
            dst.run([*TARGET_PYTHON, "-c", HEALTH_PY, str(port)])
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"/health on port {port} did not answer 200 within {HEALTH_TIMEOUT} s") from None
            time.sleep(2)
