"""The Docker engine: installed, running and enabled, unless the inventory says it is provided."""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import files

from sliceops import factcache
from sliceops.facts.host import InitSystem
from sliceops.inventory import Inventory
from sliceops.operations import service, system
from sliceops.operations.engine import client_only, engine_answers
from sliceops.operations.util import changed
from sliceops.paths import TEMPLATES


def converge(inv: Inventory) -> None:
    if not inv.docker.managed:
        client_only(name="Install the docker client (the engine is provided)")
        engine_answers(name="Check the provided Docker engine answers")
        return
    system.packages(name="Install the Docker engine (docker.io)", names=["docker.io"])
    if factcache.steady(InitSystem) == "systemd":
        service.running(name="Run the Docker engine", service_name="docker", subject="docker engine")
        return
    script = files.template(
        name="Install the Docker engine's init script (/etc/init.d/sliceops-docker)",
        src=str(TEMPLATES / "docker/sliceops-docker.init.j2"),
        dest="/etc/init.d/sliceops-docker",
        mode="755",
    )
    service.running(name="Run the Docker engine (restarted if its init script changed)",
                    service_name="sliceops-docker", subject="docker engine",
                    restart_if=changed(**{"init script": script}))
