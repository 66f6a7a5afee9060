"""The steps of one slice's move (operations/move.py) against recording stand-ins for the
hosts: the order on success (gateway row only after /health, old copy archived, not
deleted) and what a failure leaves (the old container started again; the copy gone while
no container touched it, kept aside once one ran; the secrets the move brought removed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sliceops import moves
from sliceops.backup_config import agent_config
from sliceops.inventory import load
from sliceops.operations import move

FLEET = Path(__file__).parent / "data" / "good" / "fleet.yaml"  # slice 1 on app1


class Recorder:
    def __init__(self, log: list, fail_on: str | None, found: str = "", pipe_fails: bool = False,
                 start_fails: bool = False):
        self.log, self.fail_on, self.found = log, fail_on, found
        self.pipe_fails, self.start_fails = pipe_fails, start_fails

    def target(self, inv, target):
        recorder = self

        class T:
            def run(self, argv, stdin=""):
                recorder.log.append((target, argv[0] if argv[0] != "runuser" else "psql", argv, stdin))
                if recorder.fail_on and recorder.fail_on in " ".join(argv):
                    raise RuntimeError(f"{argv[0]} failed")
                if argv[:2] == ["docker", "start"] and recorder.start_fails:
                    raise RuntimeError("app1 did not answer")
                if argv[:2] == ["sh", "-c"] and "-print -quit" in argv[2]:
                    return recorder.found
                if argv[:2] == ["sh", "-c"] and "echo present" in argv[2]:
                    return ""  # the new host had no password file for the slice
                return "0" * 64 + "  file\n"

            def close(self):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

        return T()

    def pipe(self, src, src_argv, dst, dst_argv):
        self.log.append(("pipe", src_argv[0], src_argv, dst_argv))
        if self.pipe_fails:
            raise RuntimeError("tar on ssh://root@10.0.0.12 stopped reading after 0 bytes")
        return 1234


class FakeHost:
    def get_fact(self, cls, **kwargs):
        return {"DockerImage": "sha256:" + "1" * 64, "DockerCgroupDriver": "cgroupfs"}.get(cls.__name__, "ab" * 32)


@pytest.fixture
def run(monkeypatch):
    def go(fail_on=None, found="", **failures):
        log: list = []
        recorder = Recorder(log, fail_on, found, **failures)
        monkeypatch.setattr(move, "Target", recorder.target)
        monkeypatch.setattr(move, "pipe", recorder.pipe)
        monkeypatch.setattr(move, "HEALTH_TIMEOUT", 0)
        monkeypatch.setattr(move.time, "sleep", lambda s: None)
        monkeypatch.setattr(move, "_moved", {})
        inv = load(FLEET)
        try:
            move.move(FakeHost(), inv, moves.Move(1, "app1", "app2"), "STAMP")
            error = None
        except Exception as exc:
            error = exc
        return inv, log, error

    return go


def _steps(log):
    return [(entry[0], " ".join(entry[2][:2]) if entry[0] != "pipe" else f"{entry[2][0]}|{entry[3][0]}")
            for entry in log]


def test_a_move_stops_copies_starts_waits_then_registers_and_archives(run):
    inv, log, error = run()
    assert error is None
    app1, app2, db = "ssh://root@10.0.0.11:2222", "ssh://root@10.0.0.12", "ssh://root@10.0.0.10"
    steps = _steps(log)
    assert (app1, "docker stop") in steps and not any(e[0] == app1 for e in log[:steps.index((app1, "docker stop"))])
    assert ("pipe", "flock|flock") in steps and ("pipe", "cat|sh") in steps
    carry = next(e for e in log if e[0] == "pipe" and e[1] == "flock")
    lock = inv.backup_lock(1)  # what a backup of slice 1 holds on either host
    assert carry[2][:4] == ["flock", "-w", "600", lock] and carry[2][4] == "tar" and "-cf" in carry[2]
    assert carry[3][:4] == ["flock", "-w", "600", lock] and carry[3][4:6] == ["sh", "-c"]
    made, filled = carry[3][6].split(" && ")
    assert made.startswith("install -d -o 10001") and made.endswith(inv.slice_data_dir(1))
    assert filled.startswith(f"tar -C {inv.slice_data_dir(1)} ") and filled.endswith("-xpf -")
    # The data directory is made only inside the locked carry: a backup never sees it empty.
    assert not any(e[2][:2] == ["install", "-d"] and inv.slice_data_dir(1) in e[2] for e in log if e[0] != "pipe")
    health = steps.index((app2, "/usr/bin/python3 -I"))
    register = next(i for i, e in enumerate(log) if e[0] == db)
    assert health < register  # the gateway row changes only once /health answered
    assert "UPDATE gateway.slices SET host = :'host'" in log[register][3]
    assert "host=app2" in log[register][2] and "id=1" in log[register][2]
    assert steps[register + 1:] == [(app1, "docker rm"), (app1, "mv /srv/sliceops/main/slices/1"), (app1, "rm -f"),
                                    (app2, "sh -c"), (app1, "sh -c")]  # the backup agents' data part handed over
    assert log[register + 2][2] == ["mv", inv.slice_data_dir(1), inv.moved_data_dir(1, "STAMP")]
    assert not any(e[2][:2] == ["rm", "-rf"] for e in log if e[0] != "pipe")  # the old data is never deleted


def test_a_slice_that_never_answers_runs_again_on_its_old_host_and_what_it_wrote_is_kept(run):
    inv, log, error = run(fail_on="urllib.request")
    assert isinstance(error, RuntimeError) and "/health" in str(error)
    assert str(error).endswith("; it runs on app1 again")
    steps = _steps(log)
    app1, app2 = "ssh://root@10.0.0.11:2222", "ssh://root@10.0.0.12"
    tail = steps[steps.index((app2, "/usr/bin/python3 -I")) + 1:]
    assert tail == [(app2, "docker rm"), (app2, "mv -T"), (app2, "rm -f"), (app1, "docker start")]
    aside = next(e[2] for e in log if e[2][:2] == ["mv", "-T"])
    assert aside == ["mv", "-T", inv.slice_data_dir(1), inv.failed_move_data_dir(1, "STAMP")]
    assert not any("-delete" in e[2] for e in log if e[0] != "pipe")  # it ran there: nothing deleted
    secrets = next(e[2] for e in log if e[0] == app2 and e[2][:2] == ["rm", "-f"])
    assert f"{inv.secrets_dir}/wa_slice_1.password" in secrets and len(secrets) == 4  # and the credentials file
    assert not any(e[0] == "ssh://root@10.0.0.10" for e in log)  # the gateway row still names app1


def test_a_failed_copy_removes_the_copy_starts_the_old_container_again_and_runs_nothing_new(run):
    inv, log, error = run(pipe_fails=True)
    assert "stopped reading" in str(error) and str(error).endswith("it runs on app1 again")
    steps = _steps(log)
    app1, app2 = "ssh://root@10.0.0.11:2222", "ssh://root@10.0.0.12"
    assert steps[-3:] == [(app2, "find /srv/sliceops/main/slices/1"), (app2, "rm -f"), (app1, "docker start")]
    assert "-delete" in log[-3][2]  # no container touched the copy: it is the stopped data's twin
    assert not any(e[2][:2] == ["sh", "-c"] and "docker run" in e[2][2] for e in log if e[0] != "pipe")


def test_an_old_container_that_does_not_start_again_is_said_so(run):
    _, _, error = run(pipe_fails=True, start_fails=True)
    assert "did not start again" in str(error) and "start it by hand" in str(error)
    assert "runs on app1 again" not in str(error)


def test_a_destination_that_holds_data_is_never_written_over_nor_touched_and_nothing_stops(run):
    _, log, error = run(found="/srv/sliceops/main/slices/1/session.db\n")
    assert "is not empty" in str(error)
    assert not any(e[2][:2] == ["docker", "stop"] or e[2][:1] in (["find"], ["install"], ["rm"], ["mv"])
                   for e in log if e[0] != "pipe")
    assert not any(e[0] == "pipe" for e in log)


def _agent_configs(log) -> dict[str, dict]:
    """The backup agent configurations the move wrote, by target (the last one of each)."""
    return {e[0]: json.loads(e[3]) for e in log if e[0] != "pipe" and "backup.json" in " ".join(e[2])}


def test_a_finished_move_hands_the_slices_data_part_to_the_new_hosts_backup_agent(run):
    """Until the gateway row names app2, app1's agent archives slice 1's data (the deploy wrote
    its configuration so); once it does, both configurations are what the next deploy writes."""
    inv, log, error = run()
    assert error is None
    configs = _agent_configs(log)
    app1, app2 = inv.host("app1").target, inv.host("app2").target
    assert sorted(configs) == sorted([app1, app2])
    gateway = {1: {"host": "app2"}}
    assert configs[app1] == agent_config(inv, "app1", gateway) and configs[app2] == agent_config(inv, "app2", gateway)
    assert [s["id"] for s in configs[app1]["slices"]] == [3]  # slice 1's data part left app1 ...
    assert [s["id"] for s in configs[app2]["slices"]] == [1, 2]  # ... for app2, where its data now is
    write = next(e for e in log if e[0] == app2 and "backup.json" in " ".join(e[2]))
    assert write[2][:2] == ["sh", "-c"] and inv.backup_config in write[2][2] and "chmod 600" in write[2][2]


def test_a_failed_move_leaves_the_data_part_with_the_old_hosts_agent(run):
    inv, log, error = run(fail_on="python3")  # /health never answers: undone
    assert error is not None and _agent_configs(log) == {}


def test_two_moves_from_one_host_leave_its_configuration_with_neither(run, monkeypatch):
    """Moves from app1 to two hosts finish side by side: each rewrites app1's configuration with
    every move finished so far, so the last write lists neither slice."""
    inv, log, _ = run()
    monkeypatch.setattr(move, "Target", Recorder(log, None).target)
    move.hand_over_backup(inv, moves.Move(3, "app1", "db1"), {})
    app1 = inv.host("app1").target
    assert [s["id"] for s in _agent_configs(log)[app1]["slices"]] == []
    db1 = next(s for s in _agent_configs(log)[inv.host("db1").target]["slices"] if s["id"] == 3)
    assert db1["data_dir"] == inv.slice_data_dir(3) and db1["database"] == "wa_slice_3"


def _monitor_after(monkeypatch, tmp_path, here: str, moved: dict[int, str]) -> tuple[list, dict]:
    """Run the monitor's after-moves step on `here` (slice 1 moving from app1 to app2, as the
    deploy read the rows) with the moves `moved` finished; what ran there, and the config the
    deploy had written before the moves."""
    from sliceops.tasks import monitor

    (tmp_path / "fleet.yaml").write_text(FLEET.read_text().replace("{id: 1, host: app1}", "{id: 1, host: app2}"))
    inv = load(tmp_path / "fleet.yaml")
    rows = {1: {"host": "app1"}, 2: {"host": "app2"}, 3: {"host": "app1"}, 4: {"host": "db1"}}
    log: list = []
    monkeypatch.setattr(move, "Target", Recorder(log, None).target)
    monkeypatch.setattr(move, "_moved", dict(moved))
    render = lambda now: json.dumps(monitor.config(inv.for_host(here), here, inv, now), indent=2) + "\n"  # noqa: E731
    assert move._monitor_after_moves(None, None, inv, here, rows, [1], render, "/etc/m.json", "mon", "RELOAD")
    return log, json.loads(render(rows))


@pytest.mark.parametrize("here", ["app1", "app2"])
def test_a_finished_move_hands_the_backup_metric_to_the_new_hosts_monitor(monkeypatch, tmp_path, here):
    """Before the move (the deploy's configuration): app1's monitor serves slice 1's data part
    (backup_data), app2's does not (backup false). Once it finished, each host's configuration
    is rewritten as the next deploy's would be, and its monitor reloaded."""
    log, before = _monitor_after(monkeypatch, tmp_path, here, {1: "app2"})
    if here == "app1":
        assert before["backup_data"] == [{"id": 1, "container": "wa-slice-1"}]
    else:
        assert next(s for s in before["slices"] if s["id"] == 1)["backup"] is False
    (write, reload) = log
    assert write[2][:2] == ["sh", "-c"] and "/etc/m.json" in write[2][2] and "root:mon" in write[2][2]
    after = json.loads(write[3])
    assert "backup_data" not in after and all("backup" not in s for s in after["slices"])
    assert reload[2] == ["sh", "-c", "RELOAD"]


def test_a_failed_move_leaves_the_monitors_configuration_as_the_deploy_wrote_it(monkeypatch, tmp_path):
    log, _ = _monitor_after(monkeypatch, tmp_path, "app2", {})
    assert log == []


def test_the_after_moves_step_is_handed_pyinfras_state_and_host():
    """pyinfra passes (state, host) to a FunctionCommand only when its parameters are so named;
    otherwise the arguments shift and the step fails on every host."""
    from inspect import getfullargspec

    assert getfullargspec(move._monitor_after_moves).args[:2] == ["state", "host"]
