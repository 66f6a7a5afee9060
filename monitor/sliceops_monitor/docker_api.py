"""The one Docker Engine API call the monitor needs (GET /containers/json), over the
engine's unix socket with http.client: no docker SDK on air-gapped hosts."""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass

from .errors import DockerError


@dataclass(frozen=True)
class ContainerInfo:
    """A container as listed: full id, name without the leading slash, and state ("running", "exited", ...)."""

    id: str
    name: str
    state: str

    @property
    def running(self) -> bool:
        return self.state == "running"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def name_filter(names: list[str]) -> str | None:
    """A cheap server-side name filter: the names' common prefix, anchored.

    The engine compiles every name filter as a regexp for every container, so
    one short prefix is far cheaper than one filter per slice. The caller still
    matches names exactly.
    """
    if not names:
        return None
    prefix = os.path.commonprefix(names)
    # Keep it a literal: cut at the first character that means something in a regexp.
    cut = next((i for i, ch in enumerate(prefix) if not (ch.isalnum() or ch in "_-")), len(prefix))
    prefix = prefix[:cut]
    return f"^/?{prefix}" if prefix else None


class DockerClient:
    """Lists containers through the engine socket; every failure becomes DockerError."""

    def __init__(self, socket_path: str = "/var/run/docker.sock", timeout: float = 5.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def _get(self, path: str) -> object:
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            conn.request("GET", path, headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DockerError(f"Docker API {self.socket_path}: {exc}") from exc
        finally:
            conn.close()
        if resp.status != 200:
            raise DockerError(f"Docker API GET {path.split('?')[0]}: HTTP {resp.status} {body[:200]!r}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DockerError(f"Docker API GET {path.split('?')[0]}: invalid JSON ({exc})") from exc

    def list_containers(self, names: list[str] | None = None) -> dict[str, ContainerInfo]:
        """Containers (running or not) whose names share the prefix of names, by name; ONE API call."""
        filters: dict[str, list[str]] = {}
        prefix = name_filter(names or [])
        if prefix:
            filters["name"] = [prefix]
        query = {"all": "1"}
        if filters:
            query["filters"] = json.dumps(filters)
        data = self._get("/containers/json?" + urllib.parse.urlencode(query))
        if not isinstance(data, list):
            raise DockerError("Docker API GET /containers/json: expected a list")
        found: dict[str, ContainerInfo] = {}
        for item in data:
            try:
                cid, state = item["Id"], item["State"]
                for raw in item.get("Names") or ():
                    name = raw.lstrip("/")
                    found[name] = ContainerInfo(cid, name, state)
            except (KeyError, TypeError, AttributeError) as exc:
                raise DockerError(f"Docker API GET /containers/json: unexpected entry ({exc!r})") from exc
        return found
