"""An engine someone else manages: the deploy only checks it answers, and says so clearly."""

from __future__ import annotations

from pyinfra import host
from sliceops.operations.util import refuses
from pyinfra.api import FactBase, operation

from sliceops.errors import RemoteStateError


class DockerAnswers(FactBase):
    """Whether `docker version` reaches an engine."""

    command = "docker version --format '{{.Server.Version}}' 2>/dev/null || echo DOWN"

    def process(self, output):
        return bool(output) and output[0].strip() != "DOWN"


@operation(is_idempotent=True)
@refuses
def engine_answers():
    if not host.get_fact(DockerAnswers):
        raise RemoteStateError(
            "inventory says docker.managed: false, but no Docker engine answers on the target "
            "(/var/run/docker.sock): start it, or set docker.managed: true"
        )
    host.noop("the provided Docker engine answers")
    return
    yield  # an operation is a generator
