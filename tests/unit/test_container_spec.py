"""Slice containers converge by spec: the spec hash moves exactly when something the container
is run with moves, and the plan, given the docker facts, is exactly these commands (or none)."""

from __future__ import annotations

import shlex
import subprocess
import types
from pathlib import Path

import pytest
import yaml

from sliceops import factcache
from sliceops.facts.docker import DockerNetwork, SliceContainers
from sliceops.inventory import load
from sliceops.operations import docker as op
from sliceops.operations.docker import container_plan, desired_spec, spec_hash
from tests.unit.fake_host import FakeHost

IMAGE = "sha256:" + "1" * 64
OTHER_IMAGE = "sha256:" + "2" * 64
SHA = {i: f"{i}" * 64 for i in range(1, 10)}


def inventory(tmp_path, slices=None, **sections):
    data = {"target": "@local", **sections, "slices": slices or [{"id": 1}, {"id": 2}, {"id": 3}]}
    path = tmp_path / f"inv-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load(path)


def spec_of(inv, slice_id=1, image=IMAGE, env_sha=SHA[1]):
    return desired_spec(inv, inv.slice(slice_id), image, env_sha)


def fact(inv, states: dict[int, str] | None = None, specs: dict[int, str] | None = None,
         env: dict[int, str] | None = None, extra: dict | None = None) -> dict:
    """A SliceContainers value: each listed slice has a container in the given state, labelled
    with the spec it was run with (image IMAGE, credentials SHA) unless `specs` says otherwise;
    `env` is what the credentials files hold now."""
    env = SHA if env is None else env
    containers = {}
    for sid, st in (states or {}).items():
        s = inv.slice(sid)
        current = spec_hash(desired_spec(inv, s, IMAGE, SHA.get(sid)))
        containers[inv.container_name(sid)] = {
            "id": f"c{sid}", "state": st, "health": None, "spec": (specs or {}).get(sid, current),
            "slice": sid, "image": IMAGE, "started_at": "2026-01-01T00:00:00Z",
        }
    containers.update(extra or {})
    return {"containers": containers, "env_sha256": {f"wa_slice_{i}.env": v for i, v in env.items()}}


# --------------------------------------------------------------------------- the spec hash


def test_spec_hash_is_stable_and_independent_of_key_order(tmp_path):
    inv = inventory(tmp_path)
    spec = spec_of(inv)
    assert spec_hash(spec) == spec_hash(dict(reversed(list(spec.items()))))
    assert spec_hash(spec) == spec_hash(spec_of(inventory(tmp_path)))


@pytest.mark.parametrize(
    "what, change",
    [
        ("image id", dict(image=OTHER_IMAGE)),
        ("credentials file (rotated password)", dict(env_sha=SHA[2])),
        ("credentials file appearing", dict(env_sha=None)),
    ],
)
def test_spec_hash_changes_with_image_and_credentials(tmp_path, what, change):
    inv = inventory(tmp_path)
    assert spec_hash(spec_of(inv, **change)) != spec_hash(spec_of(inv)), what


@pytest.mark.parametrize(
    "what, slices, sections",
    [
        ("memory", [{"id": 1, "memory": "512m"}], {}),
        ("cpus", [{"id": 1, "cpus": 1}], {}),
        ("pids", [{"id": 1, "pids": 512}], {}),
        ("port", [{"id": 1, "port": 7001}], {}),
        ("port base", [{"id": 1}], {"slice_defaults": {"port_base": 6001}}),
        ("default memory", [{"id": 1}], {"slice_defaults": {"memory": "1g"}}),
        ("data directory (mount)", [{"id": 1}], {"slice_defaults": {"data_dir": "/data/sliceops"}}),
        ("instance (name, network, mount, credentials path)", [{"id": 1}], {"instance": "staging"}),
    ],
)
def test_spec_hash_changes_with_limits_port_and_mounts(tmp_path, what, slices, sections):
    base = spec_of(inventory(tmp_path, [{"id": 1}]))
    changed = spec_of(inventory(tmp_path, slices, **sections))
    assert spec_hash(changed) != spec_hash(base), what


@pytest.mark.parametrize(
    "what, slices, sections",
    [
        ("another slice's limits", [{"id": 1}, {"id": 2, "memory": "2g"}], {}),
        ("a new slice", [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}], {}),
        ("PostgreSQL settings (they reach the slice through the credentials file)", [{"id": 1}, {"id": 2}],
         {"postgres": {"port": 5439}}),
        ("monitor settings", [{"id": 1}, {"id": 2}], {"monitor": {"interval": 120}}),
        ("the image name, when the id is the same", [{"id": 1}, {"id": 2}],
         {"slice_defaults": {"image": "example/crm:7"}}),
        ("the backup directory", [{"id": 1}, {"id": 2}], {"slice_defaults": {"backup_dir": "/bk"}}),
        ("the same value written explicitly", [{"id": 1, "memory": "256m", "cpus": 0.5}, {"id": 2}], {}),
    ],
)
def test_spec_hash_ignores_what_the_container_does_not_run_with(tmp_path, what, slices, sections):
    base = spec_of(inventory(tmp_path, [{"id": 1}, {"id": 2}]))
    other = spec_of(inventory(tmp_path, slices, **sections))
    assert spec_hash(other) == spec_hash(base), what


def test_spec_carries_the_hardening_and_no_secret(tmp_path):
    spec = spec_of(inventory(tmp_path))
    assert spec["read_only"] and spec["cap_drop"] == ["ALL"] and spec["security_opt"] == ["no-new-privileges"]
    assert spec["publish"] == "127.0.0.1:5001:5001" and spec["user"] == "10001:10001"
    assert "DATABASE_URL" not in spec["env"]
    assert spec["env_file"] == "/etc/sliceops/main/secrets/wa_slice_1.env"


# --------------------------------------------------------------------------- the plan, pinned as data

# The exact `docker run` of slice 1 of the default inventory. The hash is pinned on purpose:
# a change to the spec recreates every slice container on every host, so it must be deliberate.
RUN_1 = (
    "docker run -d --name wa-slice-1 --label sliceops.instance=main --label sliceops.slice=1 "
    "--label sliceops.spec={hash} --label {fields} --env SLICE_ID=1 --env PORT=5001 "
    "--env PGSSLROOTCERT=/etc/sliceops/postgresql-ca.crt --env NODE_EXTRA_CA_CERTS=/etc/sliceops/postgresql-ca.crt "
    "--env-file /etc/sliceops/main/secrets/wa_slice_1.env --publish 127.0.0.1:5001:5001 "
    "--network sliceops-main --user 10001:10001 --read-only --tmpfs /tmp "
    "--volume /srv/sliceops/main/slices/1:/data "
    "--volume /etc/sliceops/main/postgresql-ca.crt:/etc/sliceops/postgresql-ca.crt:ro --security-opt no-new-privileges --cap-drop ALL "
    "--memory 256m --cpus 0.5 --pids-limit 256 "
    "--cgroup-parent /sliceops.slice/sliceops-main.slice/sliceops-main-s1.slice --log-driver json-file --log-opt max-size=10m "
    "--log-opt max-file=3 --health-interval 300s --restart unless-stopped " + IMAGE + " >/dev/null"
)
# Changed deliberately twice: /data moved onto the quota volume (spec key data_on), and every
# container runs under its slice's own cgroup (cgroup_parent), where the monitor reads it.
# A third time: PostgreSQL's CA mounted read-only and named by PGSSLROOTCERT (verify-full).
RUN_1_HASH = "f28ed9e174cab411e8b5e8e40666d67eaddc824684b45d047c6e45a7458a16ae"
# With slice_defaults.disk: false: the same spec without data_on.
RUN_1_HASH_NO_QUOTA = "4b96b038c2d7c5dccb6f32cc6850a8b3f5ccde65cfae4504afd77819d6205399"


def _run(inv, sid, env_sha):
    s = inv.slice(sid)
    return op.run_command(inv, s, desired_spec(inv, s, IMAGE, env_sha))


@pytest.mark.parametrize(("interval", "flag"), [(0, "--no-healthcheck"), (45, "--health-interval 45s")])
def test_the_docker_health_check_pace_is_the_inventorys(tmp_path, interval, flag):
    inv = inventory(tmp_path, slice_defaults={"health_interval": interval})
    command = _run(inv, 1, SHA[1])
    assert f" {flag} --restart " in command
    other = "--health-interval" if interval == 0 else "--no-healthcheck"
    assert other not in command
    assert spec_hash(spec_of(inv)) != spec_hash(spec_of(inventory(tmp_path)))  # a change recreates


def test_fresh_host_runs_every_in_service_slice(tmp_path):
    inv = inventory(tmp_path, [{"id": 1}, {"id": 2, "status": "suspended"}, {"id": 3}])
    plan = container_plan(inv, fact(inv), IMAGE)
    assert plan.commands[0] == (
        "install -d -o 10001 -g sliceops-monitor -m 2750 /srv/sliceops/main/slices/1 /srv/sliceops/main/slices/3"
    )
    fields = shlex.quote("sliceops.spec.fields=" + op.spec_label(spec_of(inv)))
    assert plan.commands[1] == RUN_1.format(hash=RUN_1_HASH, fields=fields)
    assert plan.commands[2] == _run(inv, 3, SHA[3])
    assert len(plan.commands) == 3
    assert (plan.created, plan.recreated, plan.started, plan.stopped) == (["wa-slice-1", "wa-slice-3"], [], [], [])


def test_the_spec_hash_of_slice_1_is_pinned(tmp_path):
    assert spec_hash(spec_of(inventory(tmp_path))) == RUN_1_HASH
    no_quota = inventory(tmp_path, slice_defaults={"disk": False})
    assert spec_hash(spec_of(no_quota)) == RUN_1_HASH_NO_QUOTA


def test_changing_a_disk_quota_recreates_no_container(tmp_path):
    """The quota is the volume's business (a qgroup limit changes live), not the container's."""
    small = inventory(tmp_path, slices=[{"id": 1, "disk": "20m"}])
    large = inventory(tmp_path, slices=[{"id": 1, "disk": "5g"}])
    assert spec_hash(spec_of(small)) == spec_hash(spec_of(large)) == RUN_1_HASH


def test_the_slice_cgroup_is_the_same_path_under_either_driver(tmp_path):
    inv = inventory(tmp_path, [{"id": 7}], instance="blue")
    s = inv.slice(7)
    assert inv.slice_cgroup(7) == "sliceops.slice/sliceops-blue.slice/sliceops-blue-s7.slice"
    assert op.cgroup_parent(inv, s, "cgroupfs") == "/" + inv.slice_cgroup(7)
    # systemd nests a-b-c.slice in a.slice/a-b.slice: the same directories.
    assert op.cgroup_parent(inv, s, "systemd") == "sliceops-blue-s7.slice"
    assert "--cgroup-parent sliceops-blue-s7.slice " in op.run_command(
        inv, s, desired_spec(inv, s, IMAGE, SHA.get(7), "systemd"))


def test_engine_not_there_yet_plans_like_a_fresh_host(tmp_path):
    inv = inventory(tmp_path)
    assert len(container_plan(inv, None, IMAGE).commands) == 4  # install -d + three runs


# (case, inventory slices, container states, stale spec labels, env shas, expected commands)
CASES = [
    ("converged: nothing to do", None, {1: "running", 2: "running", 3: "running"}, {}, None, []),
    ("restarting by Docker's policy is left to Docker", None,
     {1: "restarting", 2: "running", 3: "running"}, {}, None, []),
    ("one slice's limit changed: only it is recreated",
     [{"id": 1}, {"id": 2, "memory": "512m"}, {"id": 3}], {1: "running", 2: "running", 3: "running"},
     {2: "stale"}, None,
     ["docker rm -f wa-slice-2 >/dev/null",
      "install -d -o 10001 -g sliceops-monitor -m 2750 /srv/sliceops/main/slices/2",
      "RUN 2"]),
    ("rotated password: recreated", None, {1: "running", 2: "running", 3: "running"},
     {}, {1: "f" * 64, 2: SHA[2], 3: SHA[3]},
     ["docker rm -f wa-slice-1 >/dev/null",
      "install -d -o 10001 -g sliceops-monitor -m 2750 /srv/sliceops/main/slices/1",
      "RUN 1"]),
    ("suspended and running: stopped, kept", [{"id": 1}, {"id": 2, "status": "suspended"}, {"id": 3}],
     {1: "running", 2: "running", 3: "running"}, {}, None,
     ["docker stop wa-slice-2 >/dev/null"]),
    ("suspended and already stopped: nothing", [{"id": 1}, {"id": 2, "status": "suspended"}, {"id": 3}],
     {1: "running", 2: "exited", 3: "running"}, {}, None, []),
    ("suspended with a stale spec: only stopped (recreated when resumed)",
     [{"id": 1}, {"id": 2, "status": "suspended", "memory": "1g"}, {"id": 3}],
     {1: "running", 2: "running", 3: "running"}, {2: "stale"}, None,
     ["docker stop wa-slice-2 >/dev/null"]),
    ("in service but stopped: started, not recreated", None, {1: "exited", 2: "created", 3: "running"}, {}, None,
     ["install -d -o 10001 -g sliceops-monitor -m 2750 /srv/sliceops/main/slices/1 /srv/sliceops/main/slices/2",
      "docker start wa-slice-1 wa-slice-2 >/dev/null"]),
    ("dead: recreated", None, {1: "running", 2: "dead", 3: "running"}, {}, None,
     ["docker rm -f wa-slice-2 >/dev/null",
      "install -d -o 10001 -g sliceops-monitor -m 2750 /srv/sliceops/main/slices/2",
      "RUN 2"]),
    ("being destroyed: left to the destroy step", [{"id": 1}, {"id": 2, "status": "destroying"}, {"id": 3}],
     {1: "running", 2: "running", 3: "running"}, {2: "stale"}, None, []),
    ("everything at once, batched", [{"id": 1, "pids": 64}, {"id": 2, "status": "suspended"}, {"id": 3}, {"id": 4}],
     {1: "running", 2: "running", 3: "exited"}, {1: "stale"}, None,
     ["docker stop wa-slice-2 >/dev/null",
      "docker rm -f wa-slice-1 >/dev/null",
      "install -d -o 10001 -g sliceops-monitor -m 2750 /srv/sliceops/main/slices/1 /srv/sliceops/main/slices/3 "
      "/srv/sliceops/main/slices/4",
      "docker start wa-slice-3 >/dev/null",
      "RUN 1",
      "RUN 4"]),
]


@pytest.mark.parametrize("case, slices, states, stale, env, expected", CASES, ids=[c[0] for c in CASES])
def test_plan(tmp_path, case, slices, states, stale, env, expected):
    inv = inventory(tmp_path, slices)
    env = env or SHA
    have = fact(inv, states, stale, env)
    expected = [_run(inv, int(c.split()[1]), env.get(int(c.split()[1]))) if c.startswith("RUN ") else c
                for c in expected]
    plan = container_plan(inv, have, IMAGE)
    assert plan.commands == expected
    assert plan.orphans == []


def test_orphans_are_reported_and_not_touched(tmp_path):
    inv = inventory(tmp_path, [{"id": 1}])
    stray = {"wa-slice-9": {"id": "c9", "state": "running", "health": None, "spec": "x", "slice": 9,
                            "image": IMAGE, "started_at": ""}}
    plan = container_plan(inv, fact(inv, {1: "running"}, extra=stray), IMAGE)
    assert plan.commands == [] and plan.orphans == ["wa-slice-9"]


def test_another_instance_names_everything_after_itself(tmp_path):
    inv = inventory(tmp_path, [{"id": 1}], instance="staging")
    run = container_plan(inv, None, IMAGE).commands[1]
    for part in ("--name staging-wa-slice-1", "--label sliceops.instance=staging", "--network sliceops-staging",
                 "/etc/sliceops/staging/secrets/wa_slice_1.env", "/srv/sliceops/staging/slices/1:/data"):
        assert part in run


def test_script_collects_failures_and_says_what_it_did(tmp_path):
    inv = inventory(tmp_path, [{"id": 1}, {"id": 2, "status": "suspended"}])
    plan = container_plan(inv, fact(inv, {2: "running"}), IMAGE)
    script = op.plan_script(plan)
    # Run it for real: `docker stop` fails, `docker run` works, install makes the directory.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\n[ "$1" = stop ] && exit 1\nexit 0\n')
    (bin_dir / "install").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["sliceops: created wa-slice-1", "sliceops-progress containers 1 1 wa-slice-1"]
    assert proc.stderr.strip() == "sliceops: slice container steps failed: stop"


def test_a_fleet_s_containers_are_said_in_one_line_after_their_progress(tmp_path):
    """Eight containers to run: a progress line each, then one line for the step (not eight),
    said only when every step succeeded."""
    inv = inventory(tmp_path, [{"id": i} for i in range(1, 9)])
    have = fact(inv, {1: "running"})
    have["containers"]["wa-slice-1"]["spec"] = "old"  # slice 1 recreated, 2-8 created
    script = op.plan_script(container_plan(inv, have, IMAGE))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "install"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    run = lambda: subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                                 env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    out = run().stdout.splitlines()
    assert [line for line in out if not line.startswith("sliceops-progress ")] == [
        "sliceops: created 7 slice containers (wa-slice-2, wa-slice-3, wa-slice-4, wa-slice-5, wa-slice-6 "
        "and 2 more); recreated wa-slice-1"]
    assert len([line for line in out if line.startswith("sliceops-progress containers ")]) == 8
    (bin_dir / "docker").write_text('#!/bin/sh\n[ "$1" = run ] && [ "$4" = wa-slice-5 ] && exit 1\nexit 0\n')
    failed = run()
    assert failed.returncode == 1 and "created" not in failed.stdout
    assert failed.stderr.strip() == "sliceops: slice container steps failed: run wa-slice-5"


# --------------------------------------------------------------------------- the operation itself


def refusal_line(command: str) -> str:
    """What a refusal command prints (it must be one line on stderr and fail)."""
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    return proc.stderr.strip()


def _script_text(command) -> str | None:
    from sliceops.operations.util import script_text

    text = script_text(command)
    if text is not None:
        return text
    text = str(command)
    if text.startswith(("install -d -m 0700 ", "sh ")):
        return None
    return text


@pytest.fixture
def run_op(monkeypatch):
    def run(operation, facts: dict, executing: bool = False, **kwargs):
        fake = FakeHost({"DockerCgroupDriver": "cgroupfs", "FileSha256": None, **facts})
        monkeypatch.setattr(op, "host", fake)
        monkeypatch.setattr(factcache, "host", fake)
        monkeypatch.setattr(factcache, "_cache", {})
        monkeypatch.setattr(op, "state", types.SimpleNamespace(
            is_executing=executing, should_check_for_changes=lambda: True))
        commands = [_script_text(c) for c in operation._inner(**kwargs)]
        # A large script travels as a file (mkdir, upload, sh): compare what it says.
        return [c for c in commands if c is not None], fake.noops

    return run


def test_containers_op_noop_sentence(tmp_path, run_op):
    inv = inventory(tmp_path, [{"id": 1}, {"id": 2, "status": "suspended"}])
    commands, noops = run_op(op.containers, {"DockerImage": IMAGE, "SliceContainers": fact(inv, {1: "running", 2: "exited"})},
                             inv=inv)
    assert commands == []
    assert noops == ["1 slice containers run their current spec; 1 suspended stopped"]


def test_containers_op_warns_about_orphans(tmp_path, run_op, caplog):
    inv = inventory(tmp_path, [{"id": 1}])
    stray = {"wa-slice-7": {"id": "c7", "state": "exited", "health": None, "spec": "x", "slice": 7,
                            "image": IMAGE, "started_at": ""}}
    with caplog.at_level("WARNING", logger="pyinfra"):
        commands, _ = run_op(op.containers, {"DockerImage": IMAGE, "SliceContainers": fact(inv, {1: "running"}, extra=stray)},
                             inv=inv)
    assert commands == []
    assert "orphan slice containers" in caplog.text and "wa-slice-7" in caplog.text


def test_containers_op_refuses_to_run_without_credentials(tmp_path, run_op):
    inv = inventory(tmp_path, [{"id": 1}])
    facts = {"DockerImage": IMAGE, "SliceContainers": {"containers": {}, "env_sha256": {}}}
    # The change check may assume the roles step will write them ...
    commands, _ = run_op(op.containers, facts, inv=inv)
    assert "docker run" in commands[0]
    # ... but when the commands are about to run they must be there.
    commands, _ = run_op(op.containers, facts, executing=True, inv=inv)
    assert len(commands) == 1
    assert refusal_line(commands[0]) == (
        "sliceops: slice credentials missing (the roles step writes them): /etc/sliceops/main/secrets/wa_slice_1.env"
    )


def test_containers_op_refuses_without_the_image_at_execution(tmp_path, run_op):
    inv = inventory(tmp_path, [{"id": 1}])
    facts = {"DockerImage": None, "SliceContainers": fact(inv)}
    commands, _ = run_op(op.containers, facts, inv=inv)
    assert "(unbuilt sliceops/slice-backend:1)" in commands[0]
    commands, _ = run_op(op.containers, facts, executing=True, inv=inv)
    assert refusal_line(commands[0]) == (
        "sliceops: slice image sliceops/slice-backend:1 is not in the Docker engine on the target"
    )


def test_image_op_builds_the_reference_image_only_when_missing_or_changed(tmp_path, run_op):
    inv = inventory(tmp_path)
    digest = op.recipe_digest()
    commands, noops = run_op(op.image_built, {"ImageLabels": {op.RECIPE_LABEL: digest}}, inv=inv, images_dir="/x")
    assert commands == [] and noops == ["slice image sliceops/slice-backend:1 is built from the current images/slice-backend"]
    for labels in (None, {op.RECIPE_LABEL: "old"}):
        commands, _ = run_op(op.image_built, {"ImageLabels": labels}, inv=inv, images_dir="/x")
        assert commands == [op.build_command("/x", "sliceops/slice-backend:1", digest)]


def test_image_op_names_a_missing_user_image(tmp_path, run_op):
    inv = inventory(tmp_path, slice_defaults={"image": "example/crm:7"})
    commands, _ = run_op(op.image_built, {"ImageLabels": None}, inv=inv, images_dir="/x")
    assert len(commands) == 1
    assert refusal_line(commands[0]) == (
        f"sliceops: {inv.path}:3: slice_defaults.image: 'example/crm:7' is not in the Docker engine on the "
        "target (load or pull it there first; only sliceops/slice-backend:1 is built by the deploy)"
    )
    commands, noops = run_op(op.image_built, {"ImageLabels": {}}, inv=inv, images_dir="/x")
    assert commands == [] and noops == ["slice image example/crm:7 is present"]


# --------------------------------------------------------------------------- network


def test_network_created_recreated_or_refused(tmp_path):
    inv = inventory(tmp_path)
    good = {"driver": "bridge", "subnet": "172.30.0.0/24", "gateway": "172.30.0.1", "icc": False,
            "bridge": "so-main", "attached": ["wa-slice-1"]}
    create = ("docker network create --driver bridge --subnet 172.30.0.0/24 --gateway 172.30.0.1 "
              "-o com.docker.network.bridge.enable_icc=false -o com.docker.network.bridge.name=so-main "
              "--label sliceops.instance=main sliceops-main >/dev/null")
    assert op.network_plan(inv, None) == [create]
    assert op.network_plan(inv, good) == []
    loose = {**good, "icc": True, "attached": []}
    assert op.network_plan(inv, loose) == ["docker network rm sliceops-main >/dev/null", create]
    with pytest.raises(Exception, match=r"inter-container traffic is on \(wanted off\).*wa-slice-1"):
        op.network_plan(inv, {**good, "icc": True})


def test_on_the_database_host_a_new_network_makes_postgresql_listen_on_its_bridge(tmp_path, run_op):
    """PostgreSQL names the bridge's address before the bridge exists; where ip_nonlocal_bind
    could not be set (a container) it started without it: the network's creation restarts it
    on the database host unless it already listens there (a slice moved to the database host
    of the e2e fleet answered 503: its database unreachable on 172.30.70.1)."""
    inv = inventory(tmp_path, postgres={"port": 5470})
    create = op.network_plan(inv, None)[0]
    commands, _ = run_op(op.network, {"DockerNetwork": None}, inv=inv, database_here=True)
    assert commands == [f"{create} && {op.postgres_bind_command(inv)}"]
    commands, _ = run_op(op.network, {"DockerNetwork": None}, inv=inv)  # a pure slice host: its own engine only
    assert commands == [create]
    good = {"driver": "bridge", "subnet": "172.30.0.0/24", "gateway": "172.30.0.1", "icc": False,
            "bridge": "so-main", "attached": []}
    listening = {"TcpListeners": ["127.0.0.1:5470", "172.30.0.1:5470"]}
    commands, noops = run_op(op.network, {"DockerNetwork": good, **listening}, inv=inv, database_here=True)
    assert commands == [] and noops  # PostgreSQL listens there: nothing restarts (a no-op stays one)
    commands, _ = run_op(op.network, {"DockerNetwork": good, "TcpListeners": ["127.0.0.1:5470"]}, inv=inv,
                         database_here=True)
    assert commands == [op.postgres_bind_command(inv)]  # the bridge came after PostgreSQL started
    commands, _ = run_op(op.network, {"DockerNetwork": good, "TcpListeners": ["127.0.0.1:5470"]}, inv=inv)
    assert commands == []  # not the database host: no PostgreSQL to check
    commands, _ = run_op(op.network, {"DockerNetwork": good, "TcpListeners": ["127.0.0.1:22"]}, inv=inv,
                         database_here=True)
    assert commands == []  # PostgreSQL not running (or no ss): the deploy's start binds it, nothing to restart

    from sliceops.facts.host import TcpListeners

    assert TcpListeners().process(["172.30.0.1:5470", "  ", "127.0.0.1:5470"]) == ["127.0.0.1:5470", "172.30.0.1:5470"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "restarts"
    (bin_dir / "pg_ctlcluster").write_text(f"#!/bin/sh\necho \"$*\" >>{log}\n")
    for listening in (["127.0.0.1:5470", "10.214.0.10:5470"], ["127.0.0.1:5470", "172.30.0.1:5470"]):
        lines = "".join(f"LISTEN 0 244 {a} 0.0.0.0:*\\n" for a in listening)
        (bin_dir / "ss").write_text(f"#!/bin/sh\nprintf '{lines}'\n")
        for tool in bin_dir.iterdir():
            tool.chmod(0o755)
        log.unlink(missing_ok=True)
        subprocess.run(["sh", "-c", f"true && {op.postgres_bind_command(inv)}"], check=True,
                       env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
        restarted = log.read_text() if log.exists() else ""
        assert restarted == ("" if "172.30.0.1:5470" in listening else "15 main restart\n"), listening


def test_bridge_names_fit_linux_interface_names():
    assert op.bridge_name("main") == "so-main"
    assert op.bridge_name("abcdefghijkl") == "so-abcdefghijkl"
    long_a, long_b = op.bridge_name("abcdefghijklmnop"), op.bridge_name("abcdefghijklmnoq")
    assert len(long_a) <= 15 and len(long_b) <= 15 and long_a != long_b


# --------------------------------------------------------------------------- fact parsers


def test_slice_containers_parse():
    lines = [
        "ENV 3f" + "0" * 62 + "  /etc/sliceops/main/secrets/wa_slice_1.env",
        '{"id":"abc","name":"/wa-slice-1","image":"sha256:9","state":{"Status":"running",'
        '"StartedAt":"2026-01-01T00:00:00Z","Health":{"Status":"healthy","Log":[]}},'
        '"labels":{"sliceops.instance":"main","sliceops.slice":"1","sliceops.spec":"h1"}}',
        '{"id":"def","name":"/wa-slice-x","image":"sha256:9","state":{"Status":"exited","StartedAt":""},'
        '"labels":{"sliceops.instance":"main"}}',
    ]
    got = SliceContainers.parse(lines)
    assert got["env_sha256"] == {"wa_slice_1.env": "3f" + "0" * 62}
    assert got["containers"]["wa-slice-1"] == {
        "id": "abc", "state": "running", "health": "healthy", "spec": "h1", "slice": 1,
        "image": "sha256:9", "started_at": "2026-01-01T00:00:00Z", "spec_fields": None,
    }
    assert got["containers"]["wa-slice-x"]["slice"] is None and got["containers"]["wa-slice-x"]["health"] is None
    assert SliceContainers.parse([]) == {"containers": {}, "env_sha256": {}}
    assert SliceContainers.parse(["SLICEOPS_DOCKER_DOWN"]) is None


def test_docker_network_parse():
    lines = [
        '{"ipam":[{"Subnet":"172.30.0.0/24","Gateway":"172.30.0.1"}],'
        '"options":{"com.docker.network.bridge.enable_icc":"false","com.docker.network.bridge.name":"so-main"},'
        '"driver":"bridge"}',
        "ATTACHED wa-slice-2",
        "ATTACHED wa-slice-1",
    ]
    assert DockerNetwork.parse(lines) == {"driver": "bridge", "subnet": "172.30.0.0/24", "gateway": "172.30.0.1",
                                          "icc": False, "bridge": "so-main", "attached": ["wa-slice-1", "wa-slice-2"]}
    assert DockerNetwork.parse(["SLICEOPS_MISSING"]) is None
    assert DockerNetwork.parse(['{"ipam":[],"options":{},"driver":"bridge"}'])["icc"] is True


def test_containers_op_tells_the_plan_what_a_recreate_changes(tmp_path, run_op):
    import json

    from sliceops import plan

    before = inventory(tmp_path, [{"id": 1}, {"id": 2}])
    after = inventory(tmp_path, [{"id": 1}, {"id": 2, "memory": "512m"}, {"id": 3}])
    have = fact(before, {1: "running", 2: "running"}, env={1: SHA[1], 2: SHA[2]})
    for sid in (1, 2):
        have["containers"][f"wa-slice-{sid}"]["spec_fields"] = json.loads(op.spec_label(spec_of(before, sid, env_sha=SHA[sid])))
    plan.reset()
    commands, _ = run_op(op.containers, {"DockerImage": IMAGE, "SliceContainers": have}, inv=after)
    assert "docker rm -f wa-slice-2" in commands[0]
    assert plan.lines(plan.recorded_for(None)) == [  # None: outside a pyinfra run
        "slice 2: container recreated: memory 256m -> 512m",
        "slice 3: new: container on 127.0.0.1:5005",
    ]
    plan.reset()


def test_containers_op_refuses_to_run_without_the_ca_certificate(tmp_path, run_op):
    """docker run would make a directory where the CA's bind mount wants a file."""
    inv = inventory(tmp_path, [{"id": 1}])
    facts = {"DockerImage": IMAGE, "SliceContainers": fact(inv, {}), "FileSha256": None}
    commands, _ = run_op(op.containers, facts, executing=True, inv=inv)
    assert refusal_line(commands[0]) == (
        "sliceops: PostgreSQL's CA certificate is missing at /etc/sliceops/main/postgresql-ca.crt "
        "(the CA copy step writes it)"
    )
    commands, _ = run_op(op.containers, {**facts, "FileSha256": "c" * 64}, executing=True, inv=inv)
    assert "docker run" in commands[0]


def test_a_new_ca_certificate_recreates_the_containers(tmp_path):
    inv = inventory(tmp_path, [{"id": 1}])
    old = desired_spec(inv, inv.slice(1), IMAGE, SHA[1], ca_sha="a" * 64)
    have = {"containers": {"wa-slice-1": {"id": "c1", "state": "running", "health": None, "spec": spec_hash(old),
                                          "slice": 1, "image": IMAGE, "started_at": ""}},
            "env_sha256": {"wa_slice_1.env": SHA[1]}}
    assert container_plan(inv, have, IMAGE, ca_sha="a" * 64).recreated == []
    assert container_plan(inv, have, IMAGE, ca_sha="b" * 64).recreated == ["wa-slice-1"]


def test_new_containers_start_in_the_background_and_the_last_step_names_each_outcome(tmp_path):
    """A few new containers: the containers step starts them detached and returns at once;
    `started`'s script waits for each, says the ones that run and fails naming the one the
    engine refused, with the engine's own words."""
    inv = inventory(tmp_path, [{"id": 1}, {"id": 2}])
    plan = container_plan(inv, fact(inv), IMAGE)
    assert plan.created == ["wa-slice-1", "wa-slice-2"]
    starts = str(tmp_path / "starts")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The engine takes a moment; it refuses slice 2's port.
    (bin_dir / "docker").write_text(
        '#!/bin/sh\nsleep 0.3\n[ "$4" = wa-slice-2 ] && { echo "Error: port is already allocated" >&2; exit 125; }\nexit 0\n')
    (bin_dir / "install").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    launched = subprocess.run(["sh", "-c", op.plan_script(plan, starts, "t0k")], capture_output=True, text=True, env=env,
                              timeout=10)
    assert launched.returncode == 0, launched.stderr
    assert [line for line in launched.stdout.splitlines() if not line.startswith("sliceops-progress")] == [
        f"sliceops: starting wa-slice-{i} in the background (the deploy's last step waits for it)" for i in (1, 2)]
    assert not list(Path(starts).glob("*.rc"))  # still starting: the step did not wait
    waited = subprocess.run(["sh", "-c", op.wait_script(starts, plan.created, "t0k")], capture_output=True, text=True,
                            env=env, timeout=10)
    assert waited.returncode == 1
    assert waited.stdout.splitlines() == ["sliceops: created wa-slice-1"]
    assert waited.stderr.strip() == ("sliceops: slice containers did not start: wa-slice-2: "
                                     "Error: port is already allocated")
    assert list(Path(starts).iterdir()) == []  # outcomes read once, then gone


def test_the_wait_for_a_background_start_is_bounded(tmp_path):
    starts = tmp_path / "starts"
    starts.mkdir()
    waited = subprocess.run(["sh", "-c", op.wait_script(str(starts), ["wa-slice-1"], "t0k", seconds=1)],
                            capture_output=True, text=True, timeout=10)
    assert waited.returncode == 1
    assert waited.stderr.strip() == "sliceops: slice containers did not start: wa-slice-1: still starting after 1 s"


def test_recreated_and_many_containers_do_not_start_in_the_background(tmp_path):
    inv = inventory(tmp_path, [{"id": 1}, {"id": 2}])
    have = fact(inv, {1: "running"})
    have["containers"]["wa-slice-1"]["spec"] = "old"
    script = op.plan_script(container_plan(inv, have, IMAGE), str(tmp_path / "starts"), "t0k")
    assert script.count("setsid -f") == 1 and "wa-slice-2.t0k.rc" in script and "wa-slice-1.t0k.rc" not in script


def test_a_fleet_s_summary_does_not_call_a_background_start_created(tmp_path):
    """Two new containers started in the background beside six recreated ones: the step's one
    line says the two are starting; only the wait says them created."""
    inv = inventory(tmp_path, [{"id": i} for i in range(1, 9)])
    have = fact(inv, {i: "running" for i in range(1, 7)})
    for i in range(1, 7):
        have["containers"][f"wa-slice-{i}"]["spec"] = "old"
    script = op.plan_script(container_plan(inv, have, IMAGE), str(tmp_path / "starts"), "t0k")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "install"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                         timeout=10).stdout.splitlines()
    said = [line for line in out if not line.startswith("sliceops-progress ")]
    assert said == ["sliceops: recreated 6 slice containers (wa-slice-1, wa-slice-2, wa-slice-3, wa-slice-4, "
                    "wa-slice-5 and 1 more); starting in the background wa-slice-7, wa-slice-8"], said


def test_a_start_that_lost_the_name_to_an_earlier_deploy_s_start_counts_as_started(tmp_path):
    """A deploy killed after launching slice 1's start, run again at once: its start fails on
    the name the first start took, and the container runs: created, not a failure. An older
    launch's outcome files are not this launch's."""
    starts = tmp_path / "starts"
    starts.mkdir()
    (starts / "wa-slice-1.t0k.rc").write_text("125\n")
    (starts / "wa-slice-1.t0k.log").write_text('docker: Error response from daemon: Conflict. The container name "/wa-slice-1" is already in use\n')
    (starts / "wa-slice-2.old.rc").write_text("0\n")  # an older launch's: not waited for as this one's
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\n[ "$5" = wa-slice-1 ] && echo true\nexit 0\n')
    (bin_dir / "docker").chmod(0o755)
    waited = subprocess.run(["sh", "-c", op.wait_script(str(starts), ["wa-slice-1", "wa-slice-2"], "t0k", seconds=1)],
                            capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=10)
    assert waited.stdout.splitlines() == ["sliceops: created wa-slice-1 (by an earlier deploy's start)"]
    assert waited.returncode == 1 and waited.stderr.strip() == (
        "sliceops: slice containers did not start: wa-slice-2: still starting after 1 s")
