"""The one door for values into shell and SQL (sliceops/shell.py, sliceops/psql.py), and the
builders that go through it: hostile strings arrive as one inert argument.

Each built command really runs under `sh -c`, with every program it calls replaced by a
probe that records its argv (NUL-separated) and its standard input: a hostile value must
show up whole inside one argument, and the `touch` it tries to smuggle in must never run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest
from psycopg import sql

from sliceops import psql, shell
from sliceops.facts.host import DataDirs, RecordedDigest, ServiceState
from sliceops.facts.postgres import PgCluster
from sliceops.inventory import load
from sliceops.facts.volume import SliceVolume, VolumeState
from sliceops.names import TARGET_PYTHON
from sliceops.operations import datadirs, docker, firewall, lifecycle, system, volume
from sliceops.operations import postgres as pg

ROOT = Path(__file__).resolve().parents[2]

# {mark} is a file the hostile value tries to create; the tests check it never appears.
HOSTILE = [
    "two words",
    "it's",
    'dq"uote',
    "semi;touch {mark}",
    "$(touch {mark})",
    "`touch {mark}`",
    "line\ntouch {mark}",
    "glob*",
    "-rf",
    "$HOME",
    "pipe|touch {mark}&",
    "back\\slash",
    "{{brace,expansion}}",
    "~root",
]

PROGRAMS = [
    "runuser", "docker", "rm", "mkdir", "chmod", "chgrp", "chown", "tar", "install", "find", "stat", "pg_ctlcluster",
    "pg_lsclusters", "systemctl", "python3", "flock", "pg_dump", "pg_restore", "mktemp", "mv", "ln", "ls",
    "apt-get", "update-rc.d", "sha256sum", "fallocate", "mkfs.btrfs", "mount", "btrfs", "chattr", "cp", "diff",
    "rmdir", "losetup", "iptables", "iptables-restore", "ssh-keygen", "openssl",
]


@pytest.fixture
def probe(tmp_path):
    """Run shell text with probes for every program; return (argv lists, stdin texts, marked?)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.log"
    mark = tmp_path / "PWNED"
    # A file a glob could expand to, so an unquoted glob would be caught.
    (tmp_path / "globbed-file").write_text("")
    for name in PROGRAMS:
        script = bin_dir / name
        # A pipeline runs two probes at once (`{ python3 ...; } | runuser ... psql`): each
        # record is appended under a lock, and each standard input whole once it has ended,
        # or the two would interleave and the test would read a garbled argv under load.
        script.write_text(
            "#!/bin/sh\n"
            f"log={shell.quote(str(log))}\n"
            "{ /usr/bin/flock 9; { printf '%s\\0' \"$(basename \"$0\")\" \"$@\"; printf '\\1'; } >>\"$log\"; } 9>>\"$log.lock\"\n"
            "input=$(/bin/mktemp)\n"
            "/bin/cat >\"$input\"\n"
            "{ /usr/bin/flock 9; /bin/cat \"$input\" >>\"$log.stdin\"; } 9>>\"$log.lock\"\n"
            "/bin/rm -f \"$input\"\n"
            "exit 0\n"
        )
        script.chmod(0o755)

    def run(text: str):
        # The tool's programs run as Debian's python3 by its path: here the python3 probe.
        text = text.replace(shell.words(list(TARGET_PYTHON)), "python3")
        subprocess.run(["sh", "-c", text], cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/nonexistent"}, timeout=30)
        raw = log.read_text() if log.exists() else ""
        calls = [c.split("\0")[:-1] for c in raw.split("\1") if c]
        stdin = Path(f"{log}.stdin").read_text() if Path(f"{log}.stdin").exists() else ""
        return calls, stdin, mark.exists()

    run.mark = str(mark)
    return run


def _values(mark: str) -> list[str]:
    return [h.format(mark=mark) for h in HOSTILE]


def _whole_in_one_argument(calls, value: str) -> bool:
    return any(value in arg for argv in calls for arg in argv[1:])


# --------------------------------------------------------------------------- the door itself


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_a_quoted_word_is_one_argument(probe, index):
    value = _values(probe.mark)[index]
    calls, _, marked = probe(f"rm -rf {shell.quote(value)} {shell.words([value, 'x'])}")
    assert not marked
    assert calls == [["rm", "-rf", value, value, "x"]]


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_command_quotes_every_word(probe, index):
    value = _values(probe.mark)[index]
    calls, _, marked = probe(shell.command("install", "-d", "-m", "0750", value, 10001))
    assert not marked and calls == [["install", "-d", "-m", "0750", value, "10001"]]


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_echo_prints_the_line_as_it_is(probe, index):
    value = _values(probe.mark)[index]
    out = subprocess.run(["sh", "-c", shell.echo(value)], capture_output=True, text=True).stdout
    assert out == value + "\n"
    assert not Path(probe.mark).exists()


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_sql_identifiers_and_literals_are_psycopgs(index):
    value = HOSTILE[index]
    assert shell.ident(value) == sql.Identifier(value).as_string(None)
    assert shell.literal(value) == sql.Literal(value).as_string(None).strip()
    assert shell.literal(7) == "7"


def test_no_other_module_quotes_for_the_shell_or_sql():
    """The door is the only quoting there is: a module that called shlex or psycopg's
    sql.Literal itself would be a second door the hostile-string tests below never see.
    (The target-side agents, backup/ and monitor/, are separate stdlib programs with no
    sliceops to import; they are not part of this package.)"""
    doors = {ROOT / "sliceops" / "shell.py"}
    others = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "sliceops").rglob("*.py")) if path not in doors
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bshlex\b|\bsql\.(Literal|Identifier)\b", line)
    ]
    deploy = (ROOT / "deploy.py").read_text()
    assert "shlex" not in deploy and others == []


def test_nul_is_refused_not_cut():
    for build in (shell.quote, shell.ident, shell.literal):
        with pytest.raises(ValueError):
            build("a\0b")


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_psql_variables_are_one_argument_and_the_script_arrives_unexpanded(probe, index):
    value = _values(probe.mark)[index]
    body = f"SELECT {shell.literal(value)}, :'v';\n\\echo $(touch {probe.mark})"
    calls, stdin, marked = probe(psql.script(5432, body, "wank_saas", variables={"v": value}))
    assert not marked
    assert calls[0][:6] == ["runuser", "-u", "postgres", "--", "psql", "-Xq"]
    assert f"v={value}" in calls[0] and calls[0][calls[0].index("-d") + 1] == "wank_saas"
    assert stdin == body + "\n"


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_psql_refuses_a_database_name_it_would_read_as_connection_options(index):
    with pytest.raises(ValueError):
        psql.command(5432, HOSTILE[index])
    with pytest.raises(ValueError):
        psql.command(5432, "host=evil.example dbname=x")


def test_a_script_holding_the_heredoc_end_is_refused():
    with pytest.raises(ValueError):
        psql.script(5432, f"SELECT 1;\n{psql.END}\nrm -rf /")


def test_the_prelude_reaches_psql_on_stdin_before_the_script(probe):
    prelude = "printf '%s\\n' '\\set pw0 '\\''SCRAM-SHA-256$4096:c2FsdA==$a:b'\\'"
    calls, stdin, _ = probe(psql.script(5432, "ALTER ROLE x PASSWORD :'pw0';", prelude=prelude))
    assert stdin == "\\set pw0 'SCRAM-SHA-256$4096:c2FsdA==$a:b'\nALTER ROLE x PASSWORD :'pw0';\n"
    assert all("SCRAM" not in arg for argv in calls for arg in argv)


# --------------------------------------------------------------------------- every builder


@pytest.fixture
def hostile_inventory(tmp_path):
    """The validated default model with one field forced to a hostile value (as if the model's
    checks had let it through): the builders alone must still keep it inert."""
    base = load(ROOT / "tests" / "unit" / "data" / "good" / "every_section.yaml")

    def make(value: str, **which):
        inv = base
        if which.get("instance"):
            inv = dataclasses.replace(inv, instance=value)
        if which.get("data_dir") or which.get("backup_dir"):
            sd = dataclasses.replace(
                inv.slice_defaults,
                **{k: f"/srv/{value}" for k in ("data_dir", "backup_dir") if which.get(k)},
            )
            inv = dataclasses.replace(inv, slice_defaults=sd)
        return inv

    return make


@pytest.mark.parametrize("part", [lifecycle.BOTH, lifecycle.DATA_BACKUP, lifecycle.DATABASE, lifecycle.DATA_REMOVAL])
@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_destroy_script(probe, hostile_inventory, index, part):
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, data_dir=True, backup_dir=True, instance=True)
    sid = inv.slices[0].id
    text = lifecycle.destroy_script(inv, sid, "20261201T000000Z", part)
    # The slice's lock lives in /run/lock on the target: here in the test's own folder; the
    # backup agent is the probe.
    lock_dir = Path(probe.mark).parent / "lock"
    lock_dir.mkdir()
    text = text.replace("/run/lock/", f"{lock_dir}/").replace("/usr/bin/python3", "python3")
    calls, _, marked = probe(text)
    assert not marked
    if "/" in value:
        # The lock's name would hold a folder that does not exist: the script stops there.
        assert calls == [] and list(lock_dir.iterdir()) == []
        return
    assert [p.name for p in lock_dir.iterdir()] == [Path(inv.backup_lock(sid)).name]
    final = ["python3", *inv.backup_command("final", str(sid), "--lock-held")[1:]]
    assert (final in calls) is (part != lifecycle.DATA_REMOVAL)
    rm_rf = [argv for argv in calls if argv[:2] == ["rm", "-rf"]]
    removes = part in (lifecycle.BOTH, lifecycle.DATA_REMOVAL)
    assert rm_rf == ([["rm", "-rf", inv.slice_data_dir(sid)]] if removes else [])


def _credentials_run(probe, inv, text: str, role: str):
    """Run a script that makes credentials under the probes: nothing smuggled ran, the secrets
    folder was made, and the credentials program (the python3 probe) received its request whole,
    as JSON on its standard input, naming `role` first. Returns (calls, standard inputs)."""
    # The probes create no directories, so writing the password files fails: go on past it.
    assert text.startswith("set -e\n")
    calls, stdin, marked = probe("set +e\n" + text.removeprefix("set -e\n"))
    assert not marked
    assert ["install", "-d", "-m", "0700", inv.secrets_dir] in calls
    assert any(argv[:2] == ["python3", "-c"] and len(argv) == 3 for argv in calls)
    request = json.loads(stdin.split("\n}\n")[0] + "\n}")
    assert request["dir"] == inv.secrets_dir and request["roles"][0][0] == role
    return calls, stdin


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_roles_command(probe, hostile_inventory, index):
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, instance=True)
    text = pg.roles_command(inv, [inv.slices[0].login_role], with_monitor=True)
    calls, stdin = _credentials_run(probe, inv, text, inv.slices[0].login_role)
    assert f"ALTER ROLE {shell.ident(inv.slices[0].login_role)} WITH LOGIN CONNECTION LIMIT 5 PASSWORD :'pw0';" in stdin


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_new_slices_in_one_step(probe, hostile_inventory, index):
    """The one-step add of new slices (operations/postgres/newslices.py) on an empty cluster's
    read: its secrets folder, the credentials program's request and the one psql session."""
    from sliceops.facts.postgres import PgFleet
    from sliceops.operations.postgres import newslices

    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, instance=True)
    state = PgFleet.parse(["SECRETS"])
    new = [s for s in inv.kept_slices()][:1]
    calls, stdin = _credentials_run(probe, inv, newslices.add_command(inv, state, new), new[0].login_role)
    psqls = [argv for argv in calls if argv[:5] == ["runuser", "-u", "postgres", "--", "psql"]]
    assert len(psqls) == 1 and f"\\connect {shell.literal(new[0].database)}" in stdin


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_config_file_command_and_fact(probe, index):
    """A configuration file written from standard input (operations.system.config_file) and
    its one-command read, at a hostile path: each word arrives whole, nothing runs."""
    from sliceops.facts.host import FileState

    value = _values(probe.mark)[index]
    # A hostile folder (the probe makes no folder, so the write stops there, cleaning up) ...
    dest = f"/etc/sliceops/{value}/monitor.json"
    calls, _, marked = probe(system.config_file_command(dest, "root", "g", "640"))
    assert not marked
    assert calls == [["mkdir", "-p", dest.rsplit("/", 1)[0]], ["rm", "-f", dest + ".sliceops-new"]]
    calls, _, marked = probe(FileState().command(dest))
    assert not marked
    # ... and a hostile group, in a folder that exists.
    dest = str(Path(probe.mark).parent / "monitor.json")
    calls, _, marked = probe(system.config_file_command(dest, "root", value, "640"))
    assert not marked
    assert ["chown", f"root:{value}", dest + ".sliceops-new"] in calls and ["mv", "-f", dest + ".sliceops-new", dest] in calls
    from sliceops.facts.host import SystemUser

    calls, _, marked = probe(SystemUser().command(value))
    assert not marked


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_slice_host_tenant_credentials_and_facts(probe, hostile_inventory, index):
    from sliceops.facts.tenant_credentials import StoredVerifiers, TenantCredentials
    from sliceops.operations import tenants

    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, instance=True)
    role = inv.slices[0].login_role
    text = "\n".join([
        "set +e",
        tenants.credentials_command(inv, [role]).removeprefix("set -e\n"),
        TenantCredentials().command(secrets_dir=inv.secrets_dir, prefix=value),
        StoredVerifiers().command(port=5432, prefix=value),
    ])
    calls, stdin, marked = probe(text)
    assert not marked
    assert ["install", "-d", "-m", "0700", inv.secrets_dir] in calls
    request = json.loads(stdin.split("\n}\n")[0] + "\n}")
    assert request["dir"] == inv.secrets_dir and request["roles"][0][0] == role
    # The fact's program got the password files' glob as one argument, the prefix whole in it.
    fact = [argv for argv in calls if argv[:2] == ["python3", "-c"] and len(argv) == 4]
    assert fact and fact[0][3] == f"{inv.secrets_dir}/{value}*.password"


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_roles_command_with_remote_verifiers(probe, hostile_inventory, index):
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, instance=True)
    verifier = "SCRAM-SHA-256$4096:c2FsdA==$Y2xpZW50:c2VydmVy"
    text = pg.roles_command(inv, [], with_monitor=False, remote=[(inv.slices[0].login_role, verifier)])
    calls, stdin, marked = probe(text)
    assert not marked
    assert not any(argv[0] == "python3" for argv in calls)  # no password is made here
    assert f"\\set rpw0 '{verifier}'" in stdin


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_container_steps(probe, hostile_inventory, index):
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, data_dir=True, instance=True)
    plan = docker.container_plan(inv, {"containers": {}, "env_sha256": {}}, "sha256:" + "0" * 64)
    calls, _, marked = probe(docker.plan_script(plan))
    assert not marked
    install = next(argv for argv in calls if argv[0] == "install")
    assert install[-len(plan.created):] == [inv.slice_data_dir(s.id) for s in inv.slices if s.in_service]
    runs = [argv for argv in calls if argv[:2] == ["docker", "run"]]
    assert len(runs) == len(plan.created)
    assert all(f"{inv.slice_data_dir(s.id)}:/data" in argv for s, argv in zip(
        [s for s in inv.slices if s.in_service], runs))


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_container_steps_started_in_the_background(probe, hostile_inventory, index):
    """The same steps with the new containers started detached, then waited for: each
    `docker run` still gets every word whole, nothing smuggled runs."""
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, data_dir=True, instance=True)
    plan = docker.container_plan(inv, {"containers": {}, "env_sha256": {}}, "sha256:" + "0" * 64)
    starts = str(Path(probe.mark).parent / "starts")
    Path(starts).mkdir()  # (mkdir is a probe here)
    calls, _, marked = probe(docker.plan_script(plan, starts, "t0k") + "\n" + docker.wait_script(starts, plan.created, "t0k", 1))
    assert not marked
    if "/" in value:
        return  # a container name with a folder in it: its outcome file has nowhere to go (refused earlier)
    runs = [argv for argv in calls if argv[:2] == ["docker", "run"]]
    assert sorted(argv[argv.index("--name") + 1] for argv in runs) == sorted(plan.created)


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_network_and_data_directory_commands(probe, hostile_inventory, index):
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, data_dir=True, instance=True)
    text = "\n".join([
        docker.network_create_command(inv),
        DataDirs().command(root=inv.slices_data_dir),
        datadirs.share_command([inv.slice_data_dir(1)]),
        docker.postgres_bind_command(inv),  # ss is this machine's: it lists no such address
    ])
    calls, _, marked = probe(text)
    assert not marked
    assert calls[0][-1] == inv.network
    assert calls[-1] == ["pg_ctlcluster", str(inv.postgres.version), inv.cluster, "restart"]
    assert calls[1][-1] == f"{inv.slices_data_dir}/*"  # the glob matched nothing: passed as is
    assert calls[2] == ["chgrp", datadirs.DATA_GROUP, inv.slice_data_dir(1)]
    assert calls[3] == ["chmod", datadirs.DATA_MODE, inv.slice_data_dir(1)]
    assert calls[4][:2] == ["find", inv.slice_data_dir(1)]


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_host_facts_and_stamps(probe, index):
    value = _values(probe.mark)[index]
    text = "\n".join([
        ServiceState().command(service=value, init="systemd"),
        PgCluster().command(version=15, cluster=value),
        RecordedDigest().command(path=value),
        " && ".join(system.unpack_commands(f"/x/{value}.tar", f"/x/{value}", "d" * 64)),
        system.keygen_command(f"/x/{value}/id", value),
    ])
    calls, _, marked = probe(text)
    assert not marked
    assert ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", value, "-f", f"/x/{value}/id"] in calls
    assert ["systemctl", "is-active", "--quiet", value] in calls
    assert ["tar", "-xf", f"/x/{value}.tar", "-C", ""] in calls  # (the probe's mktemp printed no name)


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_fleet_and_container_facts(probe, index):
    from sliceops.facts.docker import DockerNetwork, SliceContainers
    from sliceops.facts.postgres import PgFleet

    value = _values(probe.mark)[index]
    fleet = PgFleet().command(
        version=15, cluster=value, port=5432, gateway_db="wank_saas", secrets_dir=value, template_db=value,
        slice_stamp=value, template_stamp="t", slice_prefix="wa_slice_", monitor_role="sliceops_monitor",
    )
    text = "\n".join([
        fleet,
        SliceContainers().command(instance=value, secrets_dir=value),
        DockerNetwork().command(network=value),
    ])
    calls, _, marked = probe(text)
    assert not marked
    assert ["pg_ctlcluster", "15", value, "status"] in calls
    psql_call = next(argv for argv in calls if argv[0] == "runuser")
    assert f"template_db={value}" in psql_call and f"slice_stamp={value}" in psql_call
    assert any(argv[0] == "docker" and f"label=sliceops.instance={value}" in argv for argv in calls)
    assert ["docker", "network", "inspect", "--format"] == next(
        argv for argv in calls if argv[:3] == ["docker", "network", "inspect"])[:4]


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_slice_volume_steps(probe, hostile_inventory, index):
    """A host converged before quotas: its plain directories move into a new volume; a slice's
    data is removed; the volume fact reads the host. Every path stays one argument."""
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, data_dir=True, instance=True)
    assert inv.quota_enabled
    first = inv.slices[0].id
    have = VolumeState(avail=1 << 50, plain={str(s.id): 4096 for s in inv.slices})
    text = "\n".join([
        *volume.volume_plan(inv, have),
        volume.remove_data(inv, first),
        SliceVolume().command(image=inv.volume_image, mountpoint=inv.slices_data_dir,
                              staging=inv.volume_staging_dir, service=inv.volume_service, init="lsb"),
    ])
    calls, _, marked = probe(text)
    assert not marked
    assert ["fallocate", "-l", str(inv.volume_size), f"{inv.volume_image}.new"] in calls
    assert ["mount", "-t", "btrfs", "-o", "loop,nodiscard", inv.volume_image, inv.slices_data_dir] in calls
    assert ["btrfs", "qgroup", "limit", str(inv.slices[0].disk_quota_bytes), inv.slice_data_dir(first)] in calls
    assert ["cp", "-a", f"{inv.volume_staging_dir}/{first}/.", f"{inv.slices_data_dir}/{first}/"] in calls
    assert ["rm", "-rf", inv.slice_data_dir(first)] in calls  # (no subvolume in the test's folder)


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_firewall_script(probe, hostile_inventory, index):
    """The firewall's chains are named from the instance: a hostile one stays one argument."""
    value = _values(probe.mark)[index]
    inv = hostile_inventory(value, instance=True)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        with pytest.raises(ValueError, match="not an iptables chain name"):
            firewall.apply_script(inv, ["192.0.2.53"])
        return
    # The script pins PATH for boot; here the probes must answer instead of the real iptables.
    script = firewall.apply_script(inv, ["192.0.2.53"]).replace("PATH=/usr/sbin:/usr/bin:/sbin:/bin\n", "")
    assert "PATH=" not in script, "the real iptables must never run in a unit test"
    calls, stdin, marked = probe(script)
    assert not marked
    assert ["iptables", "-w", "-N", inv.firewall_input_chain] in calls
    assert ["iptables", "-w", "-N", inv.firewall_forward_chain] in calls


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_tls_certificate_command_and_facts(probe, index):
    from sliceops.facts.tls import FileSha256, PgTls
    from sliceops.operations import tls

    value = _values(probe.mark)[index]
    tls_dir = f"/x/{value}"
    text = "\n".join([
        "set +e",
        tls.certificate_command(tls_dir, value, [f"IP:{value}", "IP:127.0.0.1"], new_ca=True).removeprefix("set -e\n"),
        PgTls().command(tls_dir=tls_dir),
        FileSha256().command(path=value),
    ])
    calls, _, marked = probe(text)
    assert not marked
    assert ["install", "-d", "-m", "0755", tls_dir] in calls
    ca = next(argv for argv in calls if argv[:3] == ["openssl", "req", "-x509"])
    assert f"/CN=sliceops {value} PostgreSQL CA" in ca and f"{tls_dir}/ca.key" in ca
    assert ["chown", "root:postgres", f"{tls_dir}/server.key.new"] in calls
    assert ["mv", "-f", f"{tls_dir}/server.crt.new", f"{tls_dir}/server.crt"] in calls
    assert ["sha256sum", value] in calls


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_host_monitor_credential_and_facts(probe, index):
    from sliceops.facts.monitor_credential import HostMonitors, MonitorVerifier
    from sliceops.operations.postgres.monitors import credential_command

    value = _values(probe.mark)[index]
    text = "\n".join([
        "set +e",
        credential_command(f"/x/{value}", f"/x/{value}/monitor.password", value).removeprefix("set -e\n"),
        MonitorVerifier().command(path=value),
        HostMonitors().command(port=5432, gateway_db="wank_saas"),
    ])
    calls, stdin, marked = probe(text)
    assert not marked
    assert ["install", "-d", "-m", "0755", "/etc/sliceops", f"/x/{value}"] in calls
    assert ["chown", f"{value}:{value}", f"/x/{value}/monitor.password"] in calls
    assert ["chmod", "0400", f"/x/{value}/monitor.password"] in calls
    assert "sliceops_fleet.monitor_hosts" in stdin


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_slice_move_commands(probe, index):
    """A move's own shell texts (the destination's emptiness and password checks, the
    password's arrival by standard input) with a hostile instance and data folder: each path
    arrives as one argument. The hosts are stand-ins that run every `sh -c` under the probe."""
    from sliceops import moves
    from sliceops.operations import move

    value = _values(probe.mark)[index]
    base = load(ROOT / "tests" / "unit" / "data" / "good" / "fleet.yaml")
    inv = dataclasses.replace(base, instance=value, slice_defaults=dataclasses.replace(
        base.slice_defaults, data_dir=f"/srv/{value}"))
    bin_dir = Path(probe.mark).parent / "bin"
    (bin_dir / "cat").write_text((bin_dir / "mv").read_text())  # the password's writer is a probe too
    (bin_dir / "cat").chmod(0o755)
    marked: list[bool] = []

    class Host:
        def __init__(self, *_):
            pass

        def run(self, argv, stdin=""):
            if argv[:2] == ["sh", "-c"]:
                marked.append(probe(argv[2])[2])
            return "0" * 64 + "  file\n" if argv[0] == "sha256sum" else ""

        def close(self):
            pass

        __enter__ = lambda self: self  # noqa: E731
        __exit__ = lambda self, *exc: None  # noqa: E731

    class Facts:
        def get_fact(self, cls, **kwargs):
            return {"DockerImage": "sha256:" + "1" * 64, "DockerCgroupDriver": "cgroupfs"}.get(cls.__name__, "ab" * 32)

    def pipe(src, src_argv, dst, dst_argv):
        Host().run(dst_argv)
        return 1

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(move, "Target", Host)
        mp.setattr(move, "pipe", pipe)
        move.move(Facts(), inv, moves.Move(1, "app1", "app2"), "STAMP")
    calls, _, _ = probe("true")
    assert marked and not any(marked)
    assert ["docker", "rm", "-f", inv.container_name(1)] in calls
    assert [inv.secrets_dir] == [argv[-1] for argv in calls if argv[:4] == ["install", "-d", "-m", "0700"]]
