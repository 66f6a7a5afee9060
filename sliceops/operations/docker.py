"""Slice image, network and containers: each operation reads its fact once and emits one
command for everything that differs, or a noop sentence.

Containers converge by spec: the desired `docker run` of a slice is a pure function of the
inventory, the image id and the checksum of the slice's credentials file; its sha256 is the
container's `sliceops.spec` label. A container is recreated exactly when that hash changes,
so a deploy that changes nothing leaves every start time alone. pyinfra's `docker.container`
cannot do this (it never detects changes, or with force always recreates).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api import StringCommand, operation

from sliceops import factcache, plan, progress
from sliceops.errors import InventoryError, RemoteStateError
from sliceops.facts.docker import DockerCgroupDriver, DockerImage, DockerNetwork, ImageLabels, SliceContainers
from sliceops.inventory import ACTIVE, MONITOR_USER, SUSPENDED, Inventory, Slice
from sliceops.facts.host import TcpListeners
from sliceops.facts.tls import FileSha256
from sliceops.names import CONTAINER_PG_CA, bridge_name
from sliceops.operations import sentences
from sliceops.operations.util import as_script, chunked, refuses
from sliceops.paths import ROOT
from sliceops.shell import command, echo, quote, words

REFERENCE_IMAGE = "sliceops/slice-backend:1"
REFERENCE_SOURCE = ROOT / "images" / "slice-backend"
RECIPE_LABEL = "org.sliceops.recipe-sha256"
# The reference image's user; a slice's /data directory belongs to it.
SLICE_UID = 10001
# The monitor measures each /data (du) as this group: setgid keeps new files in it.
DATA_GROUP = MONITOR_USER
DATA_MODE = "2750"
# Bump when the meaning of a spec changes without its fields changing, to recreate all.
SPEC_VERSION = 1
_STOPPED = ("exited", "created")  # states `docker start` brings back
_ICC = "com.docker.network.bridge.enable_icc"
_BRIDGE = "com.docker.network.bridge.name"


def _once() -> bool:
    """True in exactly one of the two passes pyinfra makes over an operation (the change
    check, then the execution), so a warning is printed once per deploy."""
    return state.is_executing != state.should_check_for_changes()


# --------------------------------------------------------------------------- image


def recipe_digest(folder: Path = REFERENCE_SOURCE) -> str:
    """sha256 over what the reference image is built from (names and contents, in order);
    the README is not built in, so editing it rebuilds nothing."""
    h = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file() and p.suffix != ".md" and "__pycache__" not in p.parts)
    for path in sorted(files):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_command(images_dir: str, image: str, digest: str) -> str:
    """Base image first (pulled, or built offline once), then the reference backend on it."""
    d = quote(images_dir)
    return "\n".join([
        "set -e",
        f"base=$(bash {d}/base/build.sh)",
        # build.sh's last stdout line names the base image.
        'base=$(printf "%s\\n" "$base" | tail -n1)',
        # The classic builder: BuildKit needs the buildx plugin, which Debian's docker.io lacks.
        f'DOCKER_BUILDKIT=0 docker build --quiet --build-arg BASE_IMAGE="$base" '
        f"--label {quote(f'{RECIPE_LABEL}={digest}')} --tag {quote(image)} {d}/slice-backend >/dev/null",
        f'echo "sliceops: built "{quote(image)}" on $base"',
    ])


@operation(is_idempotent=True)
@refuses
def image_built(inv: Inventory, images_dir: str):
    """The slice image is present: the reference one is built on the host (from `images_dir`,
    the project's images/ folder shipped to the target) when missing or out of date; any other
    image must already be there."""
    image = inv.slice_defaults.image
    labels = host.get_fact(ImageLabels, image=image)
    if image != REFERENCE_IMAGE:
        if labels is None:
            line = inv.lines.get(("slice_defaults", "image"), 1)
            raise InventoryError([
                f"{inv.path}:{line}: slice_defaults.image: {image!r} is not in the Docker engine on "
                f"the target (load or pull it there first; only {REFERENCE_IMAGE} is built by the deploy)"
            ])
        host.noop(f"slice image {image} is present")
        return
    digest = recipe_digest()
    if labels is not None and labels.get(RECIPE_LABEL) == digest:
        host.noop(f"slice image {image} is built from the current images/slice-backend")
        return
    plan.record("slice image", "rebuilt" if labels is not None else "built", f"{image} from images/slice-backend")
    yield StringCommand(build_command(images_dir, image, digest))


# --------------------------------------------------------------------------- network


def network_create_command(inv: Inventory) -> str:
    return command(
        "docker", "network", "create", "--driver", "bridge", "--subnet", inv.docker.subnet,
        "--gateway", inv.docker.gateway_address, "-o", f"{_ICC}=false", "-o", f"{_BRIDGE}={bridge_name(inv.instance)}",
        "--label", f"sliceops.instance={inv.instance}", inv.network,
    ) + " >/dev/null"


def network_plan(inv: Inventory, have: dict | None) -> list[str]:
    """Commands that bring the slice network to the inventory's settings ([] if it is)."""
    if have is None:
        return [network_create_command(inv)]
    wrong = [
        f"{what} is {now} (wanted {want})"
        for what, now, want in (
            ("driver", have["driver"], "bridge"),
            ("subnet", have["subnet"], inv.docker.subnet),
            ("gateway", have["gateway"], inv.docker.gateway_address),
            ("inter-container traffic", "on" if have["icc"] else "off", "off"),
            ("bridge interface", have["bridge"], bridge_name(inv.instance)),
        )
        if now != want
    ]
    if not wrong:
        return []
    if have["attached"]:
        raise RemoteStateError(
            f"network {inv.network} must be recreated ({'; '.join(wrong)}) but containers are attached "
            f"to it: {', '.join(have['attached'])}; remove them (or change docker.subnet back) and deploy again"
        )
    return [f"{command('docker', 'network', 'rm', inv.network)} >/dev/null", network_create_command(inv)]


def bridge_listen(inv: Inventory) -> str:
    """PostgreSQL's "address:port" on the slice bridge, as TcpListeners reports it."""
    return f"{inv.docker.gateway_address}:{int(inv.postgres.port)}"


def postgres_bind_command(inv: Inventory) -> str:
    """On the database host, once the slice bridge exists: restart PostgreSQL unless it listens
    on the bridge's address. It names that address (tuning.listen_addresses) before the bridge
    exists; net.ipv4.ip_nonlocal_bind lets it bind anyway, but where that cannot be set (a
    container's read-only /proc/sys) it started without it and only a restart binds it now."""
    return (f"{{ {{ {TcpListeners.command}; }} | grep -qxF -e {quote(bridge_listen(inv))} || "
            f"{command('pg_ctlcluster', str(inv.postgres.version), inv.cluster, 'restart')}; }}")


def postgres_unbound(inv: Inventory, listeners: list[str]) -> bool:
    """PostgreSQL listens on its port (`listeners`: TcpListeners) but not on the bridge's address."""
    port = str(int(inv.postgres.port))
    running = any(address.rpartition(":")[2] == port for address in listeners)
    return running and bridge_listen(inv) not in listeners


@operation(is_idempotent=True)
@refuses
def network(inv: Inventory, database_here: bool = False):
    """The instance's bridge network, on which slices cannot reach each other; on the database
    host, PostgreSQL then listening on its address (postgres_bind_command)."""
    commands = network_plan(inv, host.get_fact(DockerNetwork, network=inv.network))
    # A new bridge: PostgreSQL checked once it exists. An existing one: restarted only if it
    # runs (listens on its port somewhere) but not there (it started while the bridge was
    # missing); one that is not running binds it when the deploy starts it.
    unbound = database_here and not commands and postgres_unbound(inv, host.get_fact(TcpListeners))
    if not commands and not unbound:
        host.noop(f"network {inv.network} exists ({inv.docker.subnet}, inter-container traffic off)")
        return
    if commands:
        plan.record(f"network {inv.network}", "recreated" if len(commands) > 1 else "created", inv.docker.subnet)
    else:
        plan.record(f"postgres {inv.postgres.version}/{inv.cluster}", "restarted",
                    f"to listen on the slice bridge's address {inv.docker.gateway_address}")
    yield StringCommand(" && ".join(commands + ([postgres_bind_command(inv)] if database_here else [])))


# --------------------------------------------------------------------------- containers


def env_file(inv: Inventory, s: Slice) -> str:
    """The slice's root-only credentials file (DATABASE_URL), written by the roles step."""
    return f"{inv.secrets_dir}/{s.login_role}.env"


def password_file(inv: Inventory, s: Slice) -> str:
    """The slice's root-only password file, made where the slice runs (the roles step)."""
    return f"{inv.secrets_dir}/{s.login_role}.password"


def cgroup_parent(inv: Inventory, s: Slice, driver: str) -> str:
    """The container's --cgroup-parent: the slice's own cgroup, where the monitor reads its
    state and counters without any Docker API (same path under both drivers)."""
    return inv.slice_cgroup_unit(s.id) if driver == "systemd" else f"/{inv.slice_cgroup(s.id)}"


def desired_spec(inv: Inventory, s: Slice, image_id: str, env_sha: str | None, cgroup_driver: str = "cgroupfs",
                 ca_sha: str | None = None) -> dict:
    """Everything the slice's container is run with, as plain data: its hash is the spec label.
    `ca_sha` is the checksum of the host's copy of PostgreSQL's CA: a new CA recreates."""
    spec = {
        "version": SPEC_VERSION,
        "name": inv.container_name(s.id),
        "image": image_id,
        # The CA that signed PostgreSQL's certificate, for sslmode=verify-full: libpq reads
        # PGSSLROOTCERT, Node adds NODE_EXTRA_CA_CERTS to its trust store.
        "env": {"SLICE_ID": str(s.id), "PORT": str(s.port), "PGSSLROOTCERT": CONTAINER_PG_CA,
                "NODE_EXTRA_CA_CERTS": CONTAINER_PG_CA},
        "env_file": env_file(inv, s),
        "env_file_sha256": env_sha,
        "ca_file_sha256": ca_sha,
        "publish": f"127.0.0.1:{s.port}:{s.port}",
        "network": inv.network,
        "user": f"{SLICE_UID}:{SLICE_UID}",
        "read_only": True,
        "tmpfs": ["/tmp"],
        "volumes": [f"{inv.slice_data_dir(s.id)}:/data", f"{inv.pg_ca_file}:{CONTAINER_PG_CA}:ro"],
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "memory": s.memory,
        "cpus": s.cpus,
        "pids_limit": s.pids,
        "cgroup_parent": cgroup_parent(inv, s, cgroup_driver),
        "log_driver": "json-file",
        "log_opts": {"max-size": "10m", "max-file": "3"},
        "restart": "unless-stopped",
        "health_interval": inv.slice_defaults.health_interval,
    }
    if inv.quota_enabled:
        # /data is a subvolume of the quota volume (the size itself is not the container's:
        # changing a quota recreates nothing). A container made before the volume is
        # recreated on it.
        spec["data_on"] = "slice-volume"
    return spec


def spec_hash(spec: dict) -> str:
    """sha256 of the spec's canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


SPEC_FIELDS_LABEL = "sliceops.spec.fields"


def spec_label(spec: dict) -> str:
    """The spec as a container label: canonical JSON, the credentials file's checksum cut to
    12 characters (enough to see it changed; the full one stays in the spec's hash)."""
    shown = dict(spec, env_file_sha256=(spec.get("env_file_sha256") or "")[:12] or None)
    if "ca_file_sha256" in spec:
        shown["ca_file_sha256"] = (spec["ca_file_sha256"] or "")[:12] or None
    return json.dumps(shown, sort_keys=True, separators=(",", ":"))


def run_command(inv: Inventory, s: Slice, spec: dict) -> str:
    """The `docker run` of a spec; every option comes from the spec, so the hash covers them all."""
    args = [
        "docker", "run", "-d", "--name", spec["name"],
        "--label", f"sliceops.instance={inv.instance}",
        "--label", f"sliceops.slice={s.id}",
        "--label", f"sliceops.spec={spec_hash(spec)}",
        # The spec itself, so `sliceops plan` can say what a recreate changes (memory 256m -> 512m).
        "--label", f"{SPEC_FIELDS_LABEL}={spec_label(spec)}",
    ]
    for key, value in spec["env"].items():
        args += ["--env", f"{key}={value}"]
    # The password stays in the root-only file: docker reads it, the command line names it.
    args += ["--env-file", spec["env_file"], "--publish", spec["publish"], "--network", spec["network"]]
    args += ["--user", spec["user"]]
    if spec["read_only"]:
        args.append("--read-only")
    for path in spec["tmpfs"]:
        args += ["--tmpfs", path]
    for volume in spec["volumes"]:
        args += ["--volume", volume]
    for opt in spec["security_opt"]:
        args += ["--security-opt", opt]
    for cap in spec["cap_drop"]:
        args += ["--cap-drop", cap]
    args += ["--memory", spec["memory"], "--cpus", f"{spec['cpus']:g}", "--pids-limit", str(spec["pids_limit"])]
    args += ["--cgroup-parent", spec["cgroup_parent"]]
    args += ["--log-driver", spec["log_driver"]]
    for key, value in spec["log_opts"].items():
        args += ["--log-opt", f"{key}={value}"]
    # Docker's health check execs a process in the container each time: at fleet size that is
    # a standing cost, so its pace is the inventory's (0: off; the monitor checks /health).
    if spec["health_interval"]:
        args += ["--health-interval", f"{spec['health_interval']}s"]
    else:
        args.append("--no-healthcheck")
    args += ["--restart", spec["restart"], spec["image"]]
    return command(*args) + " >/dev/null"


@dataclass
class ContainerPlan:
    """What `containers` will do, by container name, and the shell steps that do it in order:
    (command, the line echoed when it succeeds, what to name when it fails)."""

    steps: list[tuple[str, str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        return [step for step, _, _ in self.steps]


def container_plan(inv: Inventory, have: dict | None, image_id: str, cgroup_driver: str = "cgroupfs",
                   ca_sha: str | None = None) -> ContainerPlan:
    """Compare every slice of the inventory with its container (the `SliceContainers` fact;
    None, no engine yet, counts as no containers) and list the steps that converge them:
    stop the suspended, remove what must be recreated, make the data directories, start the
    stopped, run the missing. Slices being destroyed are left to the destroy step."""
    have = have or {"containers": {}, "env_sha256": {}}
    containers = have["containers"]
    plan = ContainerPlan()
    runs: list[tuple[str, str, str]] = []
    for s in inv.slices:
        name = inv.container_name(s.id)
        cur = containers.get(name)
        if s.status == SUSPENDED:
            if cur and cur["state"] not in ("exited", "created", "dead"):
                plan.stopped.append(name)
            continue
        if s.status != ACTIVE:
            continue
        spec = desired_spec(inv, s, image_id, have["env_sha256"].get(f"{s.login_role}.env"), cgroup_driver, ca_sha)
        if cur is None:
            plan.created.append(name)
            runs.append((run_command(inv, s, spec), f"created {name}", f"run {name}"))
        elif cur["spec"] != spec_hash(spec) or cur["state"] == "dead":
            plan.recreated.append(name)
            runs.append((run_command(inv, s, spec), f"recreated {name} (spec changed)", f"run {name}"))
        elif cur["state"] in _STOPPED:
            plan.started.append(name)
    known = {inv.container_name(s.id) for s in inv.slices}
    plan.orphans = sorted(n for n in containers if n not in known)

    # Names and paths go in runs of CHUNK per command: no command line grows with the fleet.
    for part in chunked(plan.stopped):
        plan.steps.append((f"docker stop {words(part)} >/dev/null", f"stopped {' '.join(part)} (suspended)", "stop"))
    for part in chunked(plan.recreated):
        plan.steps.append((f"docker rm -f {words(part)} >/dev/null", "", "remove"))
    fresh = set(plan.created + plan.recreated + plan.started)
    dirs = [inv.slice_data_dir(s.id) for s in inv.slices if inv.container_name(s.id) in fresh]
    for part in chunked(dirs):
        plan.steps.append((command("install", "-d", "-o", SLICE_UID, "-g", DATA_GROUP, "-m", DATA_MODE, *part),
                           "", "data directories"))
    for part in chunked(plan.started):
        plan.steps.append((f"docker start {words(part)} >/dev/null", f"started {' '.join(part)}", "start"))
    plan.steps += runs
    return plan


# New containers (a few, the everyday add) start in the background: `docker run` takes
# ~0.4 s of the engine's own work (bench/add_floor.py), which the deploy's remaining steps
# (the monitor's) then overlap; its last step, `started`, waits for each and fails the deploy
# naming any that did not start. More than this many run in turn, with progress.
BACKGROUND_MOST = progress.SHOWN
# How long `started` waits for a container started in the background.
BACKGROUND_WAIT = 120
# host name -> (this deploy's launch token, the containers it started in the background)
_background: dict[str, tuple[str, list[str]]] = {}


def background_start(step: str, name: str, starts: str, token: str) -> str:
    """Shell starting `step` (a `docker run`) detached from the deploy (its own session, no
    descriptor of the deploy's held): its exit status lands in <starts>/<name>.<token>.rc,
    written whole, and its output in <starts>/<name>.<token>.log, for `wait_script`. What
    an earlier launch of that name left (a deploy killed before its wait) goes first."""
    base = quote(f"{starts}/{name}")
    rc, log = quote(f"{starts}/{name}.{token}.rc"), quote(f"{starts}/{name}.{token}.log")
    inner = f"{step}; echo $? >{rc}.new && mv -f {rc}.new {rc}"
    return (f"{command('mkdir', '-p', '-m', '0700', starts)} && rm -f {base}.*.rc {base}.*.log && "
            f"setsid -f sh -c {quote(inner)} >{log} 2>&1 </dev/null")


def wait_script(starts: str, names: list[str], token: str, seconds: int = BACKGROUND_WAIT) -> str:
    """Shell waiting (at most `seconds`) for the containers `background_start` started with
    `token`: a `sliceops: created <name>` line each, or an exit status of 1 and one line naming
    each that failed with the engine's last words (or that it is still starting). A start that
    failed while the container runs (an earlier, killed deploy's start of it won the name)
    counts as started."""
    d, todo, t = quote(starts), words(names), quote(token)
    return "\n".join([
        f"d={d}; t={t}; failed=''; i=0; limit=$(({int(seconds)} * 20))",
        f"while [ $i -lt $limit ]; do left=''; for n in {todo}; do [ -f \"$d/$n.$t.rc\" ] || left=1; done; "
        '[ -z "$left" ] && break; i=$((i + 1)); sleep 0.05; done',
        f"for n in {todo}; do",
        '  if [ ! -f "$d/$n.$t.rc" ]; then failed="$failed; $n: still starting after ' f"{int(seconds)}" ' s"',
        '  elif [ "$(cat "$d/$n.$t.rc")" = 0 ]; then echo "sliceops: created $n"',
        "  elif [ \"$(docker container inspect --format '{{.State.Running}}' \"$n\" 2>/dev/null)\" = true ]; then",
        '    echo "sliceops: created $n (by an earlier deploy\'s start)"',
        '  else failed="$failed; $n: $(tail -n 3 "$d/$n.$t.log" 2>/dev/null | tr \'\\n\' \' \')"; fi',
        '  rm -f "$d/$n.$t.rc" "$d/$n.$t.log"',
        "done",
        'if [ -n "$failed" ]; then echo "sliceops: slice containers did not start: ${failed#; }" >&2; exit 1; fi',
    ])


def plan_script(plan: ContainerPlan, starts: str | None = None, token: str = "") -> str:
    """One shell script for the whole plan: a failing step does not stop the others; the
    script echoes a `sliceops:` line per step done (the containers run: one line for them all
    when there are more than a few, naming a few) and exits non-zero naming what failed.
    `starts`: the folder of background starts; the created containers start there with
    `token` (see BACKGROUND_MOST) and `started` says them."""
    lines = ["failed=''"]
    runs = sum(1 for _, _, what in plan.steps if what.startswith("run "))
    quiet = runs > progress.SHOWN  # a fleet's worth: the progress lines say each, one line the outcome
    background = plan.created if starts else []
    ran = 0
    for step, done, what in plan.steps:
        name = what.removeprefix("run ")
        if what.startswith("run ") and name in background:
            step = background_start(step, name, starts, token)
            done = f"starting {name} in the background (the deploy's last step waits for it)"
        ok = echo(f"sliceops: {done}") if done and not (quiet and what.startswith("run ")) else "true"
        line = f"if {step}; then {ok}; else failed=\"$failed, \"{quote(what)}; fi"
        if what.startswith("run "):
            ran += 1
            line += f"; {progress.shell('containers', ran, runs, what.removeprefix('run '))}"
        lines.append(line)
    if quiet:
        said = [f"{kind} {progress.listed(names, 'slice containers')}"
                for kind, names in (("created", [] if background else plan.created), ("recreated", plan.recreated),
                                    ("starting in the background", background)) if names]
        # Said when every step succeeded; otherwise the failure line below names what did not.
        lines.append(f'if [ -z "$failed" ]; then {echo("sliceops: " + "; ".join(said))}; fi')
    lines.append(
        'if [ -n "$failed" ]; then echo "sliceops: slice container steps failed: ${failed#, }" >&2; exit 1; fi'
    )
    return "\n".join(lines)


def _ready_for_execution(inv: Inventory, have: dict | None, image_id: str | None, plan: ContainerPlan,
                         ca_sha: str | None = "") -> None:
    """What the change check may assume (a later step builds the image, starts the engine,
    writes the credentials) must hold by the time commands run."""
    if have is None:
        raise RemoteStateError("the Docker engine does not answer on the target ('docker info' fails)")
    if image_id is None:
        raise RemoteStateError(f"slice image {inv.slice_defaults.image} is not in the Docker engine on the target")
    missing = [
        env_file(inv, s)
        for s in inv.slices
        if inv.container_name(s.id) in plan.created + plan.recreated
        and f"{s.login_role}.env" not in have["env_sha256"]
    ]
    if missing:
        raise RemoteStateError(f"slice credentials missing (the roles step writes them): {', '.join(missing)}")
    if ca_sha is None and (plan.created or plan.recreated):
        # docker run would make a directory where the bind mount's file should be.
        raise RemoteStateError(f"PostgreSQL's CA certificate is missing at {inv.pg_ca_file} (the CA copy step writes it)")


@operation(is_idempotent=True)
@refuses
def containers(inv: Inventory):
    """One container per in-service slice, run with its current spec; suspended slices stopped;
    containers of slices no longer in the inventory reported and left alone."""
    _background.pop(host.name, None)  # a start an earlier deploy in this process left unwaited for
    image = inv.slice_defaults.image
    image_id = host.get_fact(DockerImage, image=image)
    have = factcache.get(SliceContainers, instance=inv.instance, secrets_dir=inv.secrets_dir)
    # Before execution the image may still be unbuilt; any placeholder differs from every label.
    if not state.is_executing and plan.planned("slice image"):
        image_id = None  # a dry run: the image the deploy would build is not there yet
    driver = factcache.get(DockerCgroupDriver)
    ca_sha = factcache.get(FileSha256, path=inv.pg_ca_file)
    todo = container_plan(inv, have, image_id or f"(unbuilt {image})", driver, ca_sha)
    if todo.orphans and _once():
        logger.warning(
            f"{host.print_prefix}orphan slice containers (their slices are not in {inv.path}), "
            f"left alone: {', '.join(todo.orphans)}"
        )
    seen = have or {"containers": {}, "env_sha256": {}}
    wanted = {  # what `sliceops plan` compares a recreated container's recorded spec with
        inv.container_name(s.id): json.loads(spec_label(desired_spec(
            inv, s, image_id or f"(unbuilt {image})", seen["env_sha256"].get(f"{s.login_role}.env"), driver, ca_sha)))
        for s in inv.slices if inv.container_name(s.id) in todo.recreated
    }
    sentences.containers(inv, seen, todo, wanted)
    if not todo.commands:
        running = sum(1 for s in inv.slices if s.in_service)
        suspended = sum(1 for s in inv.slices if s.status == SUSPENDED)
        host.noop(f"{running} slice containers run their current spec; {suspended} suspended stopped")
        return
    starts, token = None, ""
    if state.is_executing:
        _ready_for_execution(inv, have, image_id, todo, ca_sha)
        if 0 < len(todo.created) <= BACKGROUND_MOST:
            starts, token = inv.container_starts_dir, secrets.token_hex(4)
            _background[host.name] = (token, list(todo.created))
    yield from as_script(inv.share_dir, "containers", plan_script(todo, starts, token))


@operation(is_idempotent=True)
def started(inv: Inventory):
    """The containers `containers` started in the background run (the deploy's last step on a
    slice host: the steps between overlapped their start)."""
    token, names = _background.pop(host.name, ("", []))
    if not names:
        host.noop("no slice container is starting in the background")
        return
    yield StringCommand(wait_script(inv.container_starts_dir, names, token))

