"""No generated script depends on a shell's limits (issue 15): built for 1,000 slices, every
fleet-wide script holds as many command substitutions, loops and here-documents as it does
for 10, quotes every here-document (a fleet's data passes through the shell unexpanded), and
has no command line longer than a chunk of names; the roles script, which crashed dash at
300 slices when it was one here-document of `$(cat ...)`, runs under dash for real.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sliceops.facts.postgres import PgFleet
from sliceops.facts.volume import VolumeState
from sliceops.inventory import load
from sliceops.operations import datadirs, docker
from sliceops.operations import postgres as pg
from sliceops.operations.postgres import credentials
from sliceops.operations.postgres.databases import databases_command
from sliceops.operations.postgres.registry import registration_command, registration_sql
from sliceops.operations.volume import volume_plan

LONGEST_LINE = 16 * 1024  # bytes a command line may take outside here-documents


def inventory(tmp_path: Path, n: int):
    path = tmp_path / f"fleet{n}.yaml"
    path.write_text(yaml.safe_dump({
        "target": "@local", "instance": "fleetx", "docker": {"subnet": "10.98.0.0/16"},
        "slice_defaults": {"disk": "8m", "memory": "32m"},
        "slices": [{"id": i} for i in range(1, n + 1)],
    }))
    return load(path)


def scripts(tmp_path: Path, n: int) -> dict[str, str]:
    """Every script a first converge of `n` slices runs that grows with the fleet."""
    inv = inventory(tmp_path, n)
    empty = PgFleet.parse(["SECRETS"])
    plan = docker.container_plan(inv, {"containers": {}, "env_sha256": {}}, "sha256:" + "0" * 64)
    volume = volume_plan(inv, VolumeState(avail=1 << 50))
    # An image found unmounted (a boot that skipped it): each slice is checked in the script.
    remount = volume_plan(inv, VolumeState(avail=1 << 50, image_size=inv.volume_size))
    return {
        "roles": pg.roles_command(inv, pg.desired_login_roles(inv), with_monitor=True),
        "databases": databases_command(inv, empty, pg.databases_sql(inv, empty)),
        "migrations": pg.migrate_command(inv, pg.migration_plan(inv, empty)),
        "registration": registration_command(inv, registration_sql(inv, {})),
        "containers": docker.plan_script(plan),
        "volume": "\n".join(volume),
        "volume remounted": "\n".join(remount),
        "data directories": datadirs.share_command([inv.slice_data_dir(s.id) for s in inv.slices]),
    }


def shell_text(script: str) -> str:
    """The script without the bodies of its here-documents (data, not shell); an unquoted
    here-document, whose body the shell would expand, fails the test."""
    out, end = [], None
    for line in script.splitlines():
        if end is not None:
            end = None if line == end else end
            continue
        out.append(line)
        m = re.search(r"<<-?\s*(\S+)\s*$", line)
        if m:
            word = m[1]
            assert word[0] == word[-1] == "'", f"unquoted here-document {word}: {line[:80]}"
            end = word.strip("'")
    return "\n".join(out)


CONSTRUCTS = {
    "command substitution": r"\$\(",
    "backquote": r"`",
    "loop": r"\b(?:for|while|until)\b",
    "here-document": r"<<",
}
# Migrations run one psql per database (a failing database rolls back alone): each is a
# complete top-level command with its own here-document, run one after the other.
GROWS = {("migrations", "here-document")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    return scripts(tmp, 10), scripts(tmp, 1000)


@pytest.mark.parametrize("name", ["roles", "databases", "migrations", "registration", "containers", "volume",
                                  "volume remounted", "data directories"])
def test_no_shell_construct_grows_with_the_fleet(built, name):
    small, big = (shell_text(s[name]) for s in built)
    # The roles program's own source is one quoted word: what it holds is Python, not shell.
    small, big = (t.replace(pg.CREDENTIALS_PY.replace("'", "'\"'\"'"), "PROGRAM") for t in (small, big))
    # Single-quoted words are inert text (values quoted by the door: "... ask for more").
    small, big = (re.sub(r"'[^']*'", "''", t) for t in (small, big))
    for construct, pattern in CONSTRUCTS.items():
        if (name, construct) in GROWS:
            assert all(line.startswith("runuser ") for line in big.splitlines() if "<<" in line)
            continue
        assert len(re.findall(pattern, big)) == len(re.findall(pattern, small)), f"{construct}s grow with the fleet"
    longest = max(len(line) for line in big.splitlines())
    assert longest <= LONGEST_LINE, f"a {longest}-byte command line at 1,000 slices"


def test_argument_lists_are_chunked(built):
    """Names and paths go at most CHUNK to a command: 1,000 data directories are 10 commands."""
    _, big = built
    assert big["containers"].count("install -d -o 10001") == 10
    assert big["data directories"].count("chgrp sliceops-monitor ") == 20  # the chgrp and find's -exec


@pytest.mark.skipif(not shutil.which("dash"), reason="dash is Debian's /bin/sh; not on this machine")
def test_the_roles_script_of_300_slices_runs_under_dash(tmp_path):
    """The script the deploy runs, under dash, with psql replaced by a probe that keeps what it
    is fed: every role's password and credentials file written, and psql given one verifier
    per role ahead of the statements, none of them a password."""
    inv = inventory(tmp_path, 300)
    roles = pg.desired_login_roles(inv)
    text = pg.roles_command(inv, roles, with_monitor=True).replace("/etc/sliceops", str(tmp_path / "etc"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fed = tmp_path / "psql.stdin"
    (bin_dir / "runuser").write_text(f"#!/bin/sh\ncat >{fed}\n")
    (bin_dir / "runuser").chmod(0o755)
    (tmp_path / "roles.sh").write_text(text)
    out = subprocess.run(["dash", str(tmp_path / "roles.sh")], capture_output=True, text=True, timeout=120,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    secrets = tmp_path / "etc" / "fleetx" / "secrets"
    assert len(list(secrets.glob("*.password"))) == 302 and len(list(secrets.glob("*.env"))) == 300
    sql = fed.read_text()
    sets = re.findall(r"^\\set pw(\d+) '(SCRAM-SHA-256\$4096:[^']+)'$", sql, re.M)
    assert [int(i) for i, _ in sets] == list(range(302))
    assert len(re.findall(r"^ALTER ROLE .* PASSWORD :'pw\d+';$", sql, re.M)) == 302
    password = (secrets / "wa_slice_300.password").read_text()
    assert password not in sql and password not in out.stderr
    progress = [line for line in out.stderr.splitlines() if line.startswith("sliceops-progress roles ")]
    assert progress[-1] == "sliceops-progress roles 302 302 wa_slice_300" and len(progress) == 302
    assert credentials.verifier(password.encode(), salt=b"x" * 16).startswith("SCRAM-SHA-256$4096:")


@pytest.mark.parametrize(("name", "step"), [("volume", "volume"), ("databases", "databases"), ("migrations", "migrations"),
                                            ("registration", "registration"), ("containers", "containers")])
def test_each_long_step_reports_every_slice_in_order(built, name, step):
    """One progress line per slice, in order, counting up to the step's total (the relay
    decides how many to show)."""
    _, big = built
    seen = re.findall(rf"sliceops-progress {step} (\d+) (\d+) (\S+?)'?$", big[name], re.M)
    total = 1001 if step == "migrations" else 1000  # migrations: the gateway database too
    assert [int(done) for done, _, _ in seen] == list(range(1, total + 1))
    assert {int(t) for _, t, _ in seen} == {total}


def test_the_container_fact_inspects_a_chunk_of_containers_per_docker_call(tmp_path):
    """SliceContainers at fleet size: a stand-in `docker` lists 250 containers and logs each
    `inspect`'s id count; no call carries more than a chunk, and every container is read."""
    from sliceops.facts.docker import SliceContainers
    from sliceops.operations.util import CHUNK

    bin_dir, secrets = tmp_path / "bin", tmp_path / "secrets"
    bin_dir.mkdir()
    secrets.mkdir()
    for i in range(1, 251):
        (secrets / f"wa_slice_{i}.env").write_text(f"DATABASE_URL=x{i}\n")
    (bin_dir / "docker").write_text(f"""#!/bin/sh
if [ "$1" = ps ]; then i=1; while [ $i -le 250 ]; do printf 'c%064d\\n' $i; i=$((i+1)); done; exit 0; fi
shift 3  # inspect --format <format>
echo $# >> {tmp_path}/calls
for id in "$@"; do printf '{{"id":"%s","name":"/s-%s","state":{{"Status":"running"}},"labels":{{}}}}\\n' $id $id; done
""")
    (bin_dir / "docker").chmod(0o755)
    cmd = SliceContainers().command(instance="fleetx", secrets_dir=str(secrets))
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"}).stdout
    fact = SliceContainers.parse(out.splitlines())
    calls = [int(n) for n in (tmp_path / "calls").read_text().split()]
    assert calls == [CHUNK, CHUNK, 50]
    assert len(fact["containers"]) == 250 and len(fact["env_sha256"]) == 250
    assert len(cmd) < 1024  # the command itself names no container


def test_a_script_travels_on_standard_input_as_one_command():
    """One command: the script is sh's standard input, never an argument (a verifier in it
    would show in the process list), read whole before it runs."""
    from sliceops.operations.util import as_script, script_text

    text = "\\set rpw0 'SCRAM-SHA-256$x'\n"
    (run,) = as_script("/usr/local/share/sliceops/main", "roles", text)
    assert str(run) == "sh"
    assert "SCRAM" not in str(run) and script_text(run) == text
    assert run.connector_arguments["_stdin"] == "{\n" + text + "}\n"


def test_a_script_on_standard_input_keeps_its_exit_status_and_is_not_read_by_its_commands():
    """`cat` inside reads nothing of the script's rest (the group is read whole first); set -e
    and the exit status hold; a here-document holding a brace passes through."""
    from sliceops.operations.util import as_script, script_text

    text = "set -e\necho one\ncat\ncat <<'X'\nbrace }\nX\nfalse\necho never\n"
    (run,) = as_script("/x", "t", text)
    proc = subprocess.run(["sh", "-c", str(run)], input=run.connector_arguments["_stdin"], capture_output=True, text=True)
    assert (proc.stdout, proc.returncode) == ("one\nbrace }\n", 1)


def test_a_large_script_file_waits_in_a_folder_only_root_may_enter():
    from pyinfra.api import FileUploadCommand

    from sliceops.operations.util import STDIN_SCRIPT_MAX, as_script, script_text

    text = "\\set rpw0 'SCRAM-SHA-256$x'\n" + "-- padding\n" * (STDIN_SCRIPT_MAX // 10)
    made, upload, run = list(as_script("/usr/local/share/sliceops/main", "roles", text))
    assert str(made) == "install -d -m 0700 /usr/local/share/sliceops/main/.scripts"
    assert isinstance(upload, FileUploadCommand) and script_text(upload) == text
    assert upload.dest == "/usr/local/share/sliceops/main/.scripts/roles.sh"
    assert str(run).startswith("sh /usr/local/share/sliceops/main/.scripts/roles.sh; rc=$?; rm -f ")


