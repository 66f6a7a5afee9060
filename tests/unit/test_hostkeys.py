"""SSH host keys of an ssh:// target: recorded ones pass, unknown and changed ones stop the
deploy with one line, against a real SSH server (paramiko's, on loopback) holding a real key."""

from __future__ import annotations

import io
import socket
import threading

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sliceops import cli, hostkeys
from sliceops.hostkeys import CHANGED, OK, UNKNOWN, HostKeyError
from sliceops.inventory import load
from sliceops.target import pyinfra_host


def ed25519_key() -> paramiko.Ed25519Key:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))


class _KexOnly(paramiko.ServerInterface):
    """Lets a client finish the key exchange (all the check needs) and nothing more."""


@pytest.fixture
def ssh_server():
    """A listening SSH server on 127.0.0.1 presenting a fresh ed25519 host key; yields (port, key)."""
    key = ed25519_key()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            t = paramiko.Transport(conn)
            t.add_server_key(key)
            transports.append(t)
            try:
                t.start_server(server=_KexOnly())
            except (paramiko.SSHException, EOFError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], key
    stop.set()
    thread.join(5)
    for t in transports:
        t.close()
    listener.close()


def known_hosts(tmp_path, entry: str, key: paramiko.PKey) -> str:
    path = tmp_path / "known_hosts"
    path.write_text(f"{entry} {key.get_name()} {key.get_base64()}\n")
    return str(path)


def test_verdict_of_each_case():
    key, other = ed25519_key(), ed25519_key()
    assert hostkeys.verdict({}, key) == UNKNOWN
    assert hostkeys.verdict(None, key) == UNKNOWN
    assert hostkeys.verdict({key.get_name(): key}, key) == OK
    assert hostkeys.verdict({other.get_name(): other}, key) == CHANGED


def test_host_entry_is_what_openssh_files_a_port_under():
    assert hostkeys.host_entry("db1.example.net", 22) == "db1.example.net"
    assert hostkeys.host_entry("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_a_recorded_key_passes(ssh_server, tmp_path):
    port, key = ssh_server
    hostkeys.check(f"ssh://root@127.0.0.1:{port}", known_hosts(tmp_path, f"[127.0.0.1]:{port}", key))


def test_a_hashed_entry_passes_too(ssh_server, tmp_path):
    port, key = ssh_server
    hashed = paramiko.HostKeys.hash_host(f"[127.0.0.1]:{port}")
    hostkeys.check(f"ssh://root@127.0.0.1:{port}", known_hosts(tmp_path, hashed, key))


def test_an_unknown_key_stops_with_its_fingerprint(ssh_server, tmp_path):
    port, key = ssh_server
    path = known_hosts(tmp_path, "[127.0.0.1]:1", key)  # recorded for another port only
    with pytest.raises(HostKeyError) as err:
        hostkeys.check(f"ssh://root@127.0.0.1:{port}", path)
    message = str(err.value)
    assert "\n" not in message and "is not in" in message and path in message
    assert hostkeys.fingerprint(key) in message


def test_a_missing_known_hosts_file_is_an_unknown_key(ssh_server, tmp_path):
    port, _ = ssh_server
    with pytest.raises(HostKeyError, match="is not in"):
        hostkeys.check(f"ssh://root@127.0.0.1:{port}", str(tmp_path / "absent"))


def test_a_changed_key_stops(ssh_server, tmp_path):
    port, key = ssh_server
    path = known_hosts(tmp_path, f"[127.0.0.1]:{port}", ed25519_key())
    with pytest.raises(HostKeyError, match="CHANGED") as err:
        hostkeys.check(f"ssh://root@127.0.0.1:{port}", path)
    assert hostkeys.fingerprint(key) in str(err.value) and "\n" not in str(err.value)


def test_an_unreachable_host_is_one_line(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(HostKeyError, match="cannot reach"):
        hostkeys.check(f"ssh://root@127.0.0.1:{port}", str(tmp_path / "kh"))


def _inventory(tmp_path, port: int, extra: str = "") -> str:
    path = tmp_path / "inv.yaml"
    path.write_text(f'target: "ssh://root@127.0.0.1:{port}"\n{extra}slices:\n  - id: 1\n')
    return str(path)


def test_deploy_refuses_an_unknown_key_in_one_line_and_exit_2(ssh_server, tmp_path, capsys):
    port, _ = ssh_server
    inv = _inventory(tmp_path, port, f"ssh_known_hosts: {tmp_path / 'kh'}\n")
    assert cli.main(["deploy", "-i", inv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sliceops: ssh://root@127.0.0.1:") and "Traceback" not in err


def test_verify_refuses_a_changed_key(ssh_server, tmp_path, capsys):
    port, _ = ssh_server
    path = known_hosts(tmp_path, f"[127.0.0.1]:{port}", ed25519_key())
    inv = _inventory(tmp_path, port, f"ssh_known_hosts: {path}\n")
    assert cli.main(["verify", "-i", inv]) == 2
    assert "CHANGED" in capsys.readouterr().err


def test_pyinfra_checks_keys_strictly_against_the_named_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _, data = pyinfra_host(load(_inventory(tmp_path, 2222, "ssh_known_hosts: ~/kh\n")))
    assert (data["ssh_known_hosts_file"], data["ssh_strict_host_key_checking"]) == (str(tmp_path / "kh"), "yes")
    _, data = pyinfra_host(load(_inventory(tmp_path, 2222)))
    assert data["ssh_known_hosts_file"] == str(tmp_path / ".ssh" / "known_hosts")
