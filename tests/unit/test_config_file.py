"""operations.system.config_file: a configuration file read in one command and written in one,
its content on standard input."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import subprocess
from types import SimpleNamespace as NS

import pytest

from sliceops.facts.host import FileState
from sliceops.operations import system

ME = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def _write(dest: str, content: str, mode: str = "640") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", system.config_file_command(dest, ME, GROUP, mode)], input=content,
                          capture_output=True, text=True)


def _state(path: str):
    out = subprocess.run(["sh", "-c", FileState().command(path)], capture_output=True, text=True).stdout
    return FileState().process(out.splitlines())


def test_the_file_is_written_whole_with_its_owner_and_mode_and_read_back(tmp_path):
    dest = str(tmp_path / "conf" / "monitor.json")
    assert _state(dest) is None
    proc = _write(dest, '{"slices": []}\n')
    assert proc.returncode == 0, proc.stderr
    assert open(dest).read() == '{"slices": []}\n' and oct(os.stat(dest).st_mode)[-3:] == "640"
    assert _state(dest) == {"user": ME, "group": GROUP, "mode": "640",
                            "sha1": hashlib.sha1(b'{"slices": []}\n').hexdigest()}
    assert os.listdir(tmp_path / "conf") == ["monitor.json"]  # no file left beside it


def test_a_failed_write_leaves_the_old_file_and_reads_its_input_to_the_end(tmp_path):
    dest = tmp_path / "monitor.json"
    dest.write_text("old\n")
    proc = subprocess.run(["sh", "-c", system.config_file_command(str(dest), "no-such-user-x", GROUP, "640")],
                          input="new\n" * 100000, capture_output=True, text=True)
    assert proc.returncode == 1 and dest.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["monitor.json"]


def _plan(monkeypatch, have, content="x\n"):
    fake = NS(get_fact=lambda cls, **kw: have, noop=lambda text: noops.append(text))
    noops: list[str] = []
    monkeypatch.setattr(system, "host", fake)
    return list(system.config_file._inner(dest="/etc/x.json", content=content, user="root", group="g", mode="0640")), noops


def test_nothing_is_written_when_content_owner_and_mode_hold(monkeypatch):
    same = {"user": "root", "group": "g", "mode": "640", "sha1": hashlib.sha1(b"x\n").hexdigest()}
    assert _plan(monkeypatch, same) == ([], ["/etc/x.json is up to date"])
    for other in ({**same, "mode": "644"}, {**same, "group": "root"}, {**same, "sha1": "0" * 40}, None):
        (cmd,), _ = _plan(monkeypatch, other)
        assert cmd.connector_arguments["_stdin"] == "x\n" and "x\n" not in str(cmd)


def test_content_without_a_final_newline_is_refused(monkeypatch):
    with pytest.raises(ValueError):
        _plan(monkeypatch, None, content="x")
