"""Facts about the Docker side of a host: the engine, an image, the slice network and every
slice container of an instance, each read with a fixed number of docker calls whatever the
number of slices. Parsing is kept in pure `parse()` functions so tests feed them lines.
"""

from __future__ import annotations

import json
import os

from pyinfra.api import FactBase

from sliceops.errors import RemoteStateError
from sliceops.operations.util import CHUNK
from sliceops.shell import quote

# Printed instead of state when `docker` is missing or its engine does not answer.
DOWN = "SLICEOPS_DOCKER_DOWN"
MISSING = "SLICEOPS_MISSING"

# One line of JSON per container. `.State` whole rather than its fields: the CLI decodes
# inspect output into a map, so `.State.Health` on a container without a HEALTHCHECK is an
# error, not an empty value.
_INSPECT_FORMAT = (
    '{"id":{{json .Id}},"name":{{json .Name}},"image":{{json .Image}},'
    '"state":{{json .State}},"labels":{{json .Config.Labels}}}'
)


class DockerCgroupDriver(FactBase):
    """The engine's cgroup driver ("cgroupfs" or "systemd"). Before an engine answers (its
    first install), the one dockerd will pick: systemd when systemd is PID 1 on cgroup v2."""

    command = (
        "docker info --format '{{.CgroupDriver}}' 2>/dev/null || "
        "{ [ \"$(cat /proc/1/comm 2>/dev/null)\" = systemd ] && [ -e /sys/fs/cgroup/cgroup.controllers ] "
        "&& echo systemd || echo cgroupfs; }"
    )

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> str:
        driver = lines[-1].strip() if lines else ""
        if driver not in ("cgroupfs", "systemd"):
            raise RemoteStateError(f"unknown Docker cgroup driver {driver[:60]!r}")
        return driver


class DockerAnswers(FactBase):
    """Whether `docker version` reaches an engine ("nocli" when the client is missing)."""

    command = "command -v docker >/dev/null || { echo NOCLI; exit 0; }; docker version --format '{{.Server.Version}}' 2>/dev/null || echo DOWN"

    def process(self, output):
        word = output[0].strip() if output else "DOWN"
        return {"NOCLI": "nocli", "DOWN": "down"}.get(word, "up")


class DockerImage(FactBase):
    """The id (sha256:...) of an image present in the engine, or None."""

    def command(self, image: str) -> str:
        return f"docker image inspect --format '{{{{.Id}}}}' {quote(image)} 2>/dev/null || true"

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> str | None:
        first = lines[0].strip() if lines else ""
        return first if first.startswith("sha256:") else None

    def default(self):
        return None


class ImageLabels(FactBase):
    """The labels of an image present in the engine ({} if it has none), or None if absent."""

    def command(self, image: str) -> str:
        return f"docker image inspect --format '{{{{json .Config.Labels}}}}' {quote(image)} 2>/dev/null || true"

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> dict | None:
        first = lines[0].strip() if lines else ""
        if not first:
            return None
        try:
            return json.loads(first) or {}
        except ValueError as exc:
            raise RemoteStateError(f"unreadable docker image labels: {first[:120]!r}") from exc

    def default(self):
        return None


class DockerNetwork(FactBase):
    """A network's settings and the containers attached to it, running or not; None if absent
    (or if no engine answers).

    Returns {"driver", "subnet", "gateway", "icc": bool, "bridge": interface name | None,
    "attached": [container names]}. `docker network inspect` lists only running containers'
    endpoints, so the attached ones come from `docker ps -a --filter network=`.
    """

    def command(self, network: str) -> str:
        name = quote(network)
        fmt = '{"ipam":{{json .IPAM.Config}},"options":{{json .Options}},"driver":{{json .Driver}}}'
        return (
            f"docker network inspect --format '{fmt}' {name} 2>/dev/null || {{ echo {MISSING}; exit 0; }}; "
            f"docker ps -a --filter network={name} --format 'ATTACHED {{{{.Names}}}}' 2>/dev/null; true"
        )

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> dict | None:
        if not lines or lines[0].strip() in ("", MISSING):
            return None
        try:
            raw = json.loads(lines[0])
        except ValueError as exc:
            raise RemoteStateError(f"unreadable docker network state: {lines[0][:120]!r}") from exc
        ipam = (raw.get("ipam") or [{}])[0]
        options = raw.get("options") or {}
        return {
            "driver": raw.get("driver"),
            "subnet": ipam.get("Subnet"),
            "gateway": ipam.get("Gateway"),
            # Docker's default when the option is absent is "true": containers talk freely.
            "icc": options.get("com.docker.network.bridge.enable_icc", "true") == "true",
            "bridge": options.get("com.docker.network.bridge.name"),
            "attached": sorted(line.split(None, 1)[1].strip() for line in lines[1:] if line.startswith("ATTACHED ")),
        }

    def default(self):
        return None


def _json_or_none(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


class SliceContainers(FactBase):
    """Every container labelled `sliceops.instance=<instance>`, and the checksums of the
    instance's slice credential files, in one shell on the target (a `docker ps`, then a
    `docker inspect` per CHUNK containers).

    Returns None when no engine answers, else
    {"containers": {name: {"id", "state", "health", "spec", "slice", "image", "started_at"}},
     "env_sha256": {"wa_slice_1.env": sha256 hex, ...}}.
    `state` is Docker's (running, exited, created, restarting, paused, dead); `spec` the
    `sliceops.spec` label; `slice` the int of the `sliceops.slice` label (None if malformed);
    `health` the HEALTHCHECK's status or None; `spec_fields` the spec it was run with (its
    `sliceops.spec.fields` label, None on containers from before that label). The env files hold passwords: only their
    sha256 leaves the target, so a rotated password changes the spec.
    """

    def command(self, instance: str, secrets_dir: str) -> str:
        return (
            # find -exec ... + splits the files over as many sha256sum runs as the system's limit needs.
            f"find {quote(secrets_dir)} -maxdepth 1 -name '*.env' -type f -exec sha256sum {{}} + 2>/dev/null "
            "| sed 's/^/ENV /'; "
            f"ids=$(docker ps -aq --no-trunc --filter label=sliceops.instance={quote(instance)} 2>/dev/null) "
            f"|| {{ echo {DOWN}; exit 0; }}; "
            # A container removed between the two calls is just absent from the answer.
            # CHUNK ids to a `docker inspect` (xargs): no command line grows with the fleet.
            f"printf '%s\\n' $ids | xargs -r -n {CHUNK} docker inspect --format '{_INSPECT_FORMAT}' 2>/dev/null; true"
        )

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> dict | None:
        out: dict = {"containers": {}, "env_sha256": {}}
        for line in lines:
            line = line.strip()
            if line == DOWN:
                return None
            if line.startswith("ENV "):
                words = line.split()
                if len(words) == 3:
                    out["env_sha256"][os.path.basename(words[2])] = words[1]
                continue
            if not line.startswith("{"):
                continue
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise RemoteStateError(f"unreadable docker container state: {line[:120]!r}") from exc
            labels = raw.get("labels") or {}
            state = raw.get("state") or {}
            slice_label = labels.get("sliceops.slice", "")
            out["containers"][raw["name"].lstrip("/")] = {
                "id": raw["id"],
                "state": state.get("Status"),
                "health": (state.get("Health") or {}).get("Status"),
                "spec": labels.get("sliceops.spec"),
                "spec_fields": _json_or_none(labels.get("sliceops.spec.fields")),
                "slice": int(slice_label) if slice_label.isdigit() else None,
                "image": raw.get("image"),
                "started_at": state.get("StartedAt"),
            }
        return out
