"""An engine someone else manages: the deploy installs only the client, checks the engine
answers, and says so clearly when it does not."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache
from sliceops.errors import RemoteStateError
from sliceops.facts.docker import DockerAnswers
from sliceops.facts.host import InitSystem
from sliceops.operations.system import PACKAGES
from sliceops.operations.util import refuses


@operation(is_idempotent=True)
def client_only():
    """The docker client without the engine: Debian ships them in one package, so the
    package's service is kept from starting (policy-rc.d) and, under systemd, masked."""
    if factcache.get(DockerAnswers) != "nocli":
        host.noop("the docker client is installed")
        return
    factcache.touches(factcache.EVERYTHING, PACKAGES)  # docker.io, and whatever it did
    mask = "systemctl mask --quiet docker.service docker.socket; " if factcache.steady(InitSystem) == "systemd" else ""
    yield (
        "set -e; printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; "
        f"{mask}export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
        "apt-get install -y -qq --no-install-recommends docker.io >/dev/null; rm -f /usr/sbin/policy-rc.d"
    )


@operation(is_idempotent=True)
@refuses
def engine_answers():
    if host.get_fact(DockerAnswers) != "up":
        raise RemoteStateError(
            "inventory says docker.managed: false, but no Docker engine answers on the target "
            "(/var/run/docker.sock): start it, or set docker.managed: true"
        )
    host.noop("the provided Docker engine answers")
    return
    yield  # an operation is a generator
