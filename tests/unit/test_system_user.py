"""operations.system.system_user: one user read in one command, only the differing commands."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace as NS

from sliceops.facts.host import SystemUser
from sliceops.operations import system


def _read(user: str):
    out = subprocess.run(["sh", "-c", SystemUser().command(user)], capture_output=True, text=True).stdout
    return SystemUser().process(out.splitlines())


def test_the_fact_reads_one_user_of_this_host():
    root = _read("root")
    assert root["home"] == "/root" and root["group"] == "root" and "root" in root["groups"]
    assert _read("no-such-user-here") is None


def _plan(monkeypatch, have):
    noops: list[str] = []
    monkeypatch.setattr(system, "host", NS(get_fact=lambda cls, **kw: have, noop=noops.append))
    cmds = list(system.system_user._inner(user="mon", group="mon", home="/nonexistent", shell="/usr/sbin/nologin",
                                          not_in=("docker",)))
    return [str(c) for c in cmds], noops


def test_a_missing_user_is_made_a_system_user_without_home(monkeypatch):
    assert _plan(monkeypatch, None) == ([
        "useradd --system --gid mon --home-dir /nonexistent --shell /usr/sbin/nologin --no-create-home mon"], [])


def test_a_user_as_wanted_is_left_alone_and_only_what_differs_is_changed(monkeypatch):
    same = {"home": "/nonexistent", "shell": "/usr/sbin/nologin", "group": "mon", "groups": ["mon"]}
    assert _plan(monkeypatch, same)[0] == []
    assert _plan(monkeypatch, {**same, "shell": "/bin/sh"})[0] == ["usermod --shell /usr/sbin/nologin mon"]
    assert _plan(monkeypatch, {**same, "groups": ["mon", "docker"]})[0] == ["gpasswd -d mon docker >/dev/null"]
