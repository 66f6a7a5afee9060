"""The steps of one slice's move (operations/move.py) against recording stand-ins for the
hosts: the order on success (gateway row only after /health, old copy archived, not
deleted) and what a failure leaves (the old container started again, the copy gone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sliceops import moves
from sliceops.inventory import load
from sliceops.operations import move

FLEET = Path(__file__).parent / "data" / "good" / "fleet.yaml"  # slice 1 on app1


class Recorder:
    def __init__(self, log: list, fail_on: str | None, found: str = ""):
        self.log, self.fail_on, self.found = log, fail_on, found

    def target(self, inv, target):
        recorder = self

        class T:
            def run(self, argv, stdin=""):
                recorder.log.append((target, argv[0] if argv[0] != "runuser" else "psql", argv, stdin))
                if recorder.fail_on and recorder.fail_on in " ".join(argv):
                    raise RuntimeError(f"{argv[0]} failed")
                if argv[:2] == ["find", "/srv/sliceops/main/slices/1"] and "-print" in argv:
                    return recorder.found
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
        return 1234


class FakeHost:
    def get_fact(self, cls, **kwargs):
        return {"DockerImage": "sha256:" + "1" * 64, "DockerCgroupDriver": "cgroupfs"}.get(cls.__name__, "ab" * 32)


@pytest.fixture
def run(monkeypatch):
    def go(fail_on=None, found=""):
        log: list = []
        recorder = Recorder(log, fail_on, found)
        monkeypatch.setattr(move, "Target", recorder.target)
        monkeypatch.setattr(move, "pipe", recorder.pipe)
        monkeypatch.setattr(move, "HEALTH_TIMEOUT", 0)
        monkeypatch.setattr(move.time, "sleep", lambda s: None)
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
    assert ("pipe", "tar|tar") in steps and ("pipe", "cat|sh") in steps
    health = steps.index((app2, "python3 -c"))
    register = next(i for i, e in enumerate(log) if e[0] == db)
    assert health < register  # the gateway row changes only once /health answered
    assert "UPDATE gateway.slices SET host = :'host'" in log[register][3]
    assert "host=app2" in log[register][2] and "id=1" in log[register][2]
    assert steps[register + 1:] == [(app1, "docker rm"), (app1, "mv /srv/sliceops/main/slices/1"), (app1, "rm -f")]
    assert log[register + 2][2] == ["mv", inv.slice_data_dir(1), inv.moved_data_dir(1, "STAMP")]
    assert not any(e[2][:2] == ["rm", "-rf"] for e in log if e[0] != "pipe")  # the old data is never deleted


def test_a_slice_that_never_answers_runs_again_on_its_old_host(run):
    inv, log, error = run(fail_on="urllib.request")
    assert isinstance(error, RuntimeError) and "/health" in str(error)
    steps = _steps(log)
    app1, app2 = "ssh://root@10.0.0.11:2222", "ssh://root@10.0.0.12"
    tail = steps[steps.index((app2, "python3 -c")) + 1:]
    assert tail == [(app2, "docker rm"), (app2, "find /srv/sliceops/main/slices/1"), (app1, "docker start")]
    assert not any(e[0] == "ssh://root@10.0.0.10" for e in log)  # the gateway row still names app1


def test_a_failed_copy_starts_the_old_container_again_and_runs_nothing_new(run):
    _, log, error = run(fail_on="sha256sum")
    assert error is not None
    steps = _steps(log)
    assert steps[-1] == ("ssh://root@10.0.0.11:2222", "docker start")
    assert not any(e[2][:2] == ["sh", "-c"] and "docker run" in e[2][2] for e in log if e[0] != "pipe")


def test_a_destination_that_holds_data_is_never_written_over_and_nothing_stops(run):
    _, log, error = run(found="/srv/sliceops/main/slices/1/session.db\n")
    assert "is not empty" in str(error)
    assert not any(e[2][:2] == ["docker", "stop"] or e[2][:1] == ["find"] and "-delete" in e[2] for e in log if e[0] != "pipe")
    assert not any(e[0] == "pipe" for e in log)
